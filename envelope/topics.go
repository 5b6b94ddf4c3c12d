package envelope

import eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"

// Topics of the DaemonEye topic tree (docs/schemas.md says which payload
// travels on which). Event topics carry CollectionEvent payloads.
const (
	// TopicProcessEnumeration carries PROCESS_EVENT_SUBTYPE_OBSERVED events:
	// processes seen by an enumeration with no known lifecycle change.
	TopicProcessEnumeration = "events.process.enumeration"
	// TopicProcessLifecycle carries PROCESS_EVENT_SUBTYPE_CREATED and
	// PROCESS_EVENT_SUBTYPE_TERMINATED events.
	TopicProcessLifecycle = "events.process.lifecycle"
	// TopicProcessMetadata carries PROCESS_EVENT_SUBTYPE_UPDATED events.
	TopicProcessMetadata = "events.process.metadata"
	// TopicProcessHash carries PROCESS_EVENT_SUBTYPE_UPDATED events whose
	// changed fields are the executable hash, computed after the process was
	// first reported.
	TopicProcessHash = "events.process.hash"
	// TopicProcessAnomaly carries process events the collector itself flags
	// as suspicious (such as a running executable that was deleted).
	TopicProcessAnomaly = "events.process.anomaly"

	// TopicNetworkConnections carries connection and listen events.
	TopicNetworkConnections = "events.network.connections"
	// TopicNetworkTraffic carries NETWORK_EVENT_SUBTYPE_TRAFFIC_SAMPLE events.
	TopicNetworkTraffic = "events.network.traffic"
	// TopicNetworkDNS is reserved for DNS events (no schema yet).
	TopicNetworkDNS = "events.network.dns"
	// TopicNetworkAnomaly carries network events with a suspicious traffic
	// analysis.
	TopicNetworkAnomaly = "events.network.anomaly"

	// TopicFilesystemOperations carries create, modify, delete, rename and
	// attribute events.
	TopicFilesystemOperations = "events.filesystem.operations"
	// TopicFilesystemAccess carries FILESYSTEM_EVENT_SUBTYPE_ACCESSED events.
	TopicFilesystemAccess = "events.filesystem.access"
	// TopicFilesystemMetadata carries events whose point is the file
	// metadata (hashes, ownership) rather than the operation.
	TopicFilesystemMetadata = "events.filesystem.metadata"
	// TopicFilesystemAnomaly carries filesystem events with an anomalous
	// access analysis.
	TopicFilesystemAnomaly = "events.filesystem.anomaly"

	// TopicPerformanceMetrics carries PERFORMANCE_EVENT_SUBTYPE_SAMPLE events.
	TopicPerformanceMetrics = "events.performance.metrics"
	// TopicPerformanceResources carries per-resource samples (CPU, memory,
	// disk, network).
	TopicPerformanceResources = "events.performance.resources"
	// TopicPerformanceThresholds carries threshold exceeded and cleared
	// events.
	TopicPerformanceThresholds = "events.performance.thresholds"
	// TopicPerformanceAnomaly carries PERFORMANCE_EVENT_SUBTYPE_ANOMALY
	// events.
	TopicPerformanceAnomaly = "events.performance.anomaly"
)

// Control topics: the stems of the control tree. The RPC layer derives
// per-collector topics from them (docs/schemas.md).
const (
	// TopicCollectorLifecycle is the stem of collector lifecycle RPCs.
	TopicCollectorLifecycle = "control.collector.lifecycle"
	// TopicCollectorConfig is the stem of collector configuration RPCs.
	TopicCollectorConfig = "control.collector.config"
	// TopicCollectorHealth is the stem of collector health-check RPCs.
	TopicCollectorHealth = "control.collector.health"
	// TopicCollectorCapabilities is the stem of capability RPCs.
	TopicCollectorCapabilities = "control.collector.capabilities"

	// TopicAgentTasks carries work the agent hands to collectors.
	TopicAgentTasks = "control.agent.tasks"
	// TopicAgentCoordination carries registration RPCs and coordination
	// announcements (configuration changes, topic policies).
	TopicAgentCoordination = "control.agent.coordination"
	// TopicAgentStatus carries the agent's own heartbeats.
	TopicAgentStatus = "control.agent.status"
	// TopicAgentShutdown carries the agent's shutdown notice.
	TopicAgentShutdown = "control.agent.shutdown"

	// TopicHealthHeartbeat is the stem of collector heartbeats:
	// control.health.heartbeat.<collector_id>.
	TopicHealthHeartbeat = "control.health.heartbeat"
	// TopicHealthStatus is the stem of collector state changes:
	// control.health.status.<collector_id>.
	TopicHealthStatus = "control.health.status"
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
		return TopicProcessEnumeration + ".observed"
	case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED:
		return TopicProcessLifecycle + ".created"
	case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED:
		return TopicProcessLifecycle + ".terminated"
	case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_UPDATED:
		return TopicProcessMetadata + ".updated"
	}
	return ""
}
