package topic

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func newIndex(t testing.TB, opts IndexOptions) *Index[int] {
	t.Helper()
	x, err := NewIndex[int](opts)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func sorted(v []int) []int {
	v = slices.Clone(v)
	slices.Sort(v)
	return v
}

func TestIndexMatch(t *testing.T) {
	subs := []naiveSubscriber{
		{1, "#", 1},
		{2, "events.#", 2},
		{3, "events.process.+", 3},
		{4, "events.process.lifecycle", 4},
		{5, "+.process.lifecycle", 5},
		{6, "control.collector.procmond", 6},
		{7, "events.+", 7},
		{8, "events", 8},
		{9, "events.process.#", 9},
	}
	tests := []struct {
		name string
		want []int
	}{
		{"events", []int{1, 2, 8}},
		{"events.process", []int{1, 2, 7, 9}},
		{"events.process.lifecycle", []int{1, 2, 3, 4, 5, 9}},
		{"events.processx", []int{1, 2, 7}},
		{"control.collector.procmond", []int{1, 6}},
		{"control.process.lifecycle", []int{1, 5}},
		{"control.process.lifecycle.extra", []int{1}},
		{"events.network.conn", []int{1, 2}},
	}
	for _, cache := range []int{0, -1} {
		x := newIndex(t, IndexOptions{CacheSize: cache})
		for _, s := range subs {
			if err := x.Insert(s.pattern, s.owner, s.id); err != nil {
				t.Fatal(err)
			}
		}
		for _, tt := range tests {
			if want := naiveIndexMatch(subs, tt.name); !slices.Equal(want, tt.want) {
				t.Fatalf("test bug for %q: oracle says %v, table says %v", tt.name, want, tt.want)
			}
			for range 2 { // second round is served from the cache
				got, err := x.Match(tt.name)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(sorted(got), tt.want) {
					t.Errorf("cache=%d Match(%q) = %v, want %v", cache, tt.name, sorted(got), tt.want)
				}
			}
			if got := x.MatchAppend(nil, tt.name); !slices.Equal(sorted(got), tt.want) {
				t.Errorf("MatchAppend(%q) = %v, want %v", tt.name, sorted(got), tt.want)
			}
		}
	}
}

// One owner, several matching patterns: only the most specific one counts.
func TestIndexOwnerGetsMostSpecificOnce(t *testing.T) {
	x := newIndex(t, IndexOptions{})
	patterns := []string{"#", "events.#", "events.+.lifecycle", "events.process.#", "events.process.lifecycle"}
	for i, p := range patterns {
		if err := x.Insert(p, 42, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Insert("events.#", 7, 100); err != nil { // another owner
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want []int
	}{
		{"events.process.lifecycle", []int{4, 100}},
		{"events.process.other", []int{3, 100}},
		{"events.network.lifecycle", []int{2, 100}},
		{"events.network", []int{1, 100}},
		{"control.x", []int{0}},
	}
	for _, tt := range tests {
		got, _ := x.Match(tt.name)
		if !slices.Equal(sorted(got), tt.want) {
			t.Errorf("Match(%q) = %v, want %v", tt.name, sorted(got), tt.want)
		}
	}
	// Removing the most specific pattern hands the topic to the next one.
	if !x.Remove("events.process.lifecycle", 42, 4) {
		t.Fatal("Remove returned false")
	}
	if got, _ := x.Match("events.process.lifecycle"); !slices.Equal(sorted(got), []int{3, 100}) {
		t.Errorf("after Remove: Match = %v, want [3 100]", sorted(got))
	}
}

func TestIndexInsertRemove(t *testing.T) {
	x := newIndex(t, IndexOptions{})
	if err := x.Insert("events.*", 1, 1); !errors.Is(err, ErrInvalidPattern) {
		t.Errorf("Insert(bad pattern) = %v, want ErrInvalidPattern", err)
	}
	if err := x.Insert("events.a", 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := x.Insert("events.a", 1, 2); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second Insert = %v, want ErrDuplicate", err)
	}
	if _, err := x.Match("events.Bad"); !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("Match(bad topic) = %v, want ErrInvalidTopic", err)
	}
	g := x.Generation()
	if x.Remove("events.a", 2, 1) || x.Remove("events.b", 1, 1) || x.Remove("events.a.#", 1, 1) {
		t.Error("Remove of an absent entry returned true")
	}
	if x.Generation() != g {
		t.Error("a failed Remove changed the generation")
	}
	if !x.Remove("events.a", 1, 1) {
		t.Error("Remove returned false")
	}
	if x.Generation() == g {
		t.Error("Remove did not change the generation")
	}
	if x.Len() != 0 {
		t.Errorf("Len = %d, want 0", x.Len())
	}
	if !x.root.empty() {
		t.Error("trie nodes were not pruned after the last Remove")
	}
}

// The cache must never serve a result that a change made stale.
func TestIndexCacheInvalidation(t *testing.T) {
	x := newIndex(t, IndexOptions{CacheSize: 4})
	names := []string{"events.a", "events.b", "events.c.d", "control.x", "events.e", "events.f"}
	check := func(step string, subs []naiveSubscriber) {
		t.Helper()
		for _, n := range names {
			got, _ := x.Match(n)
			if want := naiveIndexMatch(subs, n); !slices.Equal(sorted(got), want) {
				t.Errorf("%s: Match(%q) = %v, want %v", step, n, sorted(got), want)
			}
		}
		if len(x.cache) > 4 {
			t.Errorf("%s: cache holds %d entries, limit 4", step, len(x.cache))
		}
	}
	var subs []naiveSubscriber
	check("empty", subs)
	ops := []naiveSubscriber{{1, "events.+", 1}, {2, "#", 2}, {1, "events.a", 3}, {3, "events.c.#", 4}}
	for _, s := range ops {
		if err := x.Insert(s.pattern, s.owner, s.id); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
		check("after insert "+s.pattern, subs)
	}
	for len(subs) > 0 {
		s := subs[0]
		x.Remove(s.pattern, s.owner, s.id)
		subs = subs[1:]
		check("after remove "+s.pattern, subs)
	}
}

// FuzzMatch checks Validate, ValidatePattern and Match against the naive
// oracle.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"events.#", "events"}, {"#", "control.a.b"}, {"events.+", "events.a"},
		{"events.+.#", "events"}, {"events.*", "events.a"}, {"events.a+", "events.a"},
		{"+.process.lifecycle", "events.process.lifecycle"}, {"events..a", "events..a"},
		{"events.process.#", "events.processx"}, {"+", "events"}, {"events.##", "events"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if got, want := Validate(name) == nil, naiveValidTopic(name); got != want {
			t.Fatalf("Validate(%q) ok=%v, oracle %v (err %v)", name, got, want, Validate(name))
		}
		if got, want := ValidatePattern(pattern) == nil, naiveValidPattern(pattern); got != want {
			t.Fatalf("ValidatePattern(%q) ok=%v, oracle %v (err %v)", pattern, got, want, ValidatePattern(pattern))
		}
		if got, want := Match(pattern, name), naiveMatch(pattern, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, oracle %v", pattern, name, got, want)
		}
	})
}

