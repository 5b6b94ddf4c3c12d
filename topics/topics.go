package topics

// Domains: the first segment of every topic.
const (
	// Events is the domain of observations and alerts.
	Events = "events"
	// Control is the domain of requests, replies, heartbeats and the
	// broker's and agent's services.
	Control = "control"
	// AllEvents matches every event and alert.
	AllEvents = "events.#"
)

// Process events (CollectionEvent with a ProcessEvent), one subtopic per
// subtype.
const (
	// ProcessEnumeration is the stem of processes seen by a /proc scan with
	// no known lifecycle change.
	ProcessEnumeration = "events.process.enumeration"
	// ProcessLifecycle is the stem of process starts and exits.
	ProcessLifecycle = "events.process.lifecycle"
	// ProcessMetadata is the stem of changes to a known process.
	ProcessMetadata = "events.process.metadata"
	// ProcessHash carries updates whose changed field is the executable
	// hash, computed after the process was first reported.
	ProcessHash = "events.process.hash"
	// ProcessAnomaly carries process events the collector itself flags as
	// suspicious (such as a running executable that was deleted).
	ProcessAnomaly = "events.process.anomaly"

	// ProcessObserved carries PROCESS_EVENT_SUBTYPE_OBSERVED.
	ProcessObserved = ProcessEnumeration + ".observed"
	// ProcessCreated carries PROCESS_EVENT_SUBTYPE_CREATED.
	ProcessCreated = ProcessLifecycle + ".created"
	// ProcessTerminated carries PROCESS_EVENT_SUBTYPE_TERMINATED.
	ProcessTerminated = ProcessLifecycle + ".terminated"
	// ProcessUpdated carries PROCESS_EVENT_SUBTYPE_UPDATED.
	ProcessUpdated = ProcessMetadata + ".updated"
	// AllProcess matches every process event.
	AllProcess = "events.process.#"
)

// Kernel security events (CollectionEvent with a SecurityEventData), from
// procmond's eBPF security sensor, one subtopic of ProcessAnomaly per
// SecurityEventKind. Subscribe to AllSecurity for all of them.
const (
	// SecurityPtrace: ptrace attach, seize and writes to a tracee.
	SecurityPtrace = ProcessAnomaly + ".ptrace"
	// SecurityModule: kernel module loads (init_module, finit_module).
	SecurityModule = ProcessAnomaly + ".module"
	// SecurityCredentials: changes of a process's uids, gids or
	// capabilities (setuid, setgid, capset families).
	SecurityCredentials = ProcessAnomaly + ".credentials"
	// SecurityMemfd: memfd_create calls.
	SecurityMemfd = ProcessAnomaly + ".memfd"
	// SecurityBPF: BPF program loads by processes other than DaemonEye's.
	SecurityBPF = ProcessAnomaly + ".bpf"
	// SecurityMount: mount and umount2 calls (bind mounts over /proc/<pid>
	// flagged).
	SecurityMount = ProcessAnomaly + ".mount"
	// SecurityNamespace: setns and unshare calls.
	SecurityNamespace = ProcessAnomaly + ".namespace"
	// SecurityProcMem: another process's /proc/<pid>/mem opened for
	// writing, and the writes through it.
	SecurityProcMem = ProcessAnomaly + ".procmem"
	// AllSecurity matches every kernel security event (and any other
	// events.process.anomaly subtopic).
	AllSecurity = ProcessAnomaly + ".+"
)

// Network, filesystem and performance events.
const (
	// NetworkConnections carries connection and listen events.
	NetworkConnections = "events.network.connections"
	// NetworkTraffic carries traffic samples.
	NetworkTraffic = "events.network.traffic"
	// NetworkDNS is reserved for DNS events (no schema yet).
	NetworkDNS = "events.network.dns"
	// NetworkAnomaly carries network events with a suspicious traffic
	// analysis.
	NetworkAnomaly = "events.network.anomaly"

	// FilesystemOperations carries create, modify, delete, rename and
	// attribute events.
	FilesystemOperations = "events.filesystem.operations"
	// FilesystemAccess carries file access events.
	FilesystemAccess = "events.filesystem.access"
	// FilesystemMetadata carries events whose point is the file metadata
	// (hashes, ownership) rather than the operation.
	FilesystemMetadata = "events.filesystem.metadata"
	// FilesystemAnomaly carries filesystem events with an anomalous access
	// analysis.
	FilesystemAnomaly = "events.filesystem.anomaly"

	// PerformanceMetrics carries performance samples.
	PerformanceMetrics = "events.performance.metrics"
	// PerformanceResources carries per-resource samples (CPU, memory,
	// disk, network).
	PerformanceResources = "events.performance.resources"
	// PerformanceThresholds carries threshold exceeded and cleared events.
	PerformanceThresholds = "events.performance.thresholds"
	// PerformanceAnomaly carries performance anomalies.
	PerformanceAnomaly = "events.performance.anomaly"
)

