package collector

import (
	"slices"
	"strconv"
	"sync"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Config keeps a collector's run-time configuration for UPDATE_CONFIG:
// the values in force, a version that counts applied changes, and the
// configuration before the last change for one step of rollback. It is
// safe for concurrent use.
type Config struct {
	validate    func(*structpb.Struct) []*eventbusv1.FieldViolation
	restartKeys []string

	mu      sync.Mutex
	cur     *structpb.Struct
	prev    *structpb.Struct // nil: nothing to roll back to
	version uint64
}

// ConfigOptions configures a Config.
type ConfigOptions struct {
	// Validate checks a whole configuration (the one in force with an
	// update merged in) and returns what is wrong with it, one violation
	// per key, with the key as the field. Nil accepts everything.
	Validate func(*structpb.Struct) []*eventbusv1.FieldViolation
	// RestartKeys are the keys whose new values take effect only after a
	// restart; a change to one sets ConfigUpdateResult.restart_required.
	RestartKeys []string
}

// NewConfig returns a Config in force at version "1" with initial (which
// it copies; nil is empty). It does not validate initial.
func NewConfig(initial *structpb.Struct, opts ConfigOptions) *Config {
	cur := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	if initial != nil {
		cur = proto.Clone(initial).(*structpb.Struct)
	}
	return &Config{validate: opts.Validate, restartKeys: opts.RestartKeys, cur: cur, version: 1}
}

// Current returns a copy of the configuration in force and its version.
func (c *Config) Current() (*structpb.Struct, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return proto.Clone(c.cur).(*structpb.Struct), strconv.FormatUint(c.version, 10)
}

// Update handles an UPDATE_CONFIG request:
//   - rollback: the configuration before the last applied change comes
//     back (CONFLICT if there is none; config must be empty);
//   - otherwise the keys in req.config replace those in force (a null
//     value removes a key), the result is validated (VALIDATION with one
//     FieldViolation per bad key), and unless validate_only it is applied
//     and the version goes up by one.
//
// With expected_version set, a request made against another version
// fails with CONFLICT. The result carries the configuration in force
// afterwards.
func (c *Config) Update(req *eventbusv1.ConfigUpdateRequest) (*eventbusv1.ConfigUpdateResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	version := strconv.FormatUint(c.version, 10)
	if ev := req.GetExpectedVersion(); ev != "" && ev != version {
		e := rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_CONFLICT, "config_version_stale",
			"the request was made against configuration version %s; version %s is in force: read it and try again", ev, version)
		e.Detail.Detail = &eventbusv1.RpcError_Resource{Resource: &eventbusv1.ResourceInfo{ResourceType: "config", ResourceId: version, State: "version " + version}}
		return nil, e
	}
	var next *structpb.Struct
	if req.GetRollback() {
		if len(req.GetConfig().GetFields()) > 0 {
			return nil, rpc.InvalidArgument("config_invalid", "a rollback takes no configuration",
				&eventbusv1.FieldViolation{Field: "update_config.config", Description: "must be empty with rollback"})
		}
		if c.prev == nil {
			return nil, rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_CONFLICT, "nothing_to_roll_back",
				"configuration version %s has no earlier version to roll back to", version)
		}
		next = c.prev
	} else {
		next = proto.Clone(c.cur).(*structpb.Struct)
		for k, v := range req.GetConfig().GetFields() {
			if _, null := v.GetKind().(*structpb.Value_NullValue); null {
				delete(next.Fields, k)
			} else {
				next.Fields[k] = v
			}
		}
	}
	if c.validate != nil {
		if vs := c.validate(next); len(vs) > 0 {
			for _, v := range vs {
				v.Field = "update_config.config." + v.Field
			}
			return nil, rpc.InvalidArgument("config_invalid", "the configuration is not valid; nothing was changed", vs...)
		}
	}
	changed := changedKeys(c.cur, next)
	res := &eventbusv1.ConfigUpdateResult{ConfigVersion: version, ChangedKeys: changed}
	if req.GetValidateOnly() {
		res.CurrentConfig = proto.Clone(c.cur).(*structpb.Struct)
		return res, nil
	}
	if len(changed) > 0 {
		if req.GetRollback() {
			c.prev = nil
		} else {
			c.prev = c.cur
		}
		c.cur = next
		c.version++
		res.Applied = true
		res.ConfigVersion = strconv.FormatUint(c.version, 10)
		res.RestartRequired = slices.ContainsFunc(changed, func(k string) bool { return slices.Contains(c.restartKeys, k) })
	}
	res.CurrentConfig = proto.Clone(c.cur).(*structpb.Struct)
	return res, nil
}

// changedKeys lists the top-level keys whose values differ, sorted.
func changedKeys(a, b *structpb.Struct) []string {
	var keys []string
	for k, v := range b.GetFields() {
		if !proto.Equal(a.GetFields()[k], v) {
			keys = append(keys, k)
		}
	}
	for k := range a.GetFields() {
		if _, ok := b.GetFields()[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
