import ArgumentParser
import EtcdAPI
import EtcdServer
import Foundation
import GRPCWire
import Logging
import NIOCore
import NIOPosix

/// Entry point: applies etcd's `ETCD_*` environment variables, then parses the flags.
@main
enum Main {
    static func main() async {
        let arguments = EnvironmentFlags.arguments(
            Array(CommandLine.arguments.dropFirst()), environment: ProcessInfo.processInfo.environment,
            knownFlags: SwiftEtcd.flagNames,
            warn: { FileHandle.standardError.write(Data("{\"level\":\"warn\",\"msg\":\"\($0)\"}\n".utf8)) })
        await SwiftEtcd.main(arguments)
    }
}

/// The swift-etcd server: etcd's flags, one member of a cluster.
struct SwiftEtcd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swift-etcd",
        abstract: "A distributed, strongly consistent key-value store that speaks etcd's v3 API.")

    /// Every flag below, for `ETCD_*` environment variables. Keep in step with the options.
    static let flagNames: Set<String> = [
        "name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
        "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-token", "initial-cluster-state",
        "max-request-bytes", "max-txn-ops", "quota-backend-bytes", "logger", "log-level", "log-outputs",
        "snapshot-count", "max-snapshots", "max-wals", "wal-dir", "wal-segment-bytes", "heartbeat-interval",
        "election-timeout", "experimental-snapshot-catchup-entries", "experimental-watch-progress-notify-interval",
        "strict-reconfig-check", "auto-promote-learners",
    ]

    @Option(name: .customLong("name"), help: "Human-readable name for this member.")
    var name = "default"

    @Option(name: .customLong("data-dir"), help: "Path to the data directory (default: <name>.etcd).")
    var dataDir: String?

    @Option(name: .customLong("listen-client-urls"), help: "Comma-separated URLs to listen on for client traffic.")
    var listenClientURLs = "http://localhost:2379"

    @Option(name: .customLong("advertise-client-urls"), help: "Comma-separated client URLs to advertise to the cluster.")
    var advertiseClientURLs = "http://localhost:2379"

    @Option(name: .customLong("listen-peer-urls"), help: "Comma-separated URLs to listen on for peer traffic.")
    var listenPeerURLs = "http://localhost:2380"

    @Option(name: .customLong("initial-advertise-peer-urls"), help: "This member's peer URLs to advertise to the cluster.")
    var initialAdvertisePeerURLs = "http://localhost:2380"

    @Option(name: .customLong("initial-cluster"), help: "Initial cluster configuration for bootstrapping.")
    var initialCluster = "default=http://localhost:2380"

    @Option(name: .customLong("initial-cluster-token"), help: "Initial cluster token for the etcd cluster during bootstrap.")
    var initialClusterToken = "etcd-cluster"

    @Option(name: .customLong("initial-cluster-state"), help: "Initial cluster state ('new' or 'existing').")
    var initialClusterState = "new"

    @Option(name: .customLong("heartbeat-interval"), help: "Time (in milliseconds) of a heartbeat interval.")
    var heartbeatInterval = 100

    @Option(name: .customLong("election-timeout"), help: "Time (in milliseconds) for an election to timeout.")
    var electionTimeout = 1000

    @Option(name: .customLong("strict-reconfig-check"), help: "Reject reconfiguration requests that would cause quorum loss.")
    var strictReconfigCheck = true

    @Flag(name: .customLong("auto-promote-learners"), help: "Promote a learner to a voting member once it has caught up with the leader (not in etcd).")
    var autoPromoteLearners = false

    @Option(name: .customLong("max-request-bytes"), help: "Maximum client request size in bytes the server will accept.")
    var maxRequestBytes = 1_572_864

    @Option(name: .customLong("max-txn-ops"), help: "Maximum number of operations permitted in a transaction.")
    var maxTxnOps = 128

    @Option(name: .customLong("quota-backend-bytes"), help: "Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).")
    var quotaBackendBytes: Int64 = 0

    @Option(name: .customLong("snapshot-count"), help: "Number of committed transactions to trigger a snapshot to disk.")
    var snapshotCount: UInt64 = 10_000

    @Option(
        name: .customLong("experimental-snapshot-catchup-entries"),
        help: "Number of entries for a slow follower to catch-up after compacting the raft storage entries.")
    var snapshotCatchUpEntries: UInt64 = 5000

    @Option(
        name: .customLong("experimental-watch-progress-notify-interval"),
        help: "Duration of periodic watch progress notifications (Go syntax: 10m, 30s, 500ms).")
    var watchProgressNotifyInterval = "10m"

    @Option(name: .customLong("max-snapshots"), help: "Maximum number of snapshot files to retain (0 is unlimited).")
    var maxSnapshots = 5

    @Option(name: .customLong("max-wals"), help: "Maximum number of wal files to retain (0 is unlimited).")
    var maxWALs = 5

    @Option(name: .customLong("wal-dir"), help: "Path to the dedicated wal directory (default: <data-dir>/member/wal).")
    var walDir: String?

    @Option(
        name: .customLong("wal-segment-bytes"),
        help: ArgumentHelp("Size of a wal segment file; smaller only for testing rollover and purge.", visibility: .hidden))
    var walSegmentBytes = 64 * 1024 * 1024

    @Option(name: .customLong("logger"), help: "Logger: only 'zap' (structured JSON) is supported.")
    var logger = "zap"

    @Option(name: .customLong("log-level"), help: "Log level: debug, info, warn, error, panic, or fatal.")
    var logLevel = "info"

    @Option(name: .customLong("log-outputs"), help: "Comma-separated log outputs: stderr, stdout, or file paths.")
    var logOutputs = "default"

    func validate() throws {
        guard logger == "zap" else { throw ValidationError("--logger: only 'zap' is supported, got '\(logger)'") }
        guard JSONLogHandler.level(named: logLevel) != nil else {
            throw ValidationError("--log-level: '\(logLevel)' is not one of debug, info, warn, error, panic, fatal")
        }
        guard ["new", "existing"].contains(initialClusterState) else {
            throw ValidationError("--initial-cluster-state: '\(initialClusterState)' is not 'new' or 'existing'")
        }
        guard let interval = GoDuration.parse(watchProgressNotifyInterval), interval > .zero else {
            throw ValidationError(
                "--experimental-watch-progress-notify-interval: '\(watchProgressNotifyInterval)' is not a positive duration")
        }
        guard walSegmentBytes >= 4096 else { throw ValidationError("--wal-segment-bytes: must be at least 4096") }
        guard maxSnapshots >= 0, maxWALs >= 0 else { throw ValidationError("--max-snapshots and --max-wals must not be negative") }
        guard heartbeatInterval > 0, electionTimeout > 0 else {
            throw ValidationError("--heartbeat-interval and --election-timeout must be positive")
        }
        // etcd's own checks, with its wording.
        guard electionTimeout >= 5 * heartbeatInterval else {
            throw ValidationError(
                "--election-timeout[\(electionTimeout)ms] should be at least as 5 times as --heartbeat-interval[\(heartbeatInterval)ms]")
        }
        guard electionTimeout <= 50000 else {
            throw ValidationError("--election-timeout[\(electionTimeout)ms] is too long, and should be set less than 50 seconds")
        }
    }

    func run() async throws {
        let outputs = try LogOutputs(logOutputs.split(separator: ",").map(String.init))
        let level = JSONLogHandler.level(named: logLevel)!
        LoggingSystem.bootstrap { _ in JSONLogHandler(logLevel: level, outputs: outputs) }
        let log = Logger(label: "swift-etcd")

        let listeners = try listenClientURLs.split(separator: ",").map { url -> GRPCClient.Endpoint in
            guard let endpoint = GRPCClient.Endpoint(String(url)), url.hasPrefix("http://") else {
                throw ValidationError("--listen-client-urls: \(url) is not an http://host:port URL (TLS is not supported yet)")
            }
            return endpoint
        }
        var configuration = EtcdServer.Configuration(
            name: name, dataDirectory: dataDir ?? "\(name).etcd", initialCluster: initialCluster,
            initialClusterToken: initialClusterToken,
            advertiseClientURLs: advertiseClientURLs.split(separator: ",").map(String.init))
        configuration.listenPeerURLs = listenPeerURLs.split(separator: ",").map(String.init)
        configuration.joinExistingCluster = initialClusterState == "existing"
        configuration.strictReconfigCheck = strictReconfigCheck
        configuration.autoPromoteLearners = autoPromoteLearners
        // A removed member stops as if told to: the same graceful shutdown as SIGTERM.
        configuration.onRemovedFromCluster = { kill(getpid(), SIGTERM) }
        configuration.heartbeatInterval = .milliseconds(heartbeatInterval)
        configuration.electionTimeout = .milliseconds(electionTimeout)
        configuration.maxRequestBytes = maxRequestBytes
        configuration.maxTxnOperations = maxTxnOps
        if quotaBackendBytes > 0 { configuration.quotaBackendBytes = quotaBackendBytes }
        configuration.snapshotCount = max(snapshotCount, 1)
        configuration.maxSnapshots = maxSnapshots
        configuration.snapshotCatchUpEntries = snapshotCatchUpEntries
        configuration.watchProgressNotifyInterval = GoDuration.parse(watchProgressNotifyInterval) ?? .seconds(600)
        configuration.maxWALs = maxWALs
        configuration.walDirectory = walDir
        configuration.walSegmentSize = walSegmentBytes
        log.info("starting an etcd server", metadata: [
            "name": "\(name)", "data-dir": "\(configuration.dataDirectory)", "etcd-version": "\(EtcdServer.version)",
            "max-request-bytes": "\(maxRequestBytes)", "max-txn-ops": "\(maxTxnOps)",
            "snapshot-count": "\(snapshotCount)", "max-snapshots": "\(maxSnapshots)", "max-wals": "\(maxWALs)",
            "wal-dir": "\(walDir ?? "")",
        ])
        let member: EtcdServer
        do {
            member = try EtcdServer(configuration)
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
        let memberID = String(member.memberID, radix: 16)
        let clusterID = String(member.clusterID, radix: 16)
        log.info("opened backend db", metadata: [
            "path": "\(configuration.dataDirectory)/member/snap/backend.sqlite", "revision": "\(member.currentRevision)",
        ])
        log.info("published local member to cluster", metadata: [
            "local-member-id": "\(memberID)", "cluster-id": "\(clusterID)", "name": "\(name)",
        ])
        log.info("enabled capabilities for version", metadata: ["cluster-version": "3.6"])

        let router = EtcdRouter.make(serving: member)
        var servers: [GRPCServer] = []
        for listener in listeners {
            let host = listener.host == "localhost" ? "127.0.0.1" : listener.host
            var grpc = GRPCServer.Configuration(host: host, port: listener.port)
            grpc.limits = EtcdRouter.messageLimits(for: member)
            servers.append(try await GRPCServer.start(router: router, configuration: grpc))
            log.info("ready to serve client requests", metadata: ["local-member-id": "\(memberID)"])
            log.warning("serving client traffic insecurely; this is strongly discouraged!", metadata: [
                "address": "\(host):\(listener.port)",
            ])
        }
        await waitForTerminationSignal()
        log.info("received signal; shutting down")
        for server in servers { await server.shutdown(gracePeriod: .seconds(5)) }
        member.stop()
        log.info("stopped serving", metadata: ["local-member-id": "\(memberID)"])
    }
}
