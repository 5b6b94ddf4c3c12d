package server

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/topic"
	"github.com/daemoneye/daemoneye/topics"
)

// ErrForbidden: the connection's identity may not publish to that topic or
// subscribe to that pattern. The error frame the client gets (code
// forbidden) names both.
var ErrForbidden = errors.New("server: forbidden")

// Authorizer decides what each identity ("uid:N", "token:NAME",
// "cert:NAME") may do once connected. Its methods are called from the
// connections' reader goroutines, concurrently; a publish decision is
// remembered per connection and topic (up to maxAuthCache topics), so
// AllowPublish runs once per topic, not per message. They return nil to
// allow, or an error (wrapped in ErrForbidden for the client) that says
// why not.
type Authorizer interface {
	AllowPublish(identity, topic string) error
	AllowSubscribe(identity, pattern string) error
}

// maxAuthCache bounds a connection's remembered publish decisions.
const maxAuthCache = 1024

// allowPublish applies the Authorizer to a publish, with the connection's
// cache of decisions. Only the reader goroutine calls it. A topic or reply
// topic the broker's policy refuses is refused before the Authorizer sees
// it, with an error wrapping topic.ErrInvalidTopic (not ErrForbidden), so
// that the client learns what is wrong with it, not that no grant matches.
func (c *conn) allowPublish(topic, reply string) error {
	a := c.srv.opts.Authorizer
	if a == nil {
		return nil
	}
	if c.resp != nil && reply == "" && strings.HasPrefix(topic, topics.InboxPrefix) && c.resp.take(topic) {
		return nil // the answer to a request delivered to this connection
	}
	if err, ok := c.authCache[topic]; ok {
		return err
	}
	if err := c.srv.opts.Broker.Policy().Validate(topic); err != nil {
		return err // not remembered: the broker refuses it anyway
	}
	if reply != "" {
		if err := c.srv.opts.Broker.Policy().Validate(reply); err != nil {
			return fmt.Errorf("reply topic: %w", err)
		}
	}
	var err error
	if ra, ok := a.(RequestAuthorizer); ok && reply != "" {
		if err = ra.AllowRequest(c.identity, topic, reply); err != nil {
			return fmt.Errorf("%w: %s may not send a request to %q: %v", ErrForbidden, c.identity, topic, err)
		}
		return nil
	}
	err = a.AllowPublish(c.identity, topic)
	if err == nil && reply != "" {
		// A request's reply topic is where the answer goes: the
		// requester must be allowed to receive there.
		if rerr := a.AllowSubscribe(c.identity, reply); rerr != nil {
			return fmt.Errorf("%w: %s may not use the reply topic %q: %v", ErrForbidden, c.identity, reply, rerr)
		}
	}
	if err != nil {
		err = fmt.Errorf("%w: %s may not publish to %q: %v", ErrForbidden, c.identity, topic, err)
	}
	if reply == "" { // reply topics are unique: not worth remembering
		if len(c.authCache) >= maxAuthCache {
			clear(c.authCache)
		}
		c.authCache[topic] = err
	}
	return err
}

// allowSubscribe applies the Authorizer to a subscription; as with
// allowPublish, a pattern the broker's policy refuses is refused first,
// wrapping topic.ErrInvalidPattern.
func (c *conn) allowSubscribe(pattern string) error {
	a := c.srv.opts.Authorizer
	if a == nil {
		return nil
	}
	if err := c.srv.opts.Broker.Policy().ValidatePattern(pattern); err != nil {
		return err
	}
	if err := a.AllowSubscribe(c.identity, pattern); err != nil {
		return fmt.Errorf("%w: %s may not subscribe to %q: %v", ErrForbidden, c.identity, pattern, err)
	}
	return nil
}

// refuse answers a publish or subscribe that allowPublish or
// allowSubscribe refused: a topic or pattern the broker's policy does not
// accept as the broker would (invalid_topic), else as forbidden.
func (c *conn) refuse(ref uint64, err error, publish bool) {
	if errors.Is(err, topic.ErrInvalidTopic) || errors.Is(err, topic.ErrInvalidPattern) {
		c.sendError(wire.CodeInvalidTopic, ref, err.Error())
		return
	}
	c.forbidden(ref, err, publish)
}

// forbidden answers a refused publish or subscribe and counts it.
func (c *conn) forbidden(ref uint64, err error, publish bool) {
	if publish {
		c.srv.deniedPublishes.Add(1)
	} else {
		c.srv.deniedSubscribes.Add(1)
	}
	c.log.Debug("server: forbidden", "err", err)
	c.sendError(wire.CodeForbidden, ref, wireText(err))
}

