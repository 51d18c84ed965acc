import EtcdServer
import Foundation
import Prometheus
import Synchronization

/// One member's Prometheus metrics with etcd's names, types, help texts and buckets, in a
/// registry of its own (so members in one process never mix). Latencies are recorded as they
/// happen (``diskHooks``, ``GRPCMetricsInterceptor``); everything the member already counts is
/// read when `/metrics` is scraped (``exposition()``), so the request path pays nothing for it.
package final class EtcdMetrics: Sendable {
    package let registry = PrometheusCollectorRegistry()
    private let server = Mutex<EtcdServer?>(nil)

    // Pushed as they happen.
    private let walFsync: ValueHistogram
    private let backendCommit: ValueHistogram
    let healthSuccess: Counter
    let healthFailures: Counter

    // Read at scrape time.
    private let hasLeader: Gauge
    private let isLeader: Gauge
    private let leaderChanges: Counter
    private let proposalsCommitted: Gauge
    private let proposalsApplied: Gauge
    private let proposalsPending: Gauge
    private let proposalsFailed: Counter
    private let quotaBackendBytes: Gauge
    private let databaseBytes: Gauge
    private let databaseBytesInUse: Gauge
    private let process: ProcessMetrics
    /// The counters' values at the last scrape (a counter only moves by increments).
    private let counted = Mutex((leaderChanges: UInt64(0), failed: UInt64(0)))

    /// etcd's buckets for disk latencies: 1 ms doubling 14 times (up to ~8 s).
    static let diskBuckets = (0..<14).map { 0.001 * pow(2, Double($0)) }

    package init() {
        func help(_ name: String, _ text: String) -> MetricNameDescriptor {
            MetricNameDescriptor(metricName: name, unitName: "", helpText: text)
        }
        walFsync = registry.makeValueHistogram(
            descriptor: help("etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL."),
            buckets: Self.diskBuckets)
        backendCommit = registry.makeValueHistogram(
            descriptor: help("etcd_disk_backend_commit_duration_seconds", "The latency distributions of commit called by backend."),
            buckets: Self.diskBuckets)
        healthSuccess = registry.makeCounter(descriptor: help("etcd_server_health_success", "The total number of successful health checks"))
        healthFailures = registry.makeCounter(descriptor: help("etcd_server_health_failures", "The total number of failed health checks"))
        hasLeader = registry.makeGauge(descriptor: help("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."))
        isLeader = registry.makeGauge(descriptor: help("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise."))
        leaderChanges = registry.makeCounter(descriptor: help("etcd_server_leader_changes_seen_total", "The number of leader changes seen."))
        proposalsCommitted = registry.makeGauge(
            descriptor: help("etcd_server_proposals_committed_total", "The total number of consensus proposals committed."))
        proposalsApplied = registry.makeGauge(
            descriptor: help("etcd_server_proposals_applied_total", "The total number of consensus proposals applied."))
        proposalsPending = registry.makeGauge(
            descriptor: help("etcd_server_proposals_pending", "The current number of pending proposals to commit."))
        proposalsFailed = registry.makeCounter(
            descriptor: help("etcd_server_proposals_failed_total", "The total number of failed proposals seen."))
        quotaBackendBytes = registry.makeGauge(
            descriptor: help("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes."))
        databaseBytes = registry.makeGauge(
            descriptor: help("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes."))
        databaseBytesInUse = registry.makeGauge(
            descriptor: help("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes."))
        registry.makeGauge(
            descriptor: help("etcd_server_version", "Which version is running. 1 for 'server_version' label with current version."),
            labels: [("server_version", EtcdServer.version)]
        ).set(1.0)
        registry.makeGauge(
            descriptor: help("etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with current cluster version"),
            labels: [("cluster_version", "3.6")]
        ).set(1.0)
        process = ProcessMetrics(registry: registry)
    }

    /// Hooks for the member's configuration: every WAL fsync and backend commit, in seconds.
    package var diskHooks: DiskMetrics {
        DiskMetrics(
            walFsync: { [walFsync] in walFsync.record(Self.seconds($0)) },
            backendCommit: { [backendCommit] in backendCommit.record(Self.seconds($0)) })
    }

    /// The member whose state the scrape reads (set once it exists).
    package func attach(_ server: EtcdServer) {
        self.server.withLock { $0 = server }
        registry.makeGauge(
            descriptor: MetricNameDescriptor(
                metricName: "etcd_server_id", unitName: "",
                helpText: "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID."),
            labels: [("server_id", String(server.memberID, radix: 16))]
        ).set(1.0)
    }

    /// Counts a `/health` answer.
    package func healthChecked(healthy: Bool) {
        (healthy ? healthSuccess : healthFailures).increment()
    }

    /// The text format of every metric, read fresh.
    package func exposition() -> String {
        if let facts = server.withLock({ $0 })?.metricFacts() {
            hasLeader.set(facts.hasLeader ? 1.0 : 0.0)
            isLeader.set(facts.isLeader ? 1.0 : 0.0)
            proposalsCommitted.set(Double(facts.committedIndex))
            proposalsApplied.set(Double(facts.appliedIndex))
            proposalsPending.set(Double(facts.pendingProposals))
            quotaBackendBytes.set(Double(facts.quotaBackendBytes))
            databaseBytes.set(Double(facts.databaseBytes))
            databaseBytesInUse.set(Double(facts.databaseBytesInUse))
            let (changes, failed) = counted.withLock { counted in
                defer { counted = (facts.leaderChanges, facts.failedProposals) }
                return (facts.leaderChanges - min(counted.leaderChanges, facts.leaderChanges), facts.failedProposals - min(counted.failed, facts.failedProposals))
            }
            if changes > 0 { leaderChanges.increment(by: Int64(changes)) }
            if failed > 0 { proposalsFailed.increment(by: Int64(failed)) }
        }
        process.refresh()
        return registry.emitToString()
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
