package envelope

import (
	"maps"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
)

// Tag is one correlation tag: a key and its value in
// CorrelationMetadata.correlation_tags.
type Tag struct {
	Key, Value string
}

// TraceFlagSampled is the W3C trace-flags bit that marks a trace as
// sampled. NewRoot sets it: a security monitor records every event.
const TraceFlagSampled = 0x01

// NewRoot starts a workflow: a new correlation id, which is also the root
// id, no parent, sequence number 0, a fresh W3C trace id and span id with
// the sampled flag, and the given tags (a later tag with the same key
// wins).
func NewRoot(tags ...Tag) *eventbusv1.CorrelationMetadata {
	id := NewID()
	traceID, spanID := NewTraceID(), NewSpanID()
	c := &eventbusv1.CorrelationMetadata{
		CorrelationId:     id,
		RootCorrelationId: id,
		TraceId:           &traceID,
		SpanId:            &spanID,
		TraceFlags:        TraceFlagSampled,
	}
	return AddTags(c, tags...)
}

// Child returns the correlation of the next step after parent: a new
// correlation id, parent_correlation_id set to the parent's, the parent's
// root id (or the parent's own id when the parent has no root id), the
// parent's trace id and trace flags (or a fresh trace id, sampled, when the
// parent has no valid one), a new span id, sequence number one more than
// the parent's, and copies of the parent's workflow stage and tags. The
// parent is not modified. A nil parent gives a new root.
func Child(parent *eventbusv1.CorrelationMetadata) *eventbusv1.CorrelationMetadata {
	if parent == nil {
		return NewRoot()
	}
	parentID := parent.GetCorrelationId()
	root := parent.GetRootCorrelationId()
	if root == "" {
		root = parentID
	}
	traceID, flags := parent.GetTraceId(), parent.GetTraceFlags()
	if !validID(traceID, 32) {
		traceID, flags = NewTraceID(), TraceFlagSampled
	}
	spanID := NewSpanID()
	c := &eventbusv1.CorrelationMetadata{
		CorrelationId:       NewID(),
		ParentCorrelationId: &parentID,
		RootCorrelationId:   root,
		TraceId:             &traceID,
		SpanId:              &spanID,
		SequenceNumber:      parent.GetSequenceNumber() + 1,
		TraceFlags:          flags,
	}
	if parent.WorkflowStage != nil {
		stage := *parent.WorkflowStage
		c.WorkflowStage = &stage
	}
	if len(parent.GetCorrelationTags()) > 0 {
		c.CorrelationTags = maps.Clone(parent.CorrelationTags)
	}
	return c
}

// WithTag sets one correlation tag on c and returns c.
func WithTag(c *eventbusv1.CorrelationMetadata, key, value string) *eventbusv1.CorrelationMetadata {
	if c.CorrelationTags == nil {
		c.CorrelationTags = make(map[string]string, 1)
	}
	c.CorrelationTags[key] = value
	return c
}

// AddTags sets correlation tags on c, in order (a later tag with the same
// key wins), and returns c. With no tags it changes nothing.
func AddTags(c *eventbusv1.CorrelationMetadata, tags ...Tag) *eventbusv1.CorrelationMetadata {
	if len(tags) == 0 {
		return c
	}
	if c.CorrelationTags == nil {
		c.CorrelationTags = make(map[string]string, len(tags))
	}
	for _, t := range tags {
		c.CorrelationTags[t.Key] = t.Value
	}
	return c
}

// WithStage sets c's workflow stage and returns c.
func WithStage(c *eventbusv1.CorrelationMetadata, stage string) *eventbusv1.CorrelationMetadata {
	c.WorkflowStage = &stage
	return c
}