// RequestAuthorizer is implemented by an Authorizer that tells a request
// (a publish with a reply topic) from a plain publish. When the server's
// Authorizer implements it, a request is decided by AllowRequest alone;
// otherwise by AllowPublish for the topic and AllowSubscribe for the
// reply topic. Called concurrently, like Authorizer's methods.
type RequestAuthorizer interface {
	AllowRequest(identity, topic, reply string) error
}

// ResponseAuthorizer is implemented by an Authorizer that confines how an
// identity answers requests (nats-server's allow_responses): a confined
// connection may publish to a reply topic only after a request carrying
// it was delivered to it, once, within the TTL. Its other publishes are
// decided as usual.
type ResponseAuthorizer interface {
	// ConfinedResponses returns how long identity may answer a request
	// delivered to it; 0: the identity is not confined this way, and its
	// replies are decided by AllowPublish like any topic. Called once per
	// connection, after the handshake.
	ConfinedResponses(identity string) time.Duration
}

// DefaultResponseTTL is how long a confined connection may answer a
// request delivered to it when the ACL does not say.
const DefaultResponseTTL = 2 * time.Minute

// maxResponses bounds the reply topics a confined connection may answer
// at once; beyond it the oldest permission is forgotten (and counted).
const maxResponses = 1024

// responses is a confined connection's permissions to answer: reply
// topics delivered to it in requests, with their expiry. Publishers
// (deliver) add; the connection's reader takes. Safe for concurrent use.
type responses struct {
	ttl     time.Duration
	n       atomic.Int32 // len(pending), readable without mu
	mu      sync.Mutex
	pending map[string]time.Time // reply topic -> when the permission ends
	order   []string             // reply topics in the order delivered, for eviction
}

func newResponses(ttl time.Duration) *responses {
	return &responses{ttl: ttl, pending: make(map[string]time.Time)}
}

// add permits one answer to reply until the TTL passes. It runs on a
// publisher's goroutine, under the broker's locks: it only takes its own
// mutex. Beyond maxResponses permissions, the oldest is forgotten: an
// answer to it is refused (and counted) like any forbidden publish.
func (r *responses) add(reply string) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pending[reply]; !ok {
		for len(r.pending) >= maxResponses && len(r.order) > 0 {
			delete(r.pending, r.order[0])
			r.order = r.order[1:]
		}
		r.order = append(r.order, reply)
		if len(r.order) > 2*maxResponses { // taken entries linger in order: compact
			kept := r.order[:0]
			for _, t := range r.order {
				if _, ok := r.pending[t]; ok {
					kept = append(kept, t)
				}
			}
			r.order = kept
		}
	}
	r.pending[reply] = now.Add(r.ttl)
	r.n.Store(int32(len(r.pending)))
}

// take uses up the permission to answer on topic, if there is one that has
// not expired.
func (r *responses) take(topic string) bool {
	if r.n.Load() == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.pending[topic]
	if !ok {
		return false
	}
	delete(r.pending, topic)
	r.n.Store(int32(len(r.pending)))
	return !time.Now().After(until)
}

// confine sets up the connection's response permissions for its identity;
// the reader calls it once the identity is known, before anything can be
// delivered to the connection.
func (c *conn) confine() {
	if ra, ok := c.srv.opts.Authorizer.(ResponseAuthorizer); ok {
		if ttl := ra.ConfinedResponses(c.identity); ttl > 0 {
			c.resp = newResponses(ttl)
		}
	}
}

// Grant is what one identity may do under an ACL. Patterns follow the
// topic grammar ("+" one segment, "#" the rest).
type Grant struct {
	// Publish: topics the identity may publish to, as plain messages or
	// as requests.
	Publish []string `yaml:"publish"`
	// Request: topics the identity may send requests to (publishes with a
	// reply topic it may receive on), but not plain messages.
	Request []string `yaml:"request"`
	// Subscribe: patterns the identity may subscribe to. A subscription is
	// allowed when every topic it matches is matched by one of these
	// (events.process.+ is within events.#). Every identity may also
	// receive on its own inbox (control.inbox.<kind>-<name>-<random>,
	// docs/security.md).
	Subscribe []string `yaml:"subscribe"`
	// Respond: the identity answers requests delivered to it. Its
	// connections may publish to a reply topic only after a request
	// carrying it was delivered to them, once, within the ACL's
	// ResponseTTL; without Respond, only a Publish pattern lets it
	// publish to a reply topic.
	Respond bool `yaml:"respond"`
}

