package wire

import (
	"strings"

	"github.com/daemoneye/daemoneye/topics"
)

// inboxRandLen is the length of the random part of an inbox name: 8 bytes
// in hex.
const inboxRandLen = 16

// InboxOwner returns the part of an inbox name bound to identity ("uid:N",
// "token:NAME", "cert:NAME"): the kind and name joined by '-', as in
// "token-procmond". An inbox named InboxOwner(id) + "-" + 16 hex digits
// belongs to id, so a broker can let a confined identity receive on its
// own inbox and nobody else's. It returns "" when the name has characters
// a topic segment may not hold (anything but a-z, 0-9, '_' and '-'); such
// an identity's inbox is a bare random name and bound to nobody.
func InboxOwner(identity string) string {
	kind, name, ok := strings.Cut(identity, ":")
	if !ok || kind == "" || name == "" {
		return ""
	}
	for _, r := range kind + name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return ""
		}
	}
	return kind + "-" + name
}

// InboxName returns the inbox segment for identity with the random part
// rnd (16 lowercase hex digits): InboxOwner(identity) + "-" + rnd, or rnd
// alone when the identity cannot own an inbox.
func InboxName(identity, rnd string) string {
	if o := InboxOwner(identity); o != "" {
		return o + "-" + rnd
	}
	return rnd
}

// OwnsInbox reports whether topic or pattern lies in an inbox bound to
// identity: topics.InboxPrefix, the identity's inbox name, then exactly one more
// segment ("+" or a literal). Wildcards over other inboxes never do.
func OwnsInbox(identity, pattern string) bool {
	owner := InboxOwner(identity)
	if owner == "" {
		return false
	}
	rest, ok := strings.CutPrefix(pattern, topics.InboxPrefix)
	if !ok {
		return false
	}
	name, tail, ok := strings.Cut(rest, ".")
	if !ok || tail == "" || strings.ContainsAny(tail, ".#") {
		return false
	}
	rnd, ok := strings.CutPrefix(name, owner+"-")
	if !ok || len(rnd) != inboxRandLen {
		return false
	}
	for _, r := range rnd {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
