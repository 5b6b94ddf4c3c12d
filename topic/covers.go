package topic

import "strings"

// Covers reports whether every topic that pattern p matches is also
// matched by pattern grant: "#" covers everything, "events.#" covers
// "events.process.+" and "events", "events.+" does not cover "events.#".
// An authorizer uses it to allow a subscription only within what an
// identity was granted. Both arguments should be valid patterns; Covers
// does not validate them. It allocates two slices of segments; it is safe
// for concurrent use.
func Covers(grant, p string) bool {
	gs, ps := strings.Split(grant, "."), strings.Split(p, ".")
	for i, g := range gs {
		if g == "#" {
			return true
		}
		if i >= len(ps) {
			return false
		}
		switch {
		case ps[i] == "#":
			// p matches every tail here, of one segment or more at the
			// start of a topic (a topic is never empty): only "#", or
			// "+.#" at the start, matches all of them.
			return i == 0 && g == "+" && len(gs) == 2 && gs[1] == "#"
		case g == "+", g == ps[i]:
		default:
			return false
		}
	}
	return len(ps) == len(gs)
}
