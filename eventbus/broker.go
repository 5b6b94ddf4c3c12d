package eventbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/topic"
)

// Broker routes messages from publishers to the subscriptions whose
// patterns match their topics. It is safe for concurrent use. Create one
// with [New]; stop it with [Broker.Shutdown] or [Broker.Close].
type Broker struct {
	maxPayload int
	maxTopics  int
	maxSubs    int
	log        *slog.Logger
	index      *topic.Index[*Subscription]

	closing atomic.Bool // no new publishes or subscriptions
	nextID  atomic.Uint64

	// topics maps a topic name to its *topicState. A sync.Map because
	// publishers only read it, and its reads write no shared memory, unlike
	// an RWMutex's reader count that every publisher would bounce between
	// cores. topicsMu serializes inserts and eviction.
	topics   sync.Map
	topicsMu sync.Mutex
	ntopics  int // under topicsMu
	evicted  atomic.Uint64

	ephemeral *ephemeralTopics // nil: every topic keeps its own state

	mu               sync.Mutex // guards subs, subsPeak, closed, retiredDelivered and removed
	subs             map[*Subscription]struct{}
	subsPeak         int // most entries subs held since it was last rebuilt: Go maps never shrink
	closed           bool
	retiredDelivered uint64 // Delivered of removed subscriptions
	removed          int    // subscriptions retired since the last sweep of stale routes

	handlers sync.WaitGroup // SubscribeFunc goroutines
}

// topicState is what the broker keeps per topic: the sequence, the cached
// route and the counters.
type topicState struct {
	name  string
	route atomic.Pointer[route]

	// mu makes sequence assignment and enqueueing one step, so that every
	// subscriber sees a topic's messages (of one priority) in sequence order.
	mu       sync.Mutex
	seq      atomic.Uint64 // messages published; written under mu
	enqueued uint64        // copies queued for subscribers; under mu
	evicted  bool          // forgotten under MaxTopics; publishers look again
	scratch  []Message     // reused for drop-oldest evictions; under mu

	unrouted atomic.Uint64
	dropped  [numDropReasons]atomic.Uint64
}

// route is the deduplicated set of subscriptions for a topic, valid while
// the index generation equals gen: subs receive every message, groups one
// member each.
type route struct {
	gen    uint64
	subs   []*Subscription
	groups []*queueGroup
}

// queueGroup is the members of one queue group that match a topic.
type queueGroup struct {
	name    string
	members []*Subscription
	next    atomic.Uint32 // round-robin turn
}

