package client

import (
	"errors"
	"fmt"
	"strings"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/topic"
)

// refusal is an error frame the server answered with. It reads "client:
// refused by the server: " and the server's text (which says what was
// refused and why, without the Go package the server's error came from),
// and matches ErrRefused and the sentinel the frame's code stands for, if
// any. A request nobody subscribes to reads "eventbus: no responders: "
// and the rest of the server's text, and matches ErrNoResponders only.
type refusal struct {
	code wire.Code
	text string
	is   error // the sentinel the code stands for besides ErrRefused; nil if none
}

func newRefusal(e *wire.ErrorBody) error {
	r := &refusal{code: e.Code, text: string(e.Text)}
	switch e.Code {
	case wire.CodeNoResponders:
		// The server says "no responders: ...": ErrNoResponders says it.
		r.text = strings.TrimPrefix(r.text, "no responders: ")
		r.is = ErrNoResponders
	case wire.CodeTooLarge:
		r.is = eventbus.ErrPayloadTooLarge
	case wire.CodeSlowConsumer:
		r.is = eventbus.ErrSlowConsumer
	case wire.CodeInvalidTopic:
		r.is = topic.ErrInvalidTopic
		if strings.HasPrefix(r.text, "invalid pattern") {
			r.is = topic.ErrInvalidPattern
		}
	}
	return r
}

func (r *refusal) Error() string {
	if r.code == wire.CodeNoResponders {
		return ErrNoResponders.Error() + ": " + r.text
	}
	return ErrRefused.Error() + ": " + r.text
}

// Is reports whether target is ErrRefused or the sentinel for the code.
func (r *refusal) Is(target error) bool {
	if r.code == wire.CodeNoResponders {
		return target == ErrNoResponders
	}
	return target == ErrRefused || r.is != nil && target == r.is
}

// disconnected returns why as an error wrapping ErrDisconnected, wrapping
// it again only if it does not already: the sentinel is said once.
func disconnected(why error) error {
	switch {
	case why == nil:
		return ErrDisconnected
	case errors.Is(why, ErrDisconnected):
		return why
	}
	return fmt.Errorf("%w: %w", ErrDisconnected, why)
}
