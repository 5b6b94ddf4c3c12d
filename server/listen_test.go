package server

import (
	"errors"
	"testing"
)

// TestListenLoopback: plaintext TCP only on a loopback address.
func TestListenLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want error
	}{
		{"127.0.0.1:0", nil},
		{"localhost:0", nil},
		{":0", ErrNotLoopback},
		{"0.0.0.0:0", ErrNotLoopback},
	} {
		l, err := ListenLoopback(tc.addr)
		if !errors.Is(err, tc.want) {
			t.Errorf("ListenLoopback(%q) = %v, want %v", tc.addr, err, tc.want)
		}
		if l != nil {
			l.Close()
		}
	}
}
