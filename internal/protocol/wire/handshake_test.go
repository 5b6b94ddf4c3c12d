package wire

import (
	"errors"
	"strings"
	"testing"
)

func TestNegotiate(t *testing.T) {
	tests := []struct {
		client, server []Version
		want           Version
		err            string
	}{
		{[]Version{{1, 0}}, []Version{{1, 0}}, Version{1, 0}, ""},
		// An older minor client talks to a newer server at the client's minor.
		{[]Version{{1, 0}}, []Version{{1, 4}}, Version{1, 0}, ""},
		{[]Version{{1, 5}}, []Version{{1, 2}}, Version{1, 2}, ""},
		// The highest common major wins.
		{[]Version{{1, 9}, {2, 1}}, []Version{{1, 3}, {2, 0}, {3, 0}}, Version{2, 0}, ""},
		{[]Version{{2, 1}, {1, 9}}, []Version{{1, 3}, {2, 4}}, Version{2, 1}, ""},
		// A different major is refused with both sides named.
		{[]Version{{2, 0}}, []Version{{1, 0}}, Version{}, "the client speaks 2.0, this server speaks 1.0: upgrade the older side"},
		{nil, []Version{{1, 0}}, Version{}, "the client speaks nothing"},
	}
	for _, tt := range tests {
		got, err := Negotiate(tt.client, tt.server)
		if tt.err != "" {
			if !errors.Is(err, ErrNoCommonVersion) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Negotiate(%v, %v) = %v, %v; want error containing %q", tt.client, tt.server, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Negotiate(%v, %v) = %v, %v; want %v", tt.client, tt.server, got, err, tt.want)
		}
	}
}

func TestMagic(t *testing.T) {
	if err := CheckMagic(Magic[:]); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"GET / HT", "DEYEBUS\r", "", "DEYE"} {
		if err := CheckMagic([]byte(bad)); !errors.Is(err, ErrBadMagic) {
			t.Errorf("CheckMagic(%q) = %v", bad, err)
		}
	}
}

// A newer minor version may append fields; an older peer ignores them.
func TestHandshakeIgnoresAppendedFields(t *testing.T) {
	h := AppendHello(nil, &Hello{Versions: []Version{{1, 1}}, ClientName: []byte("cli")})
	got, err := ParseHello(0, append(h[HeaderSize:], 1, 2, 3))
	if err != nil || string(got.ClientName) != "cli" || got.Versions[0] != (Version{1, 1}) {
		t.Errorf("ParseHello with appended bytes = %+v, %v", got, err)
	}
	w := AppendWelcome(nil, &Welcome{Version: Version{1, 1}, MaxPayload: 7})
	gw, err := ParseWelcome(0, append(w[HeaderSize:], 9, 9))
	if err != nil || gw.MaxPayload != 7 {
		t.Errorf("ParseWelcome with appended bytes = %+v, %v", gw, err)
	}
	if _, err := ParseHello(0, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); !errors.Is(err, ErrMalformed) {
		t.Errorf("hello without versions: %v", err)
	}
	if _, err := ParseHello(0, []byte{3, 0, 1}); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated hello: %v", err)
	}
}

// The auth method and credential survive the round trip, for every method
// and for one this build does not know (the server refuses it, not the
// parser).
func TestHelloAuthRoundTrip(t *testing.T) {
	tests := []struct {
		method uint8
		cred   string
	}{
		{AuthPeer, ""},
		{AuthToken, "s3cret-0123456789abcdef"},
		{AuthCertificate, ""},
		{9, "x"},
	}
	for _, tt := range tests {
		b := AppendHello(nil, &Hello{Versions: []Version{Current}, AuthMethod: tt.method, Credential: []byte(tt.cred), ClientName: []byte("c")})
		h, err := ParseHello(0, b[HeaderSize:])
		if err != nil || h.AuthMethod != tt.method || string(h.Credential) != tt.cred || string(h.ClientName) != "c" {
			t.Errorf("method %d: got %+v, %v", tt.method, h, err)
		}
	}
	if AuthPeer != 0 || AuthToken != 1 || AuthCertificate != 2 {
		t.Error("auth method values are part of the protocol and must not change")
	}
}
