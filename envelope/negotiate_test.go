package envelope

import (
	"strings"
	"testing"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
)

func TestNegotiate(t *testing.T) {
	v := func(major, minor uint32) *eventbusv1.MessageVersion {
		return &eventbusv1.MessageVersion{Major: major, Minor: minor}
	}
	cases := []struct {
		name      string
		req       *eventbusv1.VersionNegotiationRequest
		ok        bool
		minor     uint32
		warnMatch string
	}{
		{"older minor", &eventbusv1.VersionNegotiationRequest{SupportedVersions: []*eventbusv1.MessageVersion{v(1, 0)}}, true, 0, ""},
		{"same", &eventbusv1.VersionNegotiationRequest{PreferredVersion: v(1, VersionMinor)}, true, VersionMinor, ""},
		{"newer minor", &eventbusv1.VersionNegotiationRequest{SupportedVersions: []*eventbusv1.MessageVersion{v(1, 0), v(1, VersionMinor+3)}}, true, VersionMinor, "not understood here"},
		{"other major only", &eventbusv1.VersionNegotiationRequest{SupportedVersions: []*eventbusv1.MessageVersion{v(2, 0), v(3, 1)}}, false, 0, "major version(s) [2 3]"},
		{"both majors", &eventbusv1.VersionNegotiationRequest{SupportedVersions: []*eventbusv1.MessageVersion{v(2, 0), v(1, 0)}}, true, 0, ""},
		{"nothing offered", &eventbusv1.VersionNegotiationRequest{}, true, 0, ""},
	}
	for _, tc := range cases {
		r := Negotiate(tc.req, []string{"process.hash"})
		if r.GetNegotiationSuccess() != tc.ok {
			t.Errorf("%s: success %v, want %v (%v)", tc.name, r.GetNegotiationSuccess(), tc.ok, r.GetCompatibilityWarnings())
			continue
		}
		if tc.ok && (r.GetNegotiatedVersion().GetMajor() != VersionMajor || r.GetNegotiatedVersion().GetMinor() != tc.minor) {
			t.Errorf("%s: negotiated %v, want %d.%d", tc.name, r.GetNegotiatedVersion(), VersionMajor, tc.minor)
		}
		if !tc.ok && r.GetNegotiatedVersion() != nil {
			t.Errorf("%s: a failed negotiation names version %v", tc.name, r.GetNegotiatedVersion())
		}
		warn := strings.Join(r.GetCompatibilityWarnings(), "; ")
		if (tc.warnMatch == "") != (warn == "") || !strings.Contains(warn, tc.warnMatch) {
			t.Errorf("%s: warnings %q, want one containing %q", tc.name, warn, tc.warnMatch)
		}
		if len(r.GetServerCapabilities()) != 1 {
			t.Errorf("%s: capabilities %v", tc.name, r.GetServerCapabilities())
		}
	}
}
