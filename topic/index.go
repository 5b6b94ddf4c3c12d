package topic

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// DefaultCacheSize is the number of match results an [Index] caches when
// [IndexOptions.CacheSize] is zero.
const DefaultCacheSize = 1024

// ErrDuplicate is returned by [Index.Insert] when the owner already holds
// an entry under the same pattern.
var ErrDuplicate = errors.New("topic: duplicate entry")

// IndexOptions configures an [Index]. The zero value is ready to use.
type IndexOptions struct {
	// Policy validates patterns and topics. Nil means the default policy.
	// The index keeps its own copy.
	Policy *Policy
	// CacheSize bounds the number of topics whose match results are cached.
	// Zero means [DefaultCacheSize]; a negative value disables the cache.
	// When the cache is full, a quarter of it is evicted at random.
	CacheSize int
}

// Index maps subscription patterns to values and finds the values whose
// patterns match a topic. It is safe for concurrent use: matches proceed in
// parallel and a change excludes them only while it edits the trie.
//
// The values are compared with == to remove them, so V is usually a
// pointer.
type Index[V comparable] struct {
	policy   Policy
	cacheMax int

	gen atomic.Uint64 // bumped after every change; read without the lock

	mu     sync.RWMutex
	root   node[V]
	owners map[uint64]*owner
	size   int
	// ownersPeak is the most entries owners held since it was last
	// rebuilt (see shrinkMin).
	ownersPeak int
	cache      map[string][]V
}

// owner counts one owner's entries; entries of an owner with more than one
// are deduplicated during a match.
type owner struct {
	id uint64
	n  int
}

type entry[V comparable] struct {
	value   V
	owner   *owner
	spec    uint64
	pattern string
}

type node[V comparable] struct {
	parent *node[V]
	key    string // the literal segment leading here, "+" for a plus child
	// A node's literal children: one while there is a single child (most
	// nodes, and a map costs far more memory), lits from the second on.
	one      *node[V]
	lits     map[string]*node[V]
	litsPeak int // most entries lits held since it was made: Go maps never shrink
	plus     *node[V]
	here     []*entry[V] // patterns that end at this node
	hash     []*entry[V] // patterns that continue with a final '#'
}

func (n *node[V]) empty() bool {
	return n.one == nil && len(n.lits) == 0 && n.plus == nil && len(n.here) == 0 && len(n.hash) == 0
}

// child returns the literal child for seg, or nil.
func (n *node[V]) child(seg string) *node[V] {
	if n.one != nil {
		if n.one.key == seg {
			return n.one
		}
		return nil
	}
	return n.lits[seg]
}

// addChild adds a literal child that does not exist yet.
func (n *node[V]) addChild(c *node[V]) {
	switch {
	case n.one == nil && n.lits == nil:
		n.one = c
	case n.one != nil:
		n.lits = map[string]*node[V]{n.one.key: n.one, c.key: c}
		n.one = nil
	default:
		n.lits[c.key] = c
		n.litsPeak = max(n.litsPeak, len(n.lits))
	}
}

// removeChild removes the literal child c.
func (n *node[V]) removeChild(c *node[V]) {
	if n.one == c {
		n.one = nil
		return
	}
	delete(n.lits, c.key)
	switch {
	case len(n.lits) == 1: // back to the compact form
		for _, last := range n.lits {
			n.one = last
		}
		n.lits, n.litsPeak = nil, 0
	case n.litsPeak >= shrinkMin && len(n.lits) <= n.litsPeak/4:
		n.lits = resized(n.lits) // sized for what is left, so the memory of the emptied part is freed
		n.litsPeak = len(n.lits)
	}
}

// shrinkMin is the size from which a map that has lost three quarters of
// its entries is rebuilt: Go maps keep their memory when entries go.
const shrinkMin = 256

