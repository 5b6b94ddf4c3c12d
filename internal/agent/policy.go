package agent

import (
	"fmt"
	"slices"
	"strings"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/envelope"
	"github.com/daemoneye/daemoneye/topic"
)

// policy confines the collectors the agent spawns: each collector's
// identity (token:<id>) may publish only its own event topics, its
// heartbeats and status, registration requests and RPC replies, and may
// subscribe only to its own control topics and inbox. Other identities
// (the operator's uid over the socket, certificates) are not confined.
// It implements server.Authorizer.
type policy struct {
	grants map[string]grant // by identity
}

type grant struct {
	id        string
	publish   []string // patterns
	subscribe []string // exact patterns
}

// collectorGrant is what a collector of the given kind may do.
func collectorGrant(id, kind string) grant {
	events := "events." + strings.TrimSuffix(kindDomain(kind), ".") + ".#"
	return grant{
		id: id,
		publish: []string{events, envelope.TopicHealthHeartbeat + "." + id, envelope.TopicHealthStatus + "." + id,
			envelope.TopicAgentCoordination},
		subscribe: []string{"control.collector.+." + id, envelope.TopicAgentTasks + "." + id, envelope.TopicAgentShutdown},
	}
}

// kindDomain is the event domain of a collector kind.
func kindDomain(kind string) string {
	switch kind {
	case "procmond", "process":
		return "process"
	}
	return kind
}

func (p *policy) AllowPublish(identity, t string) error {
	g, ok := p.grants[identity]
	if !ok {
		return nil
	}
	if strings.HasPrefix(t, client.InboxPrefix) {
		return nil // an RPC reply
	}
	for _, pat := range g.publish {
		if topic.Match(pat, t) {
			return nil
		}
	}
	return fmt.Errorf("collector %s may publish only to %s and RPC replies; control.collector.* is the agent's", g.id, strings.Join(g.publish, ", "))
}

func (p *policy) AllowSubscribe(identity, pattern string) error {
	g, ok := p.grants[identity]
	if !ok {
		return nil
	}
	if ownInbox(pattern) || slices.Contains(g.subscribe, pattern) {
		return nil
	}
	return fmt.Errorf("collector %s may subscribe only to %s and its own inbox", g.id, strings.Join(g.subscribe, ", "))
}

// ownInbox reports whether pattern is one inbox (control.inbox.<name>.+ or
// a topic in it), not a wildcard over everyone's.
func ownInbox(pattern string) bool {
	rest, ok := strings.CutPrefix(pattern, client.InboxPrefix)
	if !ok {
		return false
	}
	name, tail, ok := strings.Cut(rest, ".")
	return ok && name != "" && !strings.ContainsAny(name, "+#") && tail != "" && !strings.Contains(tail, "#") && !strings.Contains(tail, ".")
}
