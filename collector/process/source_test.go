package process

import (
	"slices"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/collector/process/sensor"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
)

func TestTicksOf(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want uint64
	}{
		{0, 0}, {9999999, 0}, {10 * time.Millisecond, 1}, {1234567890123, 123456},
	} {
		if got := ticksOf(tc.d); got != tc.want {
			t.Errorf("ticksOf(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestParseSource(t *testing.T) {
	for in, want := range map[string]Source{"": SourceAuto, "auto": SourceAuto, "ebpf": SourceEBPF, "poll": SourcePoll, "connector": SourceConnector, "netlink": ""} {
		got, err := ParseSource(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("ParseSource(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// The scan leaves out the created and terminated events the sensor
// published, keeps the others, and forgets what it no longer needs.
func TestResync(t *testing.T) {
	const (
		created    = eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED
		updated    = eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_UPDATED
		terminated = eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED
	)
	published := Key{PID: 1, Start: 10} // exec published by the sensor, now scanned
	endedLive := Key{PID: 2, Start: 20} // exit published, still in /proc (a zombie)
	endedGone := Key{PID: 3, Start: 30} // exit published, gone
	fresh := Key{PID: 4, Start: 40}     // started before the sensor saw it: only the scan has it
	missed := Key{PID: 5, Start: 50}    // the scan's own terminated
	stale := Key{PID: 6, Start: 60}     // published long ago, never scanned
	recent := Key{PID: 7, Start: 70}    // published since the previous scan, not scanned yet
	r := func(k Key) *eventbusv1.ProcessRecord { return &eventbusv1.ProcessRecord{Pid: k.PID} }
	c := &Collector{sensor: &sensor.Sensor{}, scans: 5,
		sensorRecs:  map[Key]sensorRec{published: {rec: r(published), gen: 4}, stale: {rec: r(stale), gen: 2}, recent: {rec: r(recent), gen: 4}},
		sensorByPID: map[uint32]*eventbusv1.ProcessRecord{},
		exited:      map[Key]struct{}{endedLive: {}, endedGone: {}}}
	for k, s := range c.sensorRecs {
		c.sensorByPID[k.PID] = s.rec
	}
	changes := []Change{
		{Subtype: created, Key: published}, {Subtype: updated, Key: published}, {Subtype: created, Key: endedLive},
		{Subtype: terminated, Key: endedGone}, {Subtype: created, Key: fresh}, {Subtype: terminated, Key: missed},
	}
	for i := range changes {
		changes[i].Record = r(changes[i].Key)
	}
	cur := map[Key]*eventbusv1.ProcessRecord{published: r(published), endedLive: r(endedLive), fresh: r(fresh)}
	got := c.resyncLocked(changes, cur)
	var kept []Key
	for _, ch := range got {
		kept = append(kept, ch.Key)
	}
	if want := []Key{published, fresh, missed}; !slices.Equal(kept, want) {
		t.Errorf("kept %v, want %v (the updated, the new and the scan's own terminated)", kept, want)
	}
	if c.resynced != 3 {
		t.Errorf("resynced %d, want 3", c.resynced)
	}
	if _, ok := c.sensorRecs[recent]; !ok || len(c.sensorRecs) != 1 || c.sensorByPID[recent.PID] == nil || len(c.sensorByPID) != 1 {
		t.Errorf("after the scan the sensor's records are %v (by pid %v), want only the recent one", c.sensorRecs, c.sensorByPID)
	}
	if _, ok := c.exited[endedLive]; !ok || len(c.exited) != 1 {
		t.Errorf("after the scan the exits are %v, want only the zombie's", c.exited)
	}
}
