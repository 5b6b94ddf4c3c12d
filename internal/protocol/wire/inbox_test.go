package wire

import (
	"testing"

	"github.com/daemoneye/daemoneye/topics"
)

func TestInboxOwnership(t *testing.T) {
	const rnd = "0123456789abcdef"
	for _, tc := range []struct {
		identity, name string
	}{
		{"collector:procmond", "collector-procmond-" + rnd},
		{"uid:0", "uid-0-" + rnd},
		{"token:Ops.Team", rnd}, // not a segment: bound to nobody
		{"inproc", rnd},
	} {
		if got := InboxName(tc.identity, rnd); got != tc.name {
			t.Errorf("InboxName(%q) = %q, want %q", tc.identity, got, tc.name)
		}
	}
	for _, tc := range []struct {
		identity, pattern string
		owns              bool
	}{
		{"collector:a", topics.InboxPrefix + "collector-a-" + rnd + ".+", true},
		{"collector:a", topics.InboxPrefix + "collector-a-" + rnd + ".17", true},
		{"collector:a", topics.InboxPrefix + "collector-a-" + rnd + ".#", false},
		{"collector:a", topics.InboxPrefix + "collector-a-" + rnd + ".1.2", false},
		{"collector:a", topics.InboxPrefix + "collector-a-" + rnd + "0.+", false},
		{"collector:a", topics.InboxPrefix + "collector-a-0123456789abcdeg.+", false},
		{"collector:a", topics.InboxPrefix + "collector-a-b-" + rnd + ".+", false}, // collector:a-b's
		{"collector:a-b", topics.InboxPrefix + "collector-a-b-" + rnd + ".+", true},
		{"collector:a", topics.InboxPrefix + rnd + ".+", false},
		{"collector:a", topics.InboxPrefix + "+.+", false},
		{"collector:a", "control.inbox.#", false},
		{"token:Ops.Team", topics.InboxPrefix + rnd + ".+", false},
	} {
		if got := OwnsInbox(tc.identity, tc.pattern); got != tc.owns {
			t.Errorf("OwnsInbox(%q, %q) = %v", tc.identity, tc.pattern, got)
		}
	}
}
