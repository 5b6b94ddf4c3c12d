package topic

import (
	"errors"
	"fmt"
	"strings"
)

// Grammar limits of the default policy.
const (
	// MaxSegments is the default and largest useful number of segments in a
	// topic or pattern.
	MaxSegments = 8
	// MaxLength is the default limit on the length of a topic or pattern,
	// in bytes.
	MaxLength = 256
	// SegmentLimit is the hard upper bound a [Policy] may raise MaxSegments
	// to. The matcher keeps per-segment state in fixed arrays of this size.
	SegmentLimit = 16
	// LengthLimit is the hard upper bound a [Policy] may raise MaxLength to,
	// in bytes.
	LengthLimit = 4096
)

// DefaultDomains are the first segments the default policy accepts:
// "events" for what collectors observe and "control" for commands and RPC.
var DefaultDomains = []string{"events", "control"}

var (
	// ErrInvalidTopic is returned, wrapped in an [*Error], for a topic name
	// that breaks the grammar.
	ErrInvalidTopic = errors.New("topic: invalid topic")
	// ErrInvalidPattern is returned, wrapped in an [*Error], for a
	// subscription pattern that breaks the grammar.
	ErrInvalidPattern = errors.New("topic: invalid pattern")
)

// Error describes why a topic or pattern was refused. It wraps
// [ErrInvalidTopic] or [ErrInvalidPattern], so errors.Is works on it.
type Error struct {
	// Input is the refused topic or pattern.
	Input string
	// Pattern is true when Input was validated as a pattern.
	Pattern bool
	// Segment is the 1-based index of the offending segment, or 0 when the
	// problem concerns the whole input (empty, too long).
	Segment int
	// Reason says which rule was broken and, where possible, what to write
	// instead.
	Reason string
}

// Error implements the error interface.
func (e *Error) Error() string {
	kind := "topic"
	if e.Pattern {
		kind = "pattern"
	}
	return fmt.Sprintf("invalid %s %q: %s", kind, e.Input, e.Reason)
}

// Unwrap returns [ErrInvalidPattern] or [ErrInvalidTopic].
func (e *Error) Unwrap() error {
	if e.Pattern {
		return ErrInvalidPattern
	}
	return ErrInvalidTopic
}

// Policy holds the grammar parameters that an embedder may change. The zero
// value is the default policy. A Policy must not be modified while it is in
// use; reading it from several goroutines is safe.
type Policy struct {
	// Domains lists the accepted first segments. Nil or empty means
	// [DefaultDomains]. Each domain must itself be a valid segment.
	Domains []string
	// MaxSegments is the largest number of segments, 1 to [SegmentLimit].
	// Zero means [MaxSegments] (8).
	MaxSegments int
	// MaxLength is the longest topic or pattern in bytes, 1 to
	// [LengthLimit]. Zero means [MaxLength] (256).
	MaxLength int
}

var defaultPolicy Policy

// Validate reports whether name is a valid topic under the default policy.
// The error wraps [ErrInvalidTopic].
func Validate(name string) error { return defaultPolicy.Validate(name) }

// ValidatePattern reports whether pattern is a valid subscription pattern
// under the default policy. The error wraps [ErrInvalidPattern].
func ValidatePattern(pattern string) error { return defaultPolicy.ValidatePattern(pattern) }

// Match reports whether pattern matches the topic name under the default
// policy. It returns false when either is invalid. It does not allocate.
func Match(pattern, name string) bool { return defaultPolicy.Match(pattern, name) }

// Check reports whether the policy itself is usable: limits in range and
// every domain a valid segment.
func (p *Policy) Check() error {
	if p.MaxSegments < 0 || p.MaxSegments > SegmentLimit {
		return fmt.Errorf("topic: policy MaxSegments %d is out of range: use 1 to %d, or 0 for the default %d", p.MaxSegments, SegmentLimit, MaxSegments)
	}
	if p.MaxLength < 0 || p.MaxLength > LengthLimit {
		return fmt.Errorf("topic: policy MaxLength %d is out of range: use 1 to %d bytes, or 0 for the default %d", p.MaxLength, LengthLimit, MaxLength)
	}
	for _, d := range p.Domains {
		if d == "" || strings.IndexFunc(d, func(r rune) bool { return r > 0x7f || !segmentByte[r] }) >= 0 {
			return fmt.Errorf("topic: policy domain %q is not a valid segment: use only a-z, 0-9, '_' and '-'", d)
		}
	}
	return nil
}

func (p *Policy) maxSegments() int {
	if p.MaxSegments <= 0 || p.MaxSegments > SegmentLimit {
		return MaxSegments
	}
	return p.MaxSegments
}

func (p *Policy) maxLength() int {
	if p.MaxLength <= 0 || p.MaxLength > LengthLimit {
		return MaxLength
	}
	return p.MaxLength
}

func (p *Policy) domains() []string {
	if len(p.Domains) == 0 {
		return DefaultDomains
	}
	return p.Domains
}

func (p *Policy) isDomain(s string) bool {
	for _, d := range p.domains() {
		if d == s {
			return true
		}
	}
	return false
}

// Validate reports whether name is a valid topic under p. The error wraps
// [ErrInvalidTopic]. It allocates only when it returns an error.
func (p *Policy) Validate(name string) error { return p.check(name, false) }

// ValidatePattern reports whether pattern is a valid subscription pattern
// under p. The error wraps [ErrInvalidPattern]. It allocates only when it
// returns an error.
func (p *Policy) ValidatePattern(pattern string) error { return p.check(pattern, true) }