// Alerts: events.alert.<severity>, published by the agent alone.
const (
	// AlertPrefix starts every alert topic.
	AlertPrefix = "events.alert."
	// AllAlerts matches every alert.
	AllAlerts = "events.alert.#"
)

// Alert returns the topic of alerts of a severity, given by its lower-case
// name ("low", "medium", "high", "critical"): events.alert.<severity>.
func Alert(severity string) string { return AlertPrefix + severity }

// Collector control services: control.collector.<service>.<id>, served by
// the collector <id> and called by the agent alone.
const (
	// CollectorPrefix starts every collector control topic.
	CollectorPrefix = "control.collector."
	// AllCollector matches every collector control topic.
	AllCollector = "control.collector.#"
	// CollectorLifecycle is the stem of start, stop, restart, pause,
	// resume and shutdown requests.
	CollectorLifecycle = "control.collector.lifecycle"
	// CollectorConfig is the stem of configuration updates.
	CollectorConfig = "control.collector.config"
	// CollectorHealth is the stem of health checks.
	CollectorHealth = "control.collector.health"
	// CollectorCapabilities is the stem of capability queries.
	CollectorCapabilities = "control.collector.capabilities"
)

// CollectorServices returns the pattern that matches every control topic
// of collector id: control.collector.+.<id>.
func CollectorServices(id string) string { return CollectorPrefix + "+." + id }

// Agent services and announcements.
const (
	// AgentPrefix starts the agent's topics.
	AgentPrefix = "control.agent."
	// AllAgent matches every agent topic.
	AllAgent = "control.agent.#"
	// AgentTasks is the stem of work the agent hands to collectors:
	// control.agent.tasks.<id>.
	AgentTasks = "control.agent.tasks"
	// AgentCoordination carries registration requests and coordination
	// announcements.
	AgentCoordination = "control.agent.coordination"
	// AgentStatus carries the agent's own heartbeats.
	AgentStatus = "control.agent.status"
	// AgentShutdown carries the agent's shutdown notice.
	AgentShutdown = "control.agent.shutdown"
	// AgentCollectors is the agent's admin service: listing its
	// collectors and restarting one.
	AgentCollectors = "control.agent.collectors"
	// AgentForwardPrefix is where operators call a collector's control
	// services through the agent: a request on
	// control.agent.collector.<service>.<id> is forwarded to
	// control.collector.<service>.<id>.
	AgentForwardPrefix = "control.agent.collector."
)

// AgentTasksFor returns the topic of the tasks for collector id:
// control.agent.tasks.<id>.
func AgentTasksFor(id string) string { return AgentTasks + "." + id }

// Health: collectors' heartbeats and state changes.
const (
	// AllHealth matches every heartbeat and state change.
	AllHealth = "control.health.#"
	// HealthHeartbeat is the stem of collector heartbeats.
	HealthHeartbeat = "control.health.heartbeat"
	// HealthStatus is the stem of collector state changes.
	HealthStatus = "control.health.status"
)

// Heartbeat returns the topic of collector id's heartbeats:
// control.health.heartbeat.<id>.
func Heartbeat(id string) string { return HealthHeartbeat + "." + id }

// Status returns the topic of collector id's state changes:
// control.health.status.<id>.
func Status(id string) string { return HealthStatus + "." + id }

// The broker's own services.
const (
	// AllBroker matches every broker service topic.
	AllBroker = "control.broker.#"
	// BrokerStats is answered by the socket server with its statistics.
	BrokerStats = "control.broker.stats"
)

// Inboxes: where replies to requests travel.
const (
	// InboxPrefix starts every inbox: a connection subscribes to
	// control.inbox.<name>.+ and asks for replies on
	// control.inbox.<name>.<id>.
	InboxPrefix = "control.inbox."
)

// Inbox returns the pattern that matches every reply to the inbox named
// name: control.inbox.<name>.+.
func Inbox(name string) string { return InboxPrefix + name + ".+" }
