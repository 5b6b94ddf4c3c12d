package agentapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A status survives the wire both ways, zero times staying zero.
func TestStatusRoundTrip(t *testing.T) {
	since := time.Date(2026, 12, 4, 10, 0, 0, 0, time.Local)
	for _, st := range []CollectorStatus{
		{},
		{ID: "procmond", Kind: "procmond", State: StateRunning, Health: HealthHealthy, PID: 42, Restarts: 2, Since: since,
			LastHeartbeat: since.Add(time.Second), LastExit: "exit status 1", Reason: "why", Published: 7, Dropped: 1, Detail: map[string]string{"a": "b"}},
	} {
		got := StatusFromProto(st.ToProto())
		a, _ := json.Marshal(st)
		b, _ := json.Marshal(got)
		if string(a) != string(b) {
			t.Errorf("round trip:\n%s\n%s", a, b)
		}
	}
}

func TestFormatAlert(t *testing.T) {
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.Local)
	line := FormatAlert(&eventbusv1.Alert{Timestamp: timestamppb.New(at), Severity: eventbusv1.AlertSeverity_ALERT_SEVERITY_HIGH, RuleId: "r1",
		Title: "bad \xff", Process: &eventbusv1.ProcessRecord{Pid: 7, ExecutablePath: "/bin/x"}})
	want := `2026-12-04 10:00:00 ALERT HIGH     r1 pid=7 exe="/bin/x" user=-: bad ` + "\uFFFD"
	if line != want || !strings.Contains(line, "HIGH") {
		t.Errorf("FormatAlert = %q, want %q", line, want)
	}
}
