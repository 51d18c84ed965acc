import Auth
import EtcdServer
import Foundation
import GRPCWire
import Logging
import NIOCore
import TransportSecurity

/// Everything a swift-etcd member starts with, as etcd's `embed.Config` holds it: what the
/// command-line flags, the `ETCD_*` variables (and later the YAML config file) set, with etcd's
/// defaults. ``EmbeddedEtcd/start(_:)`` starts a member from it, in a process of one's own or
/// inside a test.
public struct EmbedConfiguration: Sendable {
    /// etcd's `--initial-cluster-state`.
    public enum ClusterState: String, Sendable {
        case new
        case existing
    }

    public var name = "default"
    /// `--data-dir`; nil means `<name>.etcd`.
    public var dataDirectory: String?
    public var listenClientURLs = ["http://localhost:2379"]
    /// `--listen-client-http-urls`: listeners for the client port's HTTP side alone (health,
    /// version, `/metrics`, the `/v3` gateway); when set, `listenClientURLs` serve gRPC alone.
    public var listenClientHTTPURLs: [String] = []
    /// `--listen-metrics-urls`: listeners for `/metrics` and the health endpoints alone
    /// (`http://` or `https://`, the latter with the client TLS files).
    public var listenMetricsURLs: [String] = []
    /// `--cors`: the origins whose pages may call the client port's HTTP side (its answers name
    /// them in `Access-Control-Allow-Origin`); empty or `*`, every origin.
    public var corsOrigins = ["*"]
    /// `--host-whitelist`: the `Host` names plain-HTTP requests to the client port may carry
    /// (against DNS rebinding, CVE-2018-5702); empty or `*`, every name. TLS requests pass.
    public var hostWhitelist = ["*"]
    /// `--metrics extensive`: also `grpc_server_handling_seconds`, a latency histogram per RPC.
    public var extensiveMetrics = false
    public var advertiseClientURLs = ["http://localhost:2379"]
    public var listenPeerURLs = ["http://localhost:2380"]
    /// `--initial-advertise-peer-urls`: this member's peer URLs as the cluster knows them; they
    /// must be the ones `--initial-cluster` lists under this member's name.
    public var initialAdvertisePeerURLs = ["http://localhost:2380"]
    public var initialCluster = "default=http://localhost:2380"
    public var initialClusterToken = "etcd-cluster"
    /// `--discovery-srv`: the initial cluster comes from DNS SRV records instead of
    /// ``initialCluster``.
    public var discoverySRV: SRVDiscovery?
    /// `--discovery`: the initial cluster comes from a discovery service instead of
    /// ``initialCluster`` (only when the member has no log yet, as in etcd).
    public var discovery: URLDiscovery?
    /// `--discovery-endpoints` and `--discovery-token`: the initial cluster from an etcd
    /// cluster used as discovery service (etcd 3.6's v3 discovery), when the member has no log.
    public var v3Discovery: V3Discovery?

    /// The discovery service of a new member, of either kind (flags allow one).
    var clusterDiscovery: (any ClusterDiscovery)? { discovery ?? v3Discovery.map { $0 as any ClusterDiscovery } }
    public var initialClusterState = ClusterState.new
    /// Milliseconds.
    public var heartbeatInterval = 100
    /// Milliseconds.
    public var electionTimeout = 1000
    public var strictReconfigCheck = true
    /// `--max-learners`: learners the cluster may have at once (give every member the same).
    public var maxLearners = 1
    /// Not in etcd: promote a learner once it has caught up.
    public var autoPromoteLearners = false
    public var maxRequestBytes = 1_572_864
    public var maxTxnOperations = 128
    /// `--max-concurrent-streams`: the streams one client connection may have open at once; a
    /// client that opens more has the extra ones refused (0, as in gRPC-Go, means no limit).
    public var maxConcurrentStreams: UInt32 = .max
    /// `--grpc-keepalive-min-time`: a client ping sooner than this after the last one, with no
    /// answer data sent in between, is a strike (0: gRPC-Go's own 5 minutes, as in etcd).
    public var grpcKeepaliveMinTime: Duration = .seconds(5)
    /// `--grpc-keepalive-interval` and `--grpc-keepalive-timeout`: an idle client connection
    /// is pinged after the interval and closed when no answer comes within the timeout (either
    /// at 0: gRPC-Go's own 2 h and 20 s, as in etcd, whose help says 0 disables them).
    public var grpcKeepaliveInterval: Duration = .seconds(7200)
    public var grpcKeepaliveTimeout: Duration = .seconds(20)

