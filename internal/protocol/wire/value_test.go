package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// appender is a value that encodes as n copies of c.
type appender struct {
	n int
	c byte
}

func (a *appender) AppendBinary(b []byte) ([]byte, error) {
	for range a.n {
		b = append(b, a.c)
	}
	return b, nil
}

type failing struct{}

var errFailing = errors.New("broken value")

func (failing) AppendBinary(b []byte) ([]byte, error) { return b, errFailing }

func TestEncodeValue(t *testing.T) {
	tests := []struct {
		name    string
		value   any
		want    []byte
		wantErr error
		text    string
	}{
		{"appender", &appender{3, 'x'}, []byte("xxx"), nil, ""},
		{"empty", &appender{0, 'x'}, []byte{}, nil, ""},
		{"not an appender", "a string", nil, ErrNotEncodable, "wire: the value cannot be encoded (it does not implement encoding.BinaryAppender): string"},
		{"nil", nil, nil, ErrNotEncodable, "wire: the value cannot be encoded (it does not implement encoding.BinaryAppender): <nil>"},
		{"encoder fails", failing{}, nil, errFailing, "wire: encode a wire.failing: broken value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := EncodeValue(tt.value)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || err.Error() != tt.text {
					t.Fatalf("EncodeValue(%v) = %v, want %q (errors.Is %v)", tt.value, err, tt.text, tt.wantErr)
				}
				if v != nil {
					t.Error("a ValueBuf came with the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(v.Bytes(), tt.want) {
				t.Errorf("Bytes() = %q, want %q", v.Bytes(), tt.want)
			}
			v.Release()
		})
	}
}

func TestEncodeValueDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers at random under the race detector")
	}
	val := &appender{200, 'v'}
	n := testing.AllocsPerRun(100, func() {
		v, err := EncodeValue(val)
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Bytes()) != 200 {
			t.Fatalf("%d bytes encoded, want 200", len(v.Bytes()))
		}
		v.Release()
	})
	if n != 0 {
		t.Errorf("EncodeValue and Release: %v allocs per call, want 0", n)
	}
}

// TestEncodedLargeBufferIsNotPooled: a buffer that grew past
// MaxPooledValue goes to the garbage collector, not back to the pool;
// others go back.
func TestEncodedLargeBufferIsNotPooled(t *testing.T) {
	var put []int // capacities of the buffers returned to the pool
	orig := putValueBuf
	putValueBuf = func(v *ValueBuf) { put = append(put, cap(v.b)) }
	t.Cleanup(func() { putValueBuf = orig })
	tests := []struct {
		size   int
		pooled bool
	}{
		{16, true},
		{MaxPooledValue / 2, true},
		{MaxPooledValue + 1, false},
		{4 * MaxPooledValue, false},
	}
	for _, tt := range tests {
		put = put[:0]
		v, err := EncodeValue(&appender{tt.size, 'L'})
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Bytes()) != tt.size {
			t.Fatalf("%d bytes encoded, want %d", len(v.Bytes()), tt.size)
		}
		v.Release()
		if got := len(put) == 1; got != tt.pooled {
			t.Errorf("%d-byte value: returned to the pool %v (capacities put back: %v), want %v", tt.size, got, put, tt.pooled)
		}
		for _, c := range put {
			if c > MaxPooledValue {
				t.Errorf("a buffer of %d bytes went back to the pool; the cap is %d", c, MaxPooledValue)
			}
		}
	}
	if !strings.Contains(ErrNotEncodable.Error(), "BinaryAppender") {
		t.Error("ErrNotEncodable does not say what the value lacks")
	}
}
