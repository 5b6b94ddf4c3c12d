package agent

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/daemoneye/daemoneye/server"
	"github.com/daemoneye/daemoneye/topic"
	"github.com/daemoneye/daemoneye/topics"
)

// The topics only the agent publishes, in process: no identity on the
// socket may, whatever the ACL grants.
const (
	alertTopics     = topics.AllAlerts
	collectorTopics = topics.AllCollector
)

// CollectorIdentity is the identity of the connection the agent hands to
// collector id: "collector:<id>". Nothing on the socket can be
// authenticated as it.
func CollectorIdentity(id string) string { return "collector:" + id }

// OperatorGrant is what an operator (root and the agent's own user, who
// can read the agent's memory anyway) may do by default: watch
// everything, and call the agent's and the broker's services with
// requests, the collectors' through the agent (topics.AgentForwardPrefix); but not
// publish events, alerts or heartbeats, nor anything on
// control.collector.*.
func OperatorGrant() server.Grant {
	return server.Grant{
		Subscribe: []string{"#"},
		Request:   []string{topics.AllAgent, topics.AllBroker},
	}
}

// UserGrant is what every other admitted identity (the users of
// allow_uids and allow_gids, certificates, tokens) may do by default: what
// an operator may, except that it watches events and health only, not
// the control traffic: the replies in other identities' inboxes are
// theirs. Its own inbox it may always receive on.
func UserGrant() server.Grant {
	return server.Grant{
		Subscribe: []string{topics.AllEvents, topics.AllHealth},
		Request:   []string{topics.AllAgent, topics.AllBroker},
	}
}

// collectorGrant is what a collector of the given kind may do: publish its
// own event domain, its heartbeats and status, and registration requests;
// subscribe to its own control topics; and answer the requests delivered
// to it.
func collectorGrant(id, kind string) server.Grant {
	return server.Grant{
		Publish: []string{"events." + kindDomain(kind) + ".#",
			topics.HealthHeartbeat + "." + id, topics.HealthStatus + "." + id},
		Request:   []string{topics.AgentCoordination},
		Subscribe: []string{topics.CollectorServices(id), topics.AgentTasksFor(id), topics.AgentShutdown},
		Respond:   true,
	}
}

// kindDomain is the event domain of a collector kind.
func kindDomain(kind string) string {
	if k, ok := kinds[kind]; ok {
		return k.domain
	}
	return kind
}

// policy decides what each identity on the agent's socket may do: an ACL
// (server.ACL: identity -> publish, request and subscribe patterns), with
// rules no grant can lift:
//   - nobody on the socket publishes events.alert.* (the agent raises
//     alerts) or anything, plain message or request, on
//     control.collector.* (the agent commands the collectors; operators
//     call them through the agent, on topics.AgentForwardPrefix);
//   - control.health.heartbeat.<id> and control.health.status.<id> come
//     only from collector <id>'s own connection, so the agent can trust
//     whose heartbeat it reads.
//
// It implements server.Authorizer, RequestAuthorizer and
// ResponseAuthorizer; it is not modified once the server uses it.
type policy struct {
	acl server.ACL
}

// ACLFile is the acl section of the agent's configuration: grants by
// identity ("uid:N", "cert:NAME", "token:NAME", "collector:ID", or "*"
// for every identity not named), replacing the defaults for those
// identities.
type ACLFile map[string]server.Grant

// newPolicy returns the policy for the collectors specs, with the
// operators' grant for root and this user, UserGrant for every other
// admitted identity, overridden by file.
func newPolicy(specs []CollectorSpec, file ACLFile, ttl time.Duration) (*policy, error) {
	op, user := OperatorGrant(), UserGrant()
	p := &policy{acl: server.ACL{Grants: map[string]server.Grant{}, Default: &user, ResponseTTL: ttl}}
	p.acl.Grants["uid:0"] = op
	p.acl.Grants["uid:"+strconv.Itoa(os.Getuid())] = op
	for _, s := range specs {
		p.acl.Grants[CollectorIdentity(s.ID)] = collectorGrant(s.ID, s.Kind)
	}
	for id, g := range file {
		if id == "*" {
			p.acl.Default = &g
			continue
		}
		if !strings.Contains(id, ":") {
			return nil, fmt.Errorf("agent: acl: %q is not an identity: write uid:N, cert:NAME, token:NAME, collector:ID or *", id)
		}
		p.acl.Grants[id] = g
	}
	if err := p.acl.Validate(); err != nil {
		return nil, fmt.Errorf("agent: acl: %w", err)
	}
	return p, nil
}

var errAgentOnly = errors.New("only the agent publishes there")

// fixed applies the rules no grant lifts to a publish or a request.
func fixed(identity, t string) error {
	switch {
	case topic.Match(alertTopics, t):
		return fmt.Errorf("%w: alerts are raised by the agent's detection rules", errAgentOnly)
	case topic.Match(collectorTopics, t):
		return fmt.Errorf("%w: control.collector.* carries the agent's commands; call a collector through the agent on %s<op>.<id> (daemoneye-cli call, collectors and ps do)", errAgentOnly, topics.AgentForwardPrefix)
	}
	for _, prefix := range []string{topics.HealthHeartbeat + ".", topics.HealthStatus + "."} {
		if id, ok := strings.CutPrefix(t, prefix); ok && identity != CollectorIdentity(id) {
			return fmt.Errorf("%w: %s%s is collector %s's own, sent on the connection the agent gave it", errAgentOnly, prefix, id, id)
		}
	}
	return nil
}

func (p *policy) AllowPublish(identity, t string) error {
	if err := fixed(identity, t); err != nil {
		return err
	}
	return p.acl.AllowPublish(identity, t)
}

func (p *policy) AllowRequest(identity, t, reply string) error {
	if err := fixed(identity, t); err != nil {
		return err
	}
	return p.acl.AllowRequest(identity, t, reply)
}

func (p *policy) AllowSubscribe(identity, pattern string) error {
	return p.acl.AllowSubscribe(identity, pattern)
}

func (p *policy) ConfinedResponses(identity string) time.Duration {
	return p.acl.ConfinedResponses(identity)
}

var _ interface {
	server.Authorizer
	server.RequestAuthorizer
	server.ResponseAuthorizer
} = (*policy)(nil)