// FuzzIndex builds an index from fuzzed patterns and owners and compares
// every match, cached and uncached, with the naive oracle.
func FuzzIndex(f *testing.F) {
	f.Add("events.#\n#\nevents.+.c\nevents.b.c\n+.b.#", []byte{1, 1, 2, 1, 3}, "events.b.c")
	f.Add("events\nevents.#\n+", []byte{0, 0, 0}, "events")
	f.Add("control.+.x\ncontrol.a.x\ncontrol.#", []byte{9, 9, 9}, "control.a.x")
	f.Fuzz(func(t *testing.T, patterns string, owners []byte, name string) {
		x, _ := NewIndex[int](IndexOptions{CacheSize: 2})
		var subs []naiveSubscriber
		for i, p := range strings.Split(patterns, "\n") {
			if i >= 64 {
				break
			}
			o := uint64(0)
			if i < len(owners) {
				o = uint64(owners[i] % 8)
			}
			err := x.Insert(p, o, i)
			dup := slices.ContainsFunc(subs, func(s naiveSubscriber) bool { return s.owner == o && s.pattern == p })
			if want := naiveValidPattern(p) && !dup; (err == nil) != want {
				t.Fatalf("Insert(%q, owner %d) = %v, oracle ok=%v", p, o, err, want)
			}
			if err == nil {
				subs = append(subs, naiveSubscriber{o, p, i})
			}
		}
		cands := []string{name, "events", "events.b.c", "control.a.x"}
		for _, s := range subs { // topics built from the patterns hit more branches
			cands = append(cands, strings.NewReplacer("+", "q", "#", "r").Replace(s.pattern))
		}
		for round := range 2 {
			for _, n := range cands {
				want := naiveIndexMatch(subs, n)
				got, _ := x.Match(n)
				if !slices.Equal(sorted(got), want) {
					t.Fatalf("round %d: Match(%q) = %v, oracle %v (subs %v)", round, n, sorted(got), want, subs)
				}
				if got := x.MatchAppend(nil, n); !slices.Equal(sorted(got), want) {
					t.Fatalf("MatchAppend(%q) = %v, oracle %v", n, sorted(got), want)
				}
			}
			// Remove every other entry and check again.
			var kept []naiveSubscriber
			for i, s := range subs {
				if i%2 == 0 {
					if !x.Remove(s.pattern, s.owner, s.id) {
						t.Fatalf("Remove(%q) = false", s.pattern)
					}
					continue
				}
				kept = append(kept, s)
			}
			subs = kept
		}
	})
}

