package wire

// MaxInterned bounds the strings an Interner keeps; when it is full it
// starts over.
const MaxInterned = 1024

// Interner returns strings for topics read from frames without allocating
// for a topic it has seen recently, so that routing a repeated topic costs
// no allocation. The zero value is ready to use. It is not safe for
// concurrent use: each connection's reader has its own.
type Interner struct {
	m map[string]string
}

// String returns b as a string, shared with earlier calls for the same
// bytes.
func (in *Interner) String(b []byte) string {
	if t, ok := in.m[string(b)]; ok { // the lookup does not allocate
		return t
	}
	if in.m == nil {
		in.m = make(map[string]string)
	}
	t := string(b)
	if len(in.m) >= MaxInterned {
		clear(in.m)
	}
	in.m[t] = t
	return t
}