// New returns a running broker. It returns an error wrapping
// ErrInvalidOptions when an option is out of range.
func New(opts Options) (*Broker, error) {
	if opts.MaxPayload < 0 || opts.MaxTopics < 0 || opts.MaxSubscriptions < 0 {
		return nil, fmt.Errorf("%w: MaxPayload, MaxTopics and MaxSubscriptions must not be negative", ErrInvalidOptions)
	}
	idx, err := topic.NewIndex[*Subscription](topic.IndexOptions{Policy: opts.Policy, CacheSize: opts.MatchCacheSize})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	b := &Broker{
		maxPayload: cmpOr(opts.MaxPayload, DefaultMaxPayload),
		maxTopics:  cmpOr(opts.MaxTopics, DefaultMaxTopics),
		maxSubs:    cmpOr(opts.MaxSubscriptions, DefaultMaxSubscriptions),
		log:        opts.Logger,
		index:      idx,
		subs:       make(map[*Subscription]struct{}),
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if p := cmpOrString(opts.EphemeralPrefix, DefaultEphemeralPrefix); p != "-" {
		b.ephemeral = &ephemeralTopics{prefix: p, state: topicState{name: p + "#"}}
	}
	return b, nil
}

func cmpOrString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Policy returns the topic policy the broker validates with.
func (b *Broker) Policy() *topic.Policy { return b.index.Policy() }

// MaxPayload returns the largest payload Publish accepts, in bytes.
func (b *Broker) MaxPayload() int { return b.maxPayload }

// Publish delivers m to every subscription whose pattern matches m.Topic,
// at most once per subscriber (see [Subscriber]). The broker assigns
// m.Seq. It does not copy the payload.
//
// Publish waits only for a subscription with OverflowBlock whose queue is
// full, and at most until ctx is done or that subscription's BlockTimeout
// passes. A message that some subscriber did not get is counted and reported:
// the error wraps ErrSlowConsumer or ErrQueueFull and names the subscriber;
// every other subscriber got the message. It returns an error wrapping
// topic.ErrInvalidTopic, ErrPayloadTooLarge, ErrInvalidPriority or ErrClosed
// without delivering anything.
func (b *Broker) Publish(ctx context.Context, m Message) error {
	if b.closing.Load() {
		return fmt.Errorf("%w: cannot publish to %q: the broker is shutting down", ErrClosed, m.Topic)
	}
	if len(m.Payload) > b.maxPayload {
		return fmt.Errorf("%w: %d bytes to %q; the limit is %d bytes: split the payload or raise Options.MaxPayload",
			ErrPayloadTooLarge, len(m.Payload), m.Topic, b.maxPayload)
	}
	lvl, ok := m.Priority.level()
	if !ok {
		return fmt.Errorf("%w: %d: use PriorityLow to PriorityCritical", ErrInvalidPriority, m.Priority)
	}
	if m.Reply != "" {
		if err := b.index.Policy().Validate(m.Reply); err != nil {
			return fmt.Errorf("eventbus: publish: reply topic: %w", err)
		}
	}
	var ts *topicState
	var r *route
	for {
		var err error
		if b.ephemeral != nil && strings.HasPrefix(m.Topic, b.ephemeral.prefix) {
			if ts, r, err = b.ephemeralRoute(m.Topic); err != nil {
				return fmt.Errorf("eventbus: publish: %w", err)
			}
			ts.mu.Lock()
			break
		}
		if ts, err = b.topicState(m.Topic); err != nil {
			return fmt.Errorf("eventbus: publish: %w", err)
		}
		if r = ts.route.Load(); r == nil || r.gen != b.index.Generation() {
			r = b.reroute(ts)
		}
		ts.mu.Lock()
		if !ts.evicted {
			break
		}
		ts.mu.Unlock() // evicted since we looked it up: use its successor
	}

	if m.Reply != "" && len(r.subs) == 0 && len(r.groups) == 0 {
		ts.mu.Unlock()
		ts.unrouted.Add(1)
		return fmt.Errorf("%w: nobody subscribes to %q; is the service running?", ErrNoResponders, m.Topic)
	}
	p := publication{ctx: ctx, ts: ts, lvl: lvl}
	evicted := ts.scratch[:0]
	m.Seq = ts.seq.Add(1)
	if len(r.subs) == 0 && len(r.groups) == 0 {
		ts.unrouted.Add(1)
	}
	for _, s := range r.subs {
		if s.owner.sink == nil { // the common case, kept inline
			if res := s.q.push(&m, lvl, &evicted, false); res == pushOK {
				p.n++
			} else {
				b.settle(&p, s, res, &m, &evicted)
			}
			continue
		}
		b.offer(&p, s, &m, &evicted)
	}
	for _, g := range r.groups {
		b.offerGroup(&p, g, &m, &evicted)
	}
	ts.enqueued += p.n
	clear(evicted) // do not keep payloads alive
	ts.scratch = evicted[:0]
	ts.mu.Unlock()

	errs := p.errs
	gone, blocked := p.gone, p.blocked
	for _, s := range gone {
		b.log.Warn("subscription disconnected: its queue was full", "subscription", s.Name(), "pattern", s.pattern)
		s.unsubscribe()
	}
	for _, s := range blocked {
		flushBatch(ctx) // what the publisher deferred must not wait with it
		if err := b.waitPush(ctx, ts, s, &m, lvl); err != nil {
			errs = joinErr(errs, err)
		}
	}
	return errs
}

// publication is the state of one Publish while it holds the topic's lock.
// The message and the eviction scratch are passed beside it, not in it, so
// that escape analysis keeps all three on Publish's stack.
type publication struct {
	ctx     context.Context // the publisher's, passed to sinks
	ts      *topicState
	lvl     int
	n       uint64          // copies queued or sunk
	blocked []*Subscription // full under OverflowBlock: wait after unlocking (rare: allocated on use)
	gone    []*Subscription // disconnected for overflow: unsubscribe after unlocking (rare)
	errs    error
}

// offer hands m to s, applying s's overflow policy. evicted receives
// messages dropped for it.
func (b *Broker) offer(p *publication, s *Subscription, m *Message, evicted *[]Message) {
	if sink := s.owner.sink; sink != nil {
		if err := sink.Deliver(p.ctx, s, *m); err != nil {
			if waitable(sink, s, err) {
				p.blocked = append(p.blocked, s)
				return
			}
			p.errs = joinErr(p.errs, b.sinkRefused(p.ts, s, m, err))
			return
		}
		s.addSunk()
		p.n++
		return
	}
	b.settle(p, s, s.q.push(m, p.lvl, evicted, false), m, evicted)
}

// settle records what became of m offered to s's queue.
func (b *Broker) settle(p *publication, s *Subscription, res pushResult, m *Message, evicted *[]Message) {
	switch res {
	case pushOK:
		p.n++
	case pushEvicted:
		p.n++
		b.countDrops(s, DropOldest, *evicted)
		*evicted = (*evicted)[:0]
	case pushFull:
		p.blocked = append(p.blocked, s)
	case pushDropped:
		s.drops[DropQueueFull].Add(1)
		p.ts.dropped[DropQueueFull].Add(1)
		p.errs = joinErr(p.errs, s.fullErr())
	case pushDisconnected:
		s.drops[DropDisconnect].Add(1)
		p.ts.dropped[DropDisconnect].Add(1)
		b.countDrops(s, DropDisconnect, *evicted)
		*evicted = (*evicted)[:0]
		p.errs = joinErr(p.errs, s.slowErr())
		p.gone = append(p.gone, s)
	case pushClosed:
		p.errs = joinErr(p.errs, b.lostToClose(p.ts, s, m))
	}
}

// offerGroup hands the message to one member of a queue group: the next in
// turn that has room. If none has, the member whose turn it is applies its
// overflow policy.
func (b *Broker) offerGroup(p *publication, g *queueGroup, m *Message, evicted *[]Message) {
	k := uint32(len(g.members))
	first := g.next.Add(1) % k
	for i := range k {
		s := g.members[(first+i)%k]
		if sink := s.owner.sink; sink != nil {
			td, ok := sink.(TryDeliverer)
			if ok && td.TryDeliver(p.ctx, s, *m) == nil {
				s.addSunk()
				p.n++
				return
			}
			continue
		}
		if s.q.tryPush(m, p.lvl) == pushOK {
			p.n++
			return
		}
	}
	b.offer(p, g.members[first], m, evicted)
}

func joinErr(errs, err error) error {
	if errs == nil {
		return err
	}
	return errors.Join(errs, err)
}

// waitPush waits for room in a blocking subscription's queue.
func (b *Broker) waitPush(ctx context.Context, ts *topicState, s *Subscription, m *Message, lvl int) error {
	var timer *time.Timer
	var timeout <-chan time.Time
	if s.blockTimeout > 0 {
		timer = time.NewTimer(s.blockTimeout)
		defer timer.Stop()
		timeout = timer.C
	}
	if sink := s.owner.sink; sink != nil {
		return b.waitSink(ctx, ts, s, m, sink, timeout)
	}
	s.q.block(1)
	defer s.q.block(-1)
	var none []Message
	for {
		switch s.q.push(m, lvl, &none, true) {
		case pushOK:
			ts.mu.Lock()
			ts.enqueued++
			ts.mu.Unlock()
			return nil
		case pushClosed:
			return b.lostToClose(ts, s, m)
		case pushDropped: // larger than the whole queue
			s.drops[DropQueueFull].Add(1)
			ts.dropped[DropQueueFull].Add(1)
			return s.fullErr()
		}
		room := s.q.waitRoom(m.size())
		if room == nil {
			continue
		}
		var why error
		select {
		case <-room:
			continue
		case <-ctx.Done():
			why = ctx.Err()
		case <-timeout:
			why = fmt.Errorf("waited %v for room", s.blockTimeout)
		}
		s.drops[DropTimeout].Add(1)
		ts.dropped[DropTimeout].Add(1)
		return fmt.Errorf("%w (message %d to %q dropped for it: %w)", s.slowErr(), m.Seq, m.Topic, why)
	}
}

// waitable reports whether a sink's refusal should make the publisher wait.
func waitable(sink Sink, s *Subscription, err error) bool {
	_, ok := sink.(RoomWaiter)
	return ok && s.q.overflow == OverflowBlock && errors.Is(err, ErrQueueFull) && !errors.Is(err, ErrBudgetExhausted)
}

// waitSink waits for room in a RoomWaiter sink, offering the message again
// each time room may have appeared.
func (b *Broker) waitSink(ctx context.Context, ts *topicState, s *Subscription, m *Message, sink Sink, timeout <-chan time.Time) error {
	w := sink.(RoomWaiter)
	for {
		ts.mu.Lock()
		err := sink.Deliver(ctx, s, *m)
		if err == nil {
			ts.enqueued++
		}
		ts.mu.Unlock()
		if err == nil {
			s.addSunk()
			return nil
		}
		if !waitable(sink, s, err) {
			return b.sinkRefused(ts, s, m, err)
		}
		room := w.Room(s, *m)
		var why error
		if room == nil { // room now: offer again, unless the wait is over
			select {
			case <-ctx.Done():
				why = ctx.Err()
			case <-timeout:
				why = fmt.Errorf("waited %v for room", s.blockTimeout)
			default:
				continue
			}
		} else {
			select {
			case <-room:
				continue
			case <-ctx.Done():
				why = ctx.Err()
			case <-timeout:
				why = fmt.Errorf("waited %v for room", s.blockTimeout)
			}
		}
		s.drops[DropTimeout].Add(1)
		ts.dropped[DropTimeout].Add(1)
		if sr, ok := sink.(StallReporter); ok && ctx.Err() == nil {
			sr.Stalled(s)
		}
		return fmt.Errorf("%w (message %d to %q dropped for it: %w)", s.slowErr(), m.Seq, m.Topic, why)
	}
}

// lostToClose accounts for a message offered to a subscription that had
// closed. A subscription that went away by Unsubscribe no longer wanted it;
// one that was disconnected, or closed with the broker, lost it.
func (b *Broker) lostToClose(ts *topicState, s *Subscription, m *Message) error {
	why := DropClosed
	switch {
	case s.q.disconnected():
		why = DropDisconnect
	case !b.closing.Load():
		// The subscription closed while the route still listed it: the
		// subscriber went away, which is not the publisher's error, but
		// the copy it was offered is lost and counts as such.
		s.drops[DropClosed].Add(1)
		ts.dropped[DropClosed].Add(1)
		return nil
	}
	s.drops[why].Add(1)
	ts.dropped[why].Add(1)
	if why == DropDisconnect {
		return s.slowErr()
	}
	return fmt.Errorf("%w: message %d to %q reached %q as the broker closed", ErrClosed, m.Seq, m.Topic, s.Name())
}

// countDrops counts messages a subscription lost, against their topics.
func (b *Broker) countDrops(s *Subscription, why DropReason, msgs []Message) {
	if len(msgs) == 0 {
		return
	}
	s.drops[why].Add(uint64(len(msgs)))
	for i := range msgs {
		if v, ok := b.topics.Load(msgs[i].Topic); ok {
			v.(*topicState).dropped[why].Add(1)
		}
	}
}

// topicState returns the state of a valid topic, creating it if needed.
func (b *Broker) topicState(name string) (*topicState, error) {
	if v, ok := b.topics.Load(name); ok {
		return v.(*topicState), nil
	}
	if err := b.index.Policy().Validate(name); err != nil {
		return nil, err
	}
	b.topicsMu.Lock()
	defer b.topicsMu.Unlock()
	if v, ok := b.topics.Load(name); ok {
		return v.(*topicState), nil
	}
	if b.ntopics >= b.maxTopics {
		drop := max(1, b.maxTopics/8)
		b.topics.Range(func(k, v any) bool {
			old := v.(*topicState)
			old.mu.Lock()
			old.evicted = true
			old.mu.Unlock()
			b.topics.Delete(k)
			b.ntopics--
			b.evicted.Add(1)
			drop--
			return drop > 0
		})
	}
	ts := &topicState{name: name}
	b.topics.Store(name, ts)
	b.ntopics++
	return ts, nil
}

// ephemeralTopics is the one state shared by the topics under
// Options.EphemeralPrefix.
type ephemeralTopics struct {
	prefix string
	state  topicState
}

// ephemeralRoute returns the shared state and a fresh route for a topic
// under the ephemeral prefix: it bypasses the match cache and keeps no
// per-topic state, so one-off reply topics evict neither.
func (b *Broker) ephemeralRoute(name string) (*topicState, *route, error) {
	if err := b.index.Policy().Validate(name); err != nil {
		return nil, nil, err
	}
	return &b.ephemeral.state, routeOf(0, b.index.MatchAppend(nil, name)), nil
}

// reroute refreshes the topic's cached route from the index.
func (b *Broker) reroute(ts *topicState) *route {
	gen := b.index.Generation() // read first: a change racing with Match leaves the route stale, not wrong
	subs, _ := b.index.Match(ts.name)
	r := routeOf(gen, subs)
	ts.route.Store(r)
	return r
}

// routeOf builds a route from matching subscriptions, gathering the
// members of each queue group.
func routeOf(gen uint64, subs []*Subscription) *route {
	r := &route{gen: gen, subs: subs}
	if slices.ContainsFunc(subs, func(s *Subscription) bool { return s.group != "" }) {
		r.subs = nil
		for _, s := range subs {
			if s.group == "" {
				r.subs = append(r.subs, s)
				continue
			}
			i := slices.IndexFunc(r.groups, func(g *queueGroup) bool { return g.name == s.group })
			if i < 0 {
				i = len(r.groups)
				r.groups = append(r.groups, &queueGroup{name: s.group})
			}
			r.groups[i].members = append(r.groups[i].members, s)
		}
	}
	return r
}

// NewSubscriber returns a subscriber: a group of subscriptions that receives
// each message at most once. name identifies it in stats; empty means
// "subscriber-<id>".
func (b *Broker) NewSubscriber(name string) *Subscriber {
	id := b.nextID.Add(1)
	return &Subscriber{b: b, id: id, name: name}
}

// Subscribe creates a subscription of its own subscriber; see
// [Subscriber.Subscribe].
func (b *Broker) Subscribe(pattern string, opts SubscribeOptions) (*Subscription, error) {
	return b.NewSubscriber(opts.Name).Subscribe(pattern, opts)
}

// SubscribeFunc creates a subscription of its own subscriber that calls fn
// for every message; see [Subscriber.SubscribeFunc].
func (b *Broker) SubscribeFunc(pattern string, opts SubscribeOptions, fn func(Delivery)) (*Subscription, error) {
	return b.NewSubscriber(opts.Name).SubscribeFunc(pattern, opts, fn)
}

// Shutdown stops the broker gracefully: it refuses new publishes and
// subscriptions at once, waits until every subscription has taken what is
// queued for it (and every handler has returned from its last message),
// then closes everything. If ctx ends first, it closes at once, counts the
// messages still queued as dropped, and returns ctx's error.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.closing.Store(true)
	poll := time.Millisecond
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for !b.drained() {
		select {
		case <-ctx.Done():
			b.log.Warn("shutdown deadline passed with messages queued; closing", "err", ctx.Err())
			b.closeAll() // handlers finish their current batch on their own; Close waits for them
			return fmt.Errorf("eventbus: shutdown: %w", ctx.Err())
		case <-timer.C:
			poll = min(2*poll, 50*time.Millisecond)
			timer.Reset(poll)
		}
	}
	b.Close()
	return nil
}

