package envelope

import (
	"fmt"
	"slices"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
)

// Negotiate answers a peer's version offer (made at REGISTER): the
// version both sides use is the current major with the lower of the two
// minors, since a minor only adds. If the peer offers no version of the
// current major, negotiation fails, with a warning that names both sides'
// versions. A request with no versions at all is taken as 1.0 (a peer
// from before negotiation). features are the server's capabilities to
// report.
func Negotiate(req *eventbusv1.VersionNegotiationRequest, features []string) *eventbusv1.VersionNegotiationResponse {
	offered := slices.Clone(req.GetSupportedVersions())
	if p := req.GetPreferredVersion(); p != nil {
		offered = append(offered, p)
	}
	if len(offered) == 0 {
		offered = append(offered, &eventbusv1.MessageVersion{Major: VersionMajor})
	}
	resp := &eventbusv1.VersionNegotiationResponse{ServerCapabilities: features}
	best, found := uint32(0), false
	var majors []uint32
	for _, v := range offered {
		if v.GetMajor() == VersionMajor {
			best, found = max(best, v.GetMinor()), true
		} else if !slices.Contains(majors, v.GetMajor()) {
			majors = append(majors, v.GetMajor())
		}
	}
	if !found {
		resp.CompatibilityWarnings = append(resp.CompatibilityWarnings, fmt.Sprintf(
			"the peer speaks schema major version(s) %v; this side speaks only %d (up to %s): upgrade or downgrade one of them", majors, VersionMajor, Version))
		return resp
	}
	minor := min(best, VersionMinor)
	if best > VersionMinor {
		resp.CompatibilityWarnings = append(resp.CompatibilityWarnings, fmt.Sprintf(
			"the peer speaks %d.%d, this side %s: fields added after %d.%d are not understood here", VersionMajor, best, Version, VersionMajor, VersionMinor))
	}
	resp.NegotiatedVersion = &eventbusv1.MessageVersion{Major: VersionMajor, Minor: minor, ProtocolVersion: fmt.Sprintf("%d.%d.0", VersionMajor, minor)}
	resp.NegotiationSuccess = true
	return resp
}
