package server

import (
	"errors"
	"fmt"

	"github.com/daemoneye/daemoneye/internal/wire"
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
// cache of decisions. Only the reader goroutine calls it.
func (c *conn) allowPublish(topic, reply string) error {
	a := c.srv.opts.Authorizer
	if a == nil {
		return nil
	}
	if err, ok := c.authCache[topic]; ok {
		return err
	}
	err := a.AllowPublish(c.identity, topic)
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

func (c *conn) allowSubscribe(pattern string) error {
	a := c.srv.opts.Authorizer
	if a == nil {
		return nil
	}
	if err := a.AllowSubscribe(c.identity, pattern); err != nil {
		return fmt.Errorf("%w: %s may not subscribe to %q: %v", ErrForbidden, c.identity, pattern, err)
	}
	return nil
}

// forbidden answers a refused publish or subscribe and counts it.
func (c *conn) forbidden(ref uint64, err error, publish bool) {
	if publish {
		c.srv.deniedPublishes.Add(1)
	} else {
		c.srv.deniedSubscribes.Add(1)
	}
	c.log.Debug("server: forbidden", "err", err)
	c.sendError(wire.CodeForbidden, ref, err.Error())
}