    /// The client listeners' ping policy, as gRPC-Go applies etcd's three flags.
    var keepalivePolicy: KeepalivePolicy {
        func amount(_ duration: Duration) -> TimeAmount {
            .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
        }
        var policy = KeepalivePolicy()
        policy.minimumPingInterval = grpcKeepaliveMinTime > .zero ? amount(grpcKeepaliveMinTime) : .minutes(5)
        if grpcKeepaliveInterval > .zero && grpcKeepaliveTimeout > .zero {
            policy.pingInterval = amount(grpcKeepaliveInterval)
            policy.pingTimeout = amount(grpcKeepaliveTimeout)
        }
        return policy
    }
    /// 0 means etcd's default, 2 GiB.
    public var quotaBackendBytes: Int64 = 0
    /// `--backend-batch-interval`: the longest applied writes wait for their backend commit
    /// (0: etcd's default, 100 ms).
    public var backendBatchInterval: Duration = .zero
    /// `--backend-batch-limit`: applied changes that make the backend commit at once (0: etcd's
    /// default, 10,000; less than 0: every batch at once).
    public var backendBatchLimit = 0
    public var snapshotCount: UInt64 = 10_000
    public var snapshotCatchUpEntries: UInt64 = 5000
    public var watchProgressNotifyInterval: Duration = .seconds(600)
    /// `--warning-apply-duration`: applying a request that takes longer logs `apply request took
    /// too long` and counts in `etcd_server_slow_apply_total`.
    public var warningApplyDuration: Duration = .milliseconds(100)
    /// `--warning-unary-request-duration`: a unary call that takes longer logs `request stats`.
    public var warningUnaryRequestDuration: Duration = .milliseconds(300)
    /// `--force-new-cluster`: restart from this member's data as a one-member cluster.
    public var forceNewCluster = false
    /// `--unsafe-no-fsync`: the log is never synced; a machine crash may lose acknowledged
    /// writes (a process crash does not). For throwaway clusters only.
    public var unsafeNoFsync = false
    /// `--auto-compaction-mode` and `--auto-compaction-retention` (nil: off).
    package var autoCompaction: AutoCompactor.Mode?
    /// `--experimental-initial-corrupt-check`: compare hashes with the peers before serving,
    /// and refuse to start on a mismatch.
    public var initialCorruptCheck = false
    /// `--experimental-corrupt-check-time`: how often the leader compares hashes (nil: never).
    public var corruptCheckTime: Duration?
    /// `--experimental-compact-hash-check-enabled` and `-time`: how often the leader compares
    /// hashes at the newest compaction (nil: never).
    public var compactHashCheckTime: Duration?
    public var maxSnapshots = 5
    public var maxWALs = 5
    public var walDirectory: String?
    /// Only smaller to exercise log rollover and purge in tests.
    public var walSegmentBytes = 64 * 1024 * 1024
    public var logLevel: Logger.Level = .info
    /// `stderr` (also `default`), `stdout` or file paths.
    public var logOutputs = ["default"]
    /// `--log-rotation-config-json` when `--enable-log-rotation` is given (nil: the log file
    /// is not rotated); read, as etcd reads it, when the log outputs are opened.
    public var logRotationConfigJSON: String?
    /// `--log-format`: `json` or `console`; read, as etcd reads it, when the logger is set up.
    public var logFormat = "json"
    /// Client TLS: `--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`, … for
    /// `https://` and `unixs://` client URLs.
    public var clientTLS = TLSInfo(side: .client)
    /// Peer TLS: `--peer-cert-file`, … for `https://` peer URLs.
    public var peerTLS = TLSInfo(side: .peer)
    /// How long a client or peer has to finish its TLS handshake before it is disconnected
    /// (etcd's client listener has no limit; a silent client holds a connection forever).
    public var tlsHandshakeTimeout: Duration = .seconds(10)
    /// `--auth-token`: simple tokens, or JWTs with the keys it names.
    package var authToken = AuthTokenOptions.simple
    /// `--auth-token-ttl`: seconds a simple token lives without use (0 or less: etcd's 300).
    public var authTokenTTL = 300
    /// `--bcrypt-cost`.
    public var bcryptCost = 10
    /// Called once when the member learns it was removed from the cluster: it should stop (the
    /// `swift-etcd` process sends itself SIGTERM, for the same graceful stop).
    public var onRemovedFromCluster: (@Sendable () -> Void)?

    public init() {}