// Match reports whether pattern matches the topic name under p. It returns
// false when either is invalid. It does not allocate.
func (p *Policy) Match(pattern, name string) bool {
	if p.check(name, false) != nil || p.check(pattern, true) != nil {
		return false
	}
	return matchValid(pattern, name)
}

// segmentByte marks the bytes allowed in a literal segment.
var segmentByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['_'], t['-'] = true, true
	return t
}()

// check validates s in one pass. It is on the publish path, so it does not
// allocate unless it fails.
func (p *Policy) check(s string, pattern bool) error {
	if s == "" {
		return &Error{Input: s, Pattern: pattern, Reason: "it is empty: give at least a domain such as \"events\""}
	}
	if limit := p.maxLength(); len(s) > limit {
		return &Error{Input: s, Pattern: pattern, Reason: fmt.Sprintf("it is %d bytes long; the limit is %d", len(s), limit)}
	}
	maxSeg := p.maxSegments()
	seg, start := 0, 0
	wild := false // the current segment holds '+' or '#'
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			switch {
			case segmentByte[c]:
			case pattern && (c == '+' || c == '#'):
				wild = true
			default:
				return p.badByte(s, pattern, seg+1, start, i)
			}
			continue
		}
		seg++
		w := s[start:i]
		if seg > maxSeg {
			return &Error{Input: s, Pattern: pattern, Segment: seg,
				Reason: fmt.Sprintf("it has more than %d segments", maxSeg)}
		}
		switch {
		case w == "":
			return &Error{Input: s, Pattern: pattern, Segment: seg,
				Reason: fmt.Sprintf("segment %d is empty: remove the doubled, leading or trailing '.'", seg)}
		case wild && w != "+" && w != "#":
			return &Error{Input: s, Pattern: pattern, Segment: seg,
				Reason: fmt.Sprintf("segment %d %q mixes a wildcard with other characters: '+' and '#' must stand alone as a whole segment", seg, w)}
		case w == "#" && i != len(s):
			return &Error{Input: s, Pattern: pattern, Segment: seg,
				Reason: fmt.Sprintf("segment %d is '#' but not the last segment: '#' matches all trailing segments, so it may only end a pattern", seg)}
		case seg == 1 && !wild && !p.isDomain(w):
			return &Error{Input: s, Pattern: pattern, Segment: 1,
				Reason: fmt.Sprintf("first segment %q is not a registered domain (%s)", w, strings.Join(p.domains(), ", "))}
		}
		wild = false
		start = i + 1
	}
	return nil
}

func (p *Policy) badByte(s string, pattern bool, seg, start, at int) error {
	end := strings.IndexByte(s[start:], '.')
	if end < 0 {
		end = len(s)
	} else {
		end += start
	}
	w, c := s[start:end], s[at]
	var reason string
	switch {
	case c == '*' && pattern:
		reason = fmt.Sprintf("segment %d %q uses '*': write '+' to match exactly one segment or '#' to match all trailing segments", seg, w)
	case c == '+' || c == '#' || c == '*':
		reason = fmt.Sprintf("segment %d %q holds the wildcard %q: a topic you publish to must be concrete; wildcards belong in subscription patterns", seg, w, c)
	case c >= 'A' && c <= 'Z':
		reason = fmt.Sprintf("segment %d %q contains the upper-case letter %q: topics are lower case", seg, w, c)
	default:
		reason = fmt.Sprintf("segment %d %q contains %q: only a-z, 0-9, '_' and '-' are allowed", seg, w, c)
	}
	return &Error{Input: s, Pattern: pattern, Segment: seg, Reason: reason}
}

// cut returns the segment of s that starts at i and the index where the
// next one starts; past the last segment, next is len(s)+1.
func cut(s string, i int) (seg string, next int) {
	j := strings.IndexByte(s[i:], '.')
	if j < 0 {
		return s[i:], len(s) + 1
	}
	return s[i : i+j], i + j + 1
}

// matchValid matches a valid pattern against a valid topic.
func matchValid(pattern, name string) bool {
	pi, ni := 0, 0
	for {
		ps, pnext := cut(pattern, pi)
		if ps == "#" {
			return true
		}
		if ni > len(name) {
			return false // the topic ended, the pattern wants another segment
		}
		ns, nnext := cut(name, ni)
		if ps != "+" && ps != ns {
			return false
		}
		pi, ni = pnext, nnext
		if pi > len(pattern) {
			return ni > len(name)
		}
	}
}

// Specificity returns a key that orders the patterns matching one topic from
// the least to the most specific: comparing segment by segment from the
// left, a literal beats "+", "+" beats "#", and a pattern that ends beats
// one that continues with "#". Two different valid patterns that match the
// same topic never have the same key. The pattern is assumed valid.
func Specificity(pattern string) uint64 {
	const (
		rankHash  = 1
		rankEnd   = 2 // the pattern ended one segment earlier
		rankPlus  = 2
		rankExact = 3
	)
	var key uint64
	pos := 0
	for i := 0; i <= len(pattern) && pos <= SegmentLimit; pos++ {
		seg, next := cut(pattern, i)
		r := uint64(rankExact)
		switch seg {
		case "#":
			r = rankHash
		case "+":
			r = rankPlus
		}
		key |= r << (2 * (SegmentLimit - pos))
		i = next
		if seg == "#" {
			return key
		}
	}
	if pos <= SegmentLimit {
		key |= rankEnd << (2 * (SegmentLimit - pos))
	}
	return key
}