// benchIndex builds the workload: 9,000 literal, 900 '+' and 100
// '#' subscriptions, each with its own owner.
func benchIndex(b *testing.B, cache int) *Index[int] {
	x := newIndex(b, IndexOptions{CacheSize: cache})
	id := 0
	add := func(p string) {
		if err := x.Insert(p, uint64(id), id); err != nil {
			b.Fatal(err)
		}
		id++
	}
	for i := range 9000 {
		add(fmt.Sprintf("events.host%d.proc%d.exec", i%100, i))
	}
	for i := range 900 {
		add(fmt.Sprintf("events.host%d.+.exec", i))
	}
	for i := range 100 {
		add(fmt.Sprintf("events.host%d.#", i))
	}
	return x
}

const benchTopic = "events.host42.proc4242.exec" // matches 3: literal, '+', '#'

func BenchmarkMatch(b *testing.B) {
	b.Run("uncached", func(b *testing.B) {
		x := benchIndex(b, -1)
		dst := make([]int, 0, 16)
		b.ReportAllocs()
		for b.Loop() {
			dst = x.MatchAppend(dst[:0], benchTopic)
		}
		if len(dst) != 3 {
			b.Fatalf("matched %d, want 3", len(dst))
		}
	})
	b.Run("cached", func(b *testing.B) {
		x := benchIndex(b, 0)
		var r []int
		b.ReportAllocs()
		for b.Loop() {
			r, _ = x.Match(benchTopic)
		}
		if len(r) != 3 {
			b.Fatalf("matched %d, want 3", len(r))
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		x := benchIndex(b, 0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r, _ := x.Match(benchTopic); len(r) != 3 {
					b.Errorf("matched %d, want 3", len(r))
				}
			}
		})
	})
}

func BenchmarkValidate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if Validate("events.process.lifecycle") != nil {
			b.Fatal("invalid")
		}
	}
}