func (b *Broker) drained() bool {
	for _, s := range b.subscriptions() {
		if !s.q.idle(s.handler != nil) {
			return false
		}
	}
	return true
}

func (b *Broker) subscriptions() []*Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*Subscription, 0, len(b.subs))
	for s := range b.subs {
		out = append(out, s)
	}
	return out
}

// liveSub is a live subscription and what its Sink took, read in
// snapshot.
type liveSub struct {
	s    *Subscription
	sunk uint64
}

// snapshot returns the live subscriptions with their sink counts and,
// from the same instant, the Delivered count of the removed ones: retire
// moves a sink count into the removed ones' under b.mu, so reading both
// under it counts each delivery once (read later, a count retire moved
// meanwhile would be in neither).
func (b *Broker) snapshot() ([]liveSub, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]liveSub, 0, len(b.subs))
	for s := range b.subs {
		out = append(out, liveSub{s, s.sunk.Load()})
	}
	return out, b.retiredDelivered
}

// Close stops the broker at once: publishes fail with ErrClosed, every
// subscription is closed (messages still queued are counted as dropped with
// DropClosed), and Close waits for SubscribeFunc handlers to return. It must
// not be called from a handler. Calling it again does nothing.
func (b *Broker) Close() error {
	b.closeAll()
	b.handlers.Wait()
	return nil
}

// closeAll closes every subscription without waiting for handlers.
func (b *Broker) closeAll() {
	b.closing.Store(true)
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	for _, s := range b.subscriptions() {
		s.close(fmt.Errorf("%w: the broker closed", ErrClosed))
	}
}
