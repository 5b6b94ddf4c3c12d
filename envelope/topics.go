package envelope

import (
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/topics"
)

// ProcessTopic returns the topic procmond publishes a process event of
// that subtype on: one subtopic per subtype under the design's categories,
// events.process.enumeration.observed, events.process.lifecycle.created,
// events.process.lifecycle.terminated and events.process.metadata.updated.
// Subscribe to events.process.lifecycle.+ for both lifecycle subtypes, or
// events.process.# for everything. It returns "" for
// PROCESS_EVENT_SUBTYPE_UNSPECIFIED.
func ProcessTopic(subtype eventbusv1.ProcessEventSubtype) string {
	switch subtype {
	case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_OBSERVED:
		return topics.ProcessObserved
	case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED:
		return topics.ProcessCreated
	case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED:
		return topics.ProcessTerminated
	case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_UPDATED:
		return topics.ProcessUpdated
	}
	return ""
}
