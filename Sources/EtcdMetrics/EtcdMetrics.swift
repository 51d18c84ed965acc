import EtcdServer
import Locking
import MVCC
import Foundation
import Prometheus
import Synchronization

/// One member's Prometheus metrics with etcd's names, types, help texts and buckets, in a
/// registry of its own (so members in one process never mix). Latencies are recorded as they
/// happen (``hooks``, ``GRPCMetricsInterceptor``); everything the member already counts is
/// read when `/metrics` is scraped (``exposition()``), so the request path pays nothing for it.
package final class EtcdMetrics: Sendable {
    package let registry = PrometheusCollectorRegistry()
    private let server = Locked<EtcdServer?>(nil)

    // Pushed as they happen.
    private let walFsync: ValueHistogram
    private let backendCommit: ValueHistogram
    private let leaseTTL: ValueHistogram
    /// Round-trip histograms by peer, made at a peer's first probe.
    private let roundTrips = Locked<[UInt64: ValueHistogram]>([:])
    let healthSuccess: Counter
    let healthFailures: Counter

    // Read at scrape time.
    private let gauges: [(any KeyPath<EtcdServer.MetricFacts, Double> & Sendable, Gauge)]
    private let counters: [(any KeyPath<EtcdServer.MetricFacts, UInt64> & Sendable, ScrapedCounter)]
    /// Counters by peer, made when a peer first shows up.
    private let peerCounters = Locked<[UInt64: PeerCounters]>([:])
    private let process: ProcessMetrics

    /// etcd's buckets for disk latencies: 1 ms doubling 14 times (up to ~8 s).
    static let diskBuckets = exponentialBuckets(start: 0.001, count: 14)
    /// Peer round trips: 0.1 ms doubling 16 times (up to ~3.3 s).
    static let roundTripBuckets = exponentialBuckets(start: 0.0001, count: 16)
    /// Lease TTLs: 1 s doubling 24 times.
    static let leaseTTLBuckets = exponentialBuckets(start: 1, count: 24)

    static func exponentialBuckets(start: Double, count: Int) -> [Double] {
        (0..<count).map { start * pow(2, Double($0)) }
    }

    package init() {
        let registry = registry
        func help(_ name: String, _ text: String) -> MetricNameDescriptor {
            MetricNameDescriptor(metricName: name, unitName: "", helpText: text)
        }
        func gauge(_ name: String, _ text: String) -> Gauge { registry.makeGauge(descriptor: help(name, text)) }
        func counter(_ name: String, _ text: String) -> ScrapedCounter {
            ScrapedCounter(registry.makeCounter(descriptor: help(name, text)))
        }
        walFsync = registry.makeValueHistogram(
            descriptor: help("etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL."),
            buckets: Self.diskBuckets)
        backendCommit = registry.makeValueHistogram(
            descriptor: help("etcd_disk_backend_commit_duration_seconds", "The latency distributions of commit called by backend."),
            buckets: Self.diskBuckets)
        leaseTTL = registry.makeValueHistogram(
            descriptor: help("etcd_debugging_lease_ttl_total", "Bucketed histogram of lease TTLs."), buckets: Self.leaseTTLBuckets)
        healthSuccess = registry.makeCounter(descriptor: help("etcd_server_health_success", "The total number of successful health checks"))
        healthFailures = registry.makeCounter(descriptor: help("etcd_server_health_failures", "The total number of failed health checks"))
        // etcd exports some of these totals as gauges; their types are etcd's.
        gauges = [
            (\.hasLeaderValue, gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.")),
            (\.isLeaderValue, gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")),
            (\.isLearnerValue, gauge("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.")),
            (\.committedValue, gauge("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.")),
            (\.appliedValue, gauge("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.")),
            (\.pendingValue, gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit.")),
            (\.quotaValue, gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.")),
            (\.databaseValue, gauge(
                "etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")),
            (\.databaseInUseValue, gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.")),
            (\.keysValue, gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.")),
            (\.currentRevisionValue, gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.")),
            (\.compactRevisionValue, gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.")),
            (\.putBytesValue, gauge("etcd_debugging_mvcc_total_put_size_in_bytes", "The total size of put kv pairs seen by this member.")),
            (\.watchStreamsValue, gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.")),
            (\.watchersValue, gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.")),
            (\.slowWatchersValue, gauge("etcd_debugging_mvcc_slow_watcher_total", "Total number of unsynced slow watchers.")),
        ]
        counters = [
            (\.leaderChanges, counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen.")),
            (\.failedProposals, counter("etcd_server_proposals_failed_total", "The total number of failed proposals seen.")),
            (\.slowApplies, counter("etcd_server_slow_apply_total", "The total number of slow apply requests (likely overloaded from slow disk).")),
            (\.ranges, counter("etcd_mvcc_range_total", "Total number of ranges seen by this member.")),
            (\.puts, counter("etcd_mvcc_put_total", "Total number of puts seen by this member.")),
            (\.deletes, counter("etcd_mvcc_delete_total", "Total number of deletes seen by this member.")),
            (\.txns, counter("etcd_mvcc_txn_total", "Total number of txns seen by this member.")),
            (\.watchEvents, counter("etcd_debugging_mvcc_events_total", "Total number of events sent by this member.")),
            (\.leasesGranted, counter("etcd_debugging_lease_granted_total", "The total number of granted leases.")),
            (\.leasesRevoked, counter("etcd_debugging_lease_revoked_total", "The total number of revoked leases.")),
            (\.leasesRenewed, counter("etcd_debugging_lease_renewed_total", "The number of renewed leases seen by the leader.")),
        ]
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

    /// Hooks for the member's configuration: disk latencies, peer round trips, lease TTLs.
    package var hooks: MetricHooks {
        MetricHooks(
            walFsync: { [walFsync] in walFsync.record(Self.seconds($0)) },
            backendCommit: { [backendCommit] in backendCommit.record(Self.seconds($0)) },
            peerRoundTrip: { [self] peer, duration in roundTrip(to: peer).record(Self.seconds(duration)) },
            leaseGranted: { [leaseTTL] in leaseTTL.record(Double($0)) })
    }

    private func roundTrip(to peer: UInt64) -> ValueHistogram {
        roundTrips.withLock { histograms in
            if let histogram = histograms[peer] { return histogram }
            let histogram = registry.makeValueHistogram(
                descriptor: MetricNameDescriptor(
                    metricName: "etcd_network_peer_round_trip_time_seconds", unitName: "",
                    helpText: "Round-Trip-Time histogram between peers"),
                labels: [("To", String(peer, radix: 16))], buckets: Self.roundTripBuckets)
            histograms[peer] = histogram
            return histogram
        }
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
            for (path, gauge) in gauges { gauge.set(facts[keyPath: path]) }
            for (path, counter) in counters { counter.advance(to: facts[keyPath: path]) }
            for (peer, traffic) in facts.peers { peerCounters(peer).advance(to: traffic.totals) }
        }
        process.refresh()
        return registry.emitToString()
    }

    private func peerCounters(_ peer: UInt64) -> PeerCounters {
        peerCounters.withLock { table in
            if let counters = table[peer] { return counters }
            let counters = PeerCounters(registry: registry, peer: peer)
            table[peer] = counters
            return counters
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// A Prometheus counter that follows a total the member keeps: each scrape adds what the
/// total grew by since the last one.
final class ScrapedCounter: Sendable {
    private let counter: Counter
    private let last = Locked<UInt64>(0)

    init(_ counter: Counter) {
        self.counter = counter
    }

    func advance(to total: UInt64) {
        let grown = last.withLock { last in
            defer { last = max(last, total) }
            return total > last ? total - last : 0
        }
        if grown > 0 { counter.increment(by: Int64(grown)) }
    }
}

/// etcd's per-peer traffic counters (`To` for what was sent, `From` for what was received).
private struct PeerCounters: Sendable {
    let sentBytes: ScrapedCounter
    let receivedBytes: ScrapedCounter
    let sentFailures: ScrapedCounter
    let receivedFailures: ScrapedCounter

    init(registry: PrometheusCollectorRegistry, peer: UInt64) {
        let id = String(peer, radix: 16)
        func counter(_ name: String, _ help: String, _ label: String) -> ScrapedCounter {
            ScrapedCounter(registry.makeCounter(
                descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: [(label, id)]))
        }
        sentBytes = counter("etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.", "To")
        receivedBytes = counter("etcd_network_peer_received_bytes_total", "The total number of bytes received from peers.", "From")
        sentFailures = counter("etcd_network_peer_sent_failures_total", "The total number of send failures from peers.", "To")
        receivedFailures = counter(
            "etcd_network_peer_received_failures_total", "The total number of receive failures from peers.", "From")
    }

    func advance(to totals: (sentBytes: UInt64, receivedBytes: UInt64, sentFailures: UInt64, receivedFailures: UInt64)) {
        sentBytes.advance(to: totals.sentBytes)
        receivedBytes.advance(to: totals.receivedBytes)
        sentFailures.advance(to: totals.sentFailures)
        receivedFailures.advance(to: totals.receivedFailures)
    }
}

/// The facts as the numbers Prometheus' gauges take.
extension EtcdServer.MetricFacts {
    var hasLeaderValue: Double { hasLeader ? 1 : 0 }
    var isLeaderValue: Double { isLeader ? 1 : 0 }
    var isLearnerValue: Double { isLearner ? 1 : 0 }
    var committedValue: Double { Double(committedIndex) }
    var appliedValue: Double { Double(appliedIndex) }
    var pendingValue: Double { Double(pendingProposals) }
    var quotaValue: Double { Double(quotaBackendBytes) }
    var databaseValue: Double { Double(databaseBytes) }
    var databaseInUseValue: Double { Double(databaseBytesInUse) }
    var keysValue: Double { Double(keys) }
    var currentRevisionValue: Double { Double(currentRevision) }
    var compactRevisionValue: Double { Double(max(0, compactRevision)) }
    var putBytesValue: Double { Double(putBytes) }
    var watchStreamsValue: Double { Double(watch.streams) }
    var watchersValue: Double { Double(watch.watchers) }
    var slowWatchersValue: Double { Double(watch.unsynced) }
    var watchEvents: UInt64 { watch.events }
}