    /// etcd's checks on the settings, with its wording where etcd has one.
    public func validate() throws(ConfigurationError) {
        try discovery?.validate()
        guard walSegmentBytes >= 4096 else { throw ConfigurationError("--wal-segment-bytes: must be at least 4096") }
        guard maxSnapshots >= 0, maxWALs >= 0 else { throw ConfigurationError("--max-snapshots and --max-wals must not be negative") }
        guard watchProgressNotifyInterval > .zero else {
            throw ConfigurationError("--experimental-watch-progress-notify-interval must be positive")
        }
        guard backendBatchInterval >= .zero else { throw ConfigurationError("--backend-batch-interval must not be negative") }
        guard heartbeatInterval > 0, electionTimeout > 0 else {
            throw ConfigurationError("--heartbeat-interval and --election-timeout must be positive")
        }
        guard electionTimeout >= 5 * heartbeatInterval else {
            throw ConfigurationError(
                "--election-timeout[\(electionTimeout)ms] should be at least as 5 times as --heartbeat-interval[\(heartbeatInterval)ms]")
        }
        guard maxLearners >= 1 else { throw ConfigurationError("--max-learners: \(maxLearners) must be at least 1") }
        guard electionTimeout <= 50000 else {
            throw ConfigurationError("--election-timeout[\(electionTimeout)ms] is too long, and should be set less than 50 seconds")
        }
        // etcd falls back to the default cost with a warning; a typo should not weaken passwords silently.
        guard PasswordHasher.costs.contains(bcryptCost) else {
            throw ConfigurationError("--bcrypt-cost: \(bcryptCost) is outside bcrypt's range \(PasswordHasher.costs.lowerBound) to \(PasswordHasher.costs.upperBound)")
        }
        for url in try listenMetricsURLs.map(ClientListenURL.init) {
            guard case .tcp = url.address else {
                throw ConfigurationError("--listen-metrics-urls: \(url.url) is not an http:// or https:// URL")
            }
        }
        // As etcd: listen URLs name an IP address (or `localhost`), never a host name, whose
        // addresses would not say which one to bind.
        for url in listenPeerURLs + listenClientURLs + listenClientHTTPURLs + listenMetricsURLs where !url.hasPrefix("unix") {
            guard let host = URLComponents(string: url)?.addressHost, host != "localhost" else { continue }
            if (try? SocketAddress(ipAddress: host, port: 0)) == nil {
                throw ConfigurationError("expected IP in URL for binding (\(url))")
            }
        }
        for url in listenClientHTTPURLs where listenClientURLs.contains(url) {
            throw ConfigurationError("cannot bind both --listen-client-urls and --listen-client-http-urls on the same url \(url)")
        }
        for url in try (listenClientURLs + listenClientHTTPURLs + listenMetricsURLs).map(ClientListenURL.init)
        where url.isSecure && !clientTLS.isConfigured {
            throw ConfigurationError(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url \(url.url) with HTTPS scheme")
        }
        do {
            try TLSProtocolSettings.validate(
                minimum: clientTLS.minimumVersion, maximum: clientTLS.maximumVersion, cipherSuites: clientTLS.cipherSuites)
        } catch {
            throw ConfigurationError(error.description)
        }
    }

    /// The data directory as the member uses it.
    var resolvedDataDirectory: String { dataDirectory ?? "\(name).etcd" }

    /// The member's own configuration (the parts ``EtcdServer`` takes).
    package var memberConfiguration: EtcdServer.Configuration {
        var configuration = EtcdServer.Configuration(
            name: name, dataDirectory: resolvedDataDirectory, initialCluster: initialCluster,
            initialClusterToken: initialClusterToken, advertiseClientURLs: advertiseClientURLs)
        configuration.listenPeerURLs = listenPeerURLs
        configuration.initialAdvertisePeerURLs = initialAdvertisePeerURLs
        configuration.joinExistingCluster = initialClusterState == .existing
        configuration.strictReconfigCheck = strictReconfigCheck
        configuration.maxLearners = maxLearners
        configuration.autoPromoteLearners = autoPromoteLearners
        configuration.onRemovedFromCluster = onRemovedFromCluster
        configuration.heartbeatInterval = .milliseconds(heartbeatInterval)
        configuration.electionTimeout = .milliseconds(electionTimeout)
        configuration.maxRequestBytes = maxRequestBytes
        configuration.maxTxnOperations = maxTxnOperations
        // 0 keeps the 2 GiB default; a negative quota means none (etcd).
        if quotaBackendBytes != 0 { configuration.quotaBackendBytes = quotaBackendBytes }
        if backendBatchInterval > .zero { configuration.backendBatchInterval = backendBatchInterval }
        if backendBatchLimit != 0 { configuration.backendBatchLimit = backendBatchLimit }
        configuration.snapshotCount = max(snapshotCount, 1)
        configuration.maxSnapshots = maxSnapshots
        configuration.snapshotCatchUpEntries = snapshotCatchUpEntries
        configuration.watchProgressNotifyInterval = watchProgressNotifyInterval
        configuration.warningApplyDuration = warningApplyDuration
        configuration.warningUnaryRequestDuration = warningUnaryRequestDuration
        configuration.corruptCheckInterval = corruptCheckTime
        configuration.autoCompaction = autoCompaction
        configuration.forceNewCluster = forceNewCluster
        configuration.unsafeNoFsync = unsafeNoFsync
        configuration.compactHashCheckInterval = compactHashCheckTime
        configuration.maxWALs = maxWALs
        configuration.walDirectory = walDirectory
        configuration.walSegmentSize = walSegmentBytes
        configuration.authTokenTTL = .seconds(authTokenTTL > 0 ? authTokenTTL : 300)
        configuration.bcryptCost = bcryptCost
        return configuration
    }
}