// resized returns a copy of m sized for its entries. (maps.Clone copies
// the table as it is, emptied part and all.)
func resized[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// NewIndex returns an empty index. It returns an error only when
// opts.Policy is unusable (see [Policy.Check]).
func NewIndex[V comparable](opts IndexOptions) (*Index[V], error) {
	x := &Index[V]{cacheMax: opts.CacheSize, owners: make(map[uint64]*owner)}
	if opts.Policy != nil {
		if err := opts.Policy.Check(); err != nil {
			return nil, err
		}
		x.policy = *opts.Policy
		x.policy.Domains = append([]string(nil), opts.Policy.Domains...)
	}
	if x.cacheMax == 0 {
		x.cacheMax = DefaultCacheSize
	}
	if x.cacheMax > 0 {
		x.cache = make(map[string][]V)
	}
	return x, nil
}

// Policy returns the policy the index validates with.
func (x *Index[V]) Policy() *Policy { return &x.policy }

// Generation returns a number that changes after every successful Insert
// and Remove. A caller that caches results of its own can compare it,
// without locking, to learn that those results may be stale.
func (x *Index[V]) Generation() uint64 { return x.gen.Load() }

// Len returns the number of entries.
func (x *Index[V]) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.size
}

// Insert adds value under pattern for the given owner. Several entries of
// one owner that match the same topic yield only the most specific one in
// [Index.Match]. An owner may hold each pattern once. It returns an error
// wrapping [ErrInvalidPattern] for a bad pattern and [ErrDuplicate] if the
// owner already holds pattern.
func (x *Index[V]) Insert(pattern string, ownerID uint64, value V) error {
	if err := x.policy.ValidatePattern(pattern); err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	n, hash := x.walk(pattern, true)
	list := &n.here
	if hash {
		list = &n.hash
	}
	for _, e := range *list {
		if e.owner.id == ownerID {
			return fmt.Errorf("%w: owner %d already subscribed to %q", ErrDuplicate, ownerID, pattern)
		}
	}
	o := x.owners[ownerID]
	if o == nil {
		o = &owner{id: ownerID}
		x.owners[ownerID] = o
		x.ownersPeak = max(x.ownersPeak, len(x.owners))
	}
	o.n++
	*list = append(*list, &entry[V]{value: value, owner: o, spec: Specificity(pattern), pattern: pattern})
	x.size++
	x.changed(pattern)
	return nil
}

