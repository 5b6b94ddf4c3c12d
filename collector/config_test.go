package collector

import (
	"errors"
	"slices"
	"testing"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
	"google.golang.org/protobuf/types/known/structpb"
)

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConfigUpdate(t *testing.T) {
	validate := func(s *structpb.Struct) []*eventbusv1.FieldViolation {
		var vs []*eventbusv1.FieldViolation
		if v, ok := s.GetFields()["interval_ms"]; ok && v.GetNumberValue() < 100 {
			vs = append(vs, &eventbusv1.FieldViolation{Field: "interval_ms", Description: "at least 100"})
		}
		for k := range s.GetFields() {
			if k != "interval_ms" && k != "hash" && k != "socket" {
				vs = append(vs, &eventbusv1.FieldViolation{Field: k, Description: "unknown key"})
			}
		}
		return vs
	}
	c := NewConfig(mustStruct(t, map[string]any{"interval_ms": 2000, "hash": true}), ConfigOptions{Validate: validate, RestartKeys: []string{"socket"}})
	type step struct {
		name        string
		req         *eventbusv1.ConfigUpdateRequest
		err         error
		applied     bool
		version     string
		changed     []string
		restart     bool
		interval    float64 // in force afterwards
		violations  []string
		hasInterval bool
	}
	steps := []step{
		{name: "show", req: &eventbusv1.ConfigUpdateRequest{ValidateOnly: true}, version: "1", interval: 2000, hasInterval: true},
		{name: "validate a change", req: &eventbusv1.ConfigUpdateRequest{ValidateOnly: true, Config: mustStruct(t, map[string]any{"interval_ms": 500})},
			version: "1", changed: []string{"interval_ms"}, interval: 2000, hasInterval: true},
		{name: "invalid", req: &eventbusv1.ConfigUpdateRequest{Config: mustStruct(t, map[string]any{"interval_ms": 5, "colour": "red"})},
			err: rpc.ErrInvalidArgument, violations: []string{"update_config.config.colour", "update_config.config.interval_ms"}, interval: 2000, hasInterval: true},
		{name: "apply", req: &eventbusv1.ConfigUpdateRequest{Config: mustStruct(t, map[string]any{"interval_ms": 500})},
			applied: true, version: "2", changed: []string{"interval_ms"}, interval: 500, hasInterval: true},
		{name: "no change", req: &eventbusv1.ConfigUpdateRequest{Config: mustStruct(t, map[string]any{"interval_ms": 500})},
			version: "2", interval: 500, hasInterval: true},
		{name: "stale expected version", req: &eventbusv1.ConfigUpdateRequest{ExpectedVersion: "1", Config: mustStruct(t, map[string]any{"interval_ms": 700})},
			err: rpc.ErrConflict, interval: 500, hasInterval: true},
		{name: "restart key", req: &eventbusv1.ConfigUpdateRequest{ExpectedVersion: "2", Config: mustStruct(t, map[string]any{"socket": "/run/x"})},
			applied: true, version: "3", changed: []string{"socket"}, restart: true, interval: 500, hasInterval: true},
		{name: "rollback", req: &eventbusv1.ConfigUpdateRequest{Rollback: true},
			applied: true, version: "4", changed: []string{"socket"}, restart: true, interval: 500, hasInterval: true},
		{name: "second rollback", req: &eventbusv1.ConfigUpdateRequest{Rollback: true}, err: rpc.ErrConflict, interval: 500, hasInterval: true},
		{name: "rollback with config", req: &eventbusv1.ConfigUpdateRequest{Rollback: true, Config: mustStruct(t, map[string]any{"hash": false})},
			err: rpc.ErrInvalidArgument, violations: []string{"update_config.config"}, interval: 500, hasInterval: true},
		{name: "null removes", req: &eventbusv1.ConfigUpdateRequest{Config: &structpb.Struct{Fields: map[string]*structpb.Value{"interval_ms": structpb.NewNullValue()}}},
			applied: true, version: "5", changed: []string{"interval_ms"}},
	}
	for _, s := range steps {
		res, err := c.Update(s.req)
		if !errors.Is(err, s.err) || (s.err == nil) != (err == nil) {
			t.Fatalf("%s: err %v, want %v", s.name, err, s.err)
		}
		if err != nil {
			var e *rpc.Error
			errors.As(err, &e)
			var got []string
			for _, v := range e.Detail.GetFieldViolations().GetViolations() {
				got = append(got, v.GetField())
			}
			slices.Sort(got)
			if !slices.Equal(got, s.violations) {
				t.Errorf("%s: violations %v, want %v", s.name, got, s.violations)
			}
		} else if res.GetApplied() != s.applied || res.GetConfigVersion() != s.version || !slices.Equal(res.GetChangedKeys(), s.changed) || res.GetRestartRequired() != s.restart {
			t.Errorf("%s: result %v", s.name, res)
		}
		cur, _ := c.Current()
		v, ok := cur.GetFields()["interval_ms"]
		if ok != s.hasInterval || v.GetNumberValue() != s.interval {
			t.Errorf("%s: interval in force %v (%v), want %v", s.name, v, ok, s.interval)
		}
		if err == nil && !slices.Equal(mapKeys(res.GetCurrentConfig()), mapKeys(cur)) {
			t.Errorf("%s: result's current config %v, in force %v", s.name, res.GetCurrentConfig(), cur)
		}
	}
}

func mapKeys(s *structpb.Struct) []string {
	var ks []string
	for k := range s.GetFields() {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
