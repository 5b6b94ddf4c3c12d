package topic

import (
	"strings"
	"testing"
)

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		grant, p string
		want     bool
	}{
		{"#", "control.inbox.#", true},
		{"events.#", "events.process.+", true},
		{"events.#", "events", true},
		{"events.+", "events.#", false},
		{"events.+", "events.process", true},
		{"events.+", "events.process.x", false},
		{"events.process", "events.+", false},
		{"control.collector.+.x", "control.collector.+.x", true},
		{"control.collector.+.x", "control.collector.+.+", false},
		{"control.collector.+.x", "control.#", false},
		{"+.#", "#", true}, // a topic has at least one segment
		{"+", "#", false},
		{"events.#", "#", false},
		{"+.+.#", "#", false},
	} {
		if got := Covers(tc.grant, tc.p); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.grant, tc.p, got, tc.want)
		}
	}
}

// naiveCovers is the oracle: grant covers p when every topic p matches is
// matched by grant, among all topics of up to max(len(p), len(grant))+1
// segments that start with a domain and go on with the segments both
// patterns name plus one neither does. A counterexample, if any, is that
// short: a wildcard matches any segment alike, and "#" any longer tail
// alike, so a longer counterexample cut to that length is still one.
func naiveCovers(grant, p string) bool {
	alphabet := map[string]bool{"zz": true}
	for _, s := range strings.Split(grant+"."+p, ".") {
		if s != "+" && s != "#" {
			alphabet[s] = true
		}
	}
	var segs []string
	for s := range alphabet {
		segs = append(segs, s)
	}
	maxLen := max(strings.Count(grant, "."), strings.Count(p, ".")) + 2
	var walk func(prefix []string) bool
	walk = func(prefix []string) bool {
		if len(prefix) > 0 {
			name := strings.Join(prefix, ".")
			if naiveMatch(p, name) && !naiveMatch(grant, name) {
				return false
			}
		}
		if len(prefix) == maxLen {
			return true
		}
		next := segs
		if len(prefix) == 0 {
			next = naiveDomains
		}
		for _, s := range next {
			if !walk(append(prefix, s)) {
				return false
			}
		}
		return true
	}
	return walk(nil)
}

// FuzzCovers checks Covers against the enumeration oracle on small valid
// patterns.
func FuzzCovers(f *testing.F) {
	for _, s := range [][2]string{
		{"events.#", "events.a.+"}, {"events.+", "events.#"}, {"#", "a"}, {"a.+.b", "a.+.+"},
		{"a.#", "a"}, {"+.+", "a.#"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, grant, p string) {
		// Keep the enumeration small: at most 4 segments each.
		if strings.Count(grant, ".") > 3 || strings.Count(p, ".") > 3 ||
			!naiveValidPattern(grant) || !naiveValidPattern(p) {
			return
		}
		if got, want := Covers(grant, p), naiveCovers(grant, p); got != want {
			t.Fatalf("Covers(%q, %q) = %v, oracle %v", grant, p, got, want)
		}
	})
}
