package topic

import (
	"regexp"
	"slices"
	"strings"
)

// This file holds deliberately naive reference implementations. They share
// no code with the package, so the fuzz tests can use them as oracles.

var (
	naiveLiteral = regexp.MustCompile(`^[a-z0-9_-]+$`)
	naiveDomains = []string{"events", "control"}
)

func naiveValidTopic(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	segs := strings.Split(name, ".")
	if len(segs) > 8 || !slices.Contains(naiveDomains, segs[0]) {
		return false
	}
	for _, s := range segs {
		if !naiveLiteral.MatchString(s) {
			return false
		}
	}
	return true
}

func naiveValidPattern(p string) bool {
	if p == "" || len(p) > 256 {
		return false
	}
	segs := strings.Split(p, ".")
	if len(segs) > 8 {
		return false
	}
	for i, s := range segs {
		switch {
		case s == "#" && i == len(segs)-1, s == "+":
		case naiveLiteral.MatchString(s):
			if i == 0 && !slices.Contains(naiveDomains, s) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// naiveMatch matches by recursion over split segments.
func naiveMatch(pattern, name string) bool {
	if !naiveValidPattern(pattern) || !naiveValidTopic(name) {
		return false
	}
	var rec func(p, n []string) bool
	rec = func(p, n []string) bool {
		switch {
		case len(p) == 0:
			return len(n) == 0
		case p[0] == "#":
			return true
		case len(n) == 0:
			return false
		case p[0] == "+" || p[0] == n[0]:
			return rec(p[1:], n[1:])
		}
		return false
	}
	return rec(strings.Split(pattern, "."), strings.Split(name, "."))
}

// naiveMoreSpecific reports whether pattern a is more specific than b, for
// two patterns that match the same topic, by the rule in the package doc.
func naiveMoreSpecific(a, b string) bool {
	rank := func(segs []string, i int) int {
		switch {
		case i > len(segs):
			return 0
		case i == len(segs):
			return 2 // ended
		case segs[i] == "#":
			return 1
		case segs[i] == "+":
			return 2
		}
		return 3
	}
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i <= max(len(as), len(bs)); i++ {
		ra, rb := rank(as, i), rank(bs, i)
		if i > 0 && i-1 < len(as) && as[i-1] == "#" {
			ra = 0
		}
		if i > 0 && i-1 < len(bs) && bs[i-1] == "#" {
			rb = 0
		}
		if ra != rb {
			return ra > rb
		}
	}
	return false
}

// naiveSubscriber is one pattern of one owner.
type naiveSubscriber struct {
	owner   uint64
	pattern string
	id      int
}

// naiveIndexMatch returns the ids that an index holding subs must return
// for name: for each owner, its most specific matching pattern.
func naiveIndexMatch(subs []naiveSubscriber, name string) []int {
	best := map[uint64]naiveSubscriber{}
	for _, s := range subs {
		if !naiveMatch(s.pattern, name) {
			continue
		}
		if cur, ok := best[s.owner]; !ok || naiveMoreSpecific(s.pattern, cur.pattern) {
			best[s.owner] = s
		}
	}
	var ids []int
	for _, s := range best {
		ids = append(ids, s.id)
	}
	slices.Sort(ids)
	return ids
}