// ACL is an Authorizer from a table: each identity's Grant. An identity
// not in Grants gets Default; with Default nil it may do nothing.
// Refusals name the grant, so the client's error says what it may do.
// An ACL must not be modified once the server uses it; its methods are
// safe for concurrent use.
type ACL struct {
	Grants  map[string]Grant
	Default *Grant
	// ResponseTTL bounds how long a Respond identity may answer a
	// request delivered to it (default DefaultResponseTTL).
	ResponseTTL time.Duration
	// Policy is the topic policy the grants' patterns are written in and
	// topics are matched with: it should be the broker's. Nil means the
	// default policy, except for an ACL that is itself
	// Options.Authorizer: New then uses a copy of it with the broker's
	// policy (eventbus.Broker.Policy) and refuses grants that policy does
	// not accept. An ACL used inside another Authorizer is not seen by
	// New: set its Policy to the broker's and call Validate yourself.
	Policy *topic.Policy
}

// policy returns the policy the ACL matches with.
func (a *ACL) policy() *topic.Policy {
	if a.Policy == nil {
		return &defaultPolicy
	}
	return a.Policy
}

// defaultPolicy is the zero topic.Policy: the default.
var defaultPolicy topic.Policy

// Validate checks every pattern of the ACL against its Policy, naming the
// identity and the pattern at fault.
func (a *ACL) Validate() error {
	pol := a.policy()
	check := func(id string, g *Grant) error {
		for _, list := range [][]string{g.Publish, g.Request, g.Subscribe} {
			for _, p := range list {
				if err := pol.ValidatePattern(p); err != nil {
					return fmt.Errorf("server: the ACL's grant for %s: %w", id, err)
				}
			}
		}
		return nil
	}
	for id, g := range a.Grants {
		if err := check(id, &g); err != nil {
			return err
		}
	}
	if a.Default != nil {
		return check("everyone else", a.Default)
	}
	return nil
}

func (a *ACL) grant(identity string) (*Grant, bool) {
	if g, ok := a.Grants[identity]; ok {
		return &g, true
	}
	return a.Default, a.Default != nil
}

// AllowPublish implements Authorizer.
func (a *ACL) AllowPublish(identity, t string) error {
	g, ok := a.grant(identity)
	if !ok {
		return fmt.Errorf("%s has no grant in the ACL", identity)
	}
	if matchAny(a.policy(), g.Publish, t) {
		return nil
	}
	switch {
	case len(g.Publish) > 0:
		return fmt.Errorf("%s may publish only to %s", identity, list(g.Publish))
	case len(g.Request) > 0:
		return fmt.Errorf("%s may publish nothing but requests to %s", identity, list(g.Request))
	}
	return fmt.Errorf("%s may publish nothing", identity)
}

// AllowRequest implements RequestAuthorizer.
func (a *ACL) AllowRequest(identity, t, reply string) error {
	g, ok := a.grant(identity)
	if !ok {
		return fmt.Errorf("%s has no grant in the ACL", identity)
	}
	if pol := a.policy(); !matchAny(pol, g.Publish, t) && !matchAny(pol, g.Request, t) {
		return fmt.Errorf("%s may send requests only to %s", identity, list(append(slices.Clip(g.Publish), g.Request...)))
	}
	if !strings.HasPrefix(reply, topics.InboxPrefix) {
		// The responder may answer there once whatever its grant says:
		// a reply topic elsewhere (events.alert.high) would let a request
		// steer it to publish where nobody may.
		return fmt.Errorf("the reply topic %q is not an inbox (%s...)", reply, topics.InboxPrefix)
	}
	if err := a.AllowSubscribe(identity, reply); err != nil {
		return fmt.Errorf("the reply topic %q: %w", reply, err)
	}
	return nil
}

// AllowSubscribe implements Authorizer.
func (a *ACL) AllowSubscribe(identity, pattern string) error {
	if wire.OwnsInbox(identity, pattern) {
		return nil
	}
	g, ok := a.grant(identity)
	if !ok {
		return fmt.Errorf("%s has no grant in the ACL", identity)
	}
	for _, p := range g.Subscribe {
		if topic.Covers(p, pattern) {
			return nil
		}
	}
	if owner := wire.InboxOwner(identity); owner != "" {
		return fmt.Errorf("%s may subscribe only within %s and its own inbox (%s%s-<random>.+)", identity, list(g.Subscribe), topics.InboxPrefix, owner)
	}
	return fmt.Errorf("%s may subscribe only within %s", identity, list(g.Subscribe))
}

// ConfinedResponses implements ResponseAuthorizer.
func (a *ACL) ConfinedResponses(identity string) time.Duration {
	if g, ok := a.grant(identity); !ok || !g.Respond {
		return 0
	}
	if a.ResponseTTL > 0 {
		return a.ResponseTTL
	}
	return DefaultResponseTTL
}

func matchAny(pol *topic.Policy, patterns []string, t string) bool {
	for _, p := range patterns {
		if pol.Match(p, t) {
			return true
		}
	}
	return false
}

func list(patterns []string) string {
	if len(patterns) == 0 {
		return "nothing"
	}
	return strings.Join(patterns, ", ")
}