// Remove deletes the entry that Insert added with the same arguments and
// reports whether it existed. Emptied trie nodes are freed.
func (x *Index[V]) Remove(pattern string, ownerID uint64, value V) bool {
	if x.policy.ValidatePattern(pattern) != nil {
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	n, hash := x.walk(pattern, false)
	if n == nil {
		return false
	}
	list := &n.here
	if hash {
		list = &n.hash
	}
	i := -1
	for j, e := range *list {
		if e.owner.id == ownerID && e.value == value {
			i = j
			break
		}
	}
	if i < 0 {
		return false
	}
	e := (*list)[i]
	last := len(*list) - 1
	(*list)[i] = (*list)[last]
	(*list)[last] = nil
	*list = (*list)[:last]
	if len(*list) == 0 {
		*list = nil
	}
	if e.owner.n--; e.owner.n == 0 {
		delete(x.owners, ownerID)
		if x.ownersPeak >= shrinkMin && len(x.owners) <= x.ownersPeak/4 {
			x.owners = resized(x.owners)
			x.ownersPeak = len(x.owners)
		}
	}
	x.size--
	x.prune(n)
	x.changed(pattern)
	return true
}

// walk finds (or, with create, builds) the node for pattern. For a pattern
// ending in '#', it returns the node before the '#' and hash = true.
// The write lock must be held.
func (x *Index[V]) walk(pattern string, create bool) (n *node[V], hash bool) {
	n = &x.root
	for i := 0; i <= len(pattern); {
		seg, next := cut(pattern, i)
		i = next
		if seg == "#" {
			return n, true
		}
		var child *node[V]
		if seg == "+" {
			child = n.plus
		} else {
			child = n.child(seg)
		}
		if child == nil {
			if !create {
				return nil, false
			}
			child = &node[V]{parent: n, key: seg}
			if seg == "+" {
				n.plus = child
			} else {
				n.addChild(child)
			}
		}
		n = child
	}
	return n, false
}

// prune removes n and its ancestors while they are empty. The write lock
// must be held.
func (x *Index[V]) prune(n *node[V]) {
	for n.parent != nil && n.empty() {
		p := n.parent
		if n.key == "+" && p.plus == n {
			p.plus = nil
		} else {
			p.removeChild(n)
		}
		n = p
	}
}

// changed drops the cached results that pattern affects and bumps the
// generation. The write lock must be held.
func (x *Index[V]) changed(pattern string) {
	for name := range x.cache {
		if matchValid(pattern, name) {
			delete(x.cache, name)
		}
	}
	x.gen.Add(1)
}

// Match returns the values whose patterns match the topic name, at most one
// per owner (the most specific pattern wins; see [Specificity]). The
// returned slice is shared with the cache and with other callers: it must
// not be modified. A cache hit costs one map lookup under a read lock and
// does not allocate. It returns an error wrapping [ErrInvalidTopic] for a
// bad name.
func (x *Index[V]) Match(name string) ([]V, error) {
	if x.cache != nil {
		x.mu.RLock()
		r, ok := x.cache[name]
		x.mu.RUnlock()
		if ok {
			return r, nil
		}
	}
	if err := x.policy.Validate(name); err != nil {
		return nil, err
	}
	if x.cache == nil {
		x.mu.RLock()
		defer x.mu.RUnlock()
		return x.matchLocked(nil, name), nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if r, ok := x.cache[name]; ok {
		return r, nil
	}
	r := x.matchLocked(nil, name)
	if len(x.cache) >= x.cacheMax {
		drop := len(x.cache) - x.cacheMax*3/4
		for k := range x.cache { // map order is random enough for eviction
			if drop--; drop < 0 {
				break
			}
			delete(x.cache, k)
		}
	}
	x.cache[name] = r
	return r, nil
}

// MatchAppend appends to dst the values whose patterns match name, at most
// one per owner, bypassing the cache, and returns the extended slice. An
// invalid name matches nothing. It does not allocate when dst has room.
func (x *Index[V]) MatchAppend(dst []V, name string) []V {
	if x.policy.Validate(name) != nil {
		return dst
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.matchLocked(dst, name)
}

// multi records a result whose owner has several entries, for dedup.
type multi struct {
	at    int // index in the result slice
	owner *owner
	spec  uint64
	lost  bool // a more specific pattern of the same owner matched too
}

// matchLocked walks the trie for a valid name. A lock must be held.
func (x *Index[V]) matchLocked(dst []V, name string) []V {
	var segs [SegmentLimit]string
	nseg := 0
	for i := 0; i <= len(name); nseg++ {
		segs[nseg], i = cut(name, i)
	}
	type frame struct {
		n *node[V]
		d int // segments consumed
	}
	var stack [SegmentLimit + 2]frame
	sp := 0
	stack[sp] = frame{&x.root, 0}
	sp++
	var dupBuf [8]multi
	dups := dupBuf[:0]
	add := func(list []*entry[V]) {
		for _, e := range list {
			if e.owner.n > 1 {
				dups = append(dups, multi{at: len(dst), owner: e.owner, spec: e.spec})
			}
			dst = append(dst, e.value)
		}
	}
	for sp > 0 {
		sp--
		f := stack[sp]
		add(f.n.hash) // '#' also matches zero remaining segments
		if f.d == nseg {
			add(f.n.here)
			continue
		}
		if c := f.n.child(segs[f.d]); c != nil {
			stack[sp] = frame{c, f.d + 1}
			sp++
		}
		if c := f.n.plus; c != nil {
			stack[sp] = frame{c, f.d + 1}
			sp++
		}
	}
	if len(dups) < 2 {
		return dst
	}
	// An owner with several matching patterns keeps only the most specific.
	lost := 0
	for i := range dups {
		for j := i + 1; j < len(dups); j++ {
			a, b := &dups[i], &dups[j]
			if a.lost || b.lost || a.owner != b.owner {
				continue
			}
			if a.spec < b.spec {
				a, b = b, a
			}
			b.lost = true
			lost++
		}
	}
	if lost == 0 {
		return dst
	}
	out := dups[0].at // everything before the first dup stays in place
	k := 0            // dups are in ascending order of at
	for i := out; i < len(dst); i++ {
		if k < len(dups) && dups[k].at == i {
			k++
			if dups[k-1].lost {
				continue
			}
		}
		dst[out] = dst[i]
		out++
	}
	clear(dst[out:])
	return dst[:out]
}
