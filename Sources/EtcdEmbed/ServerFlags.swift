import ArgumentParser
import Auth
import EtcdClient
import EtcdServer
import Foundation
import TransportSecurity

/// etcd's server flags, declared once: the command line parses them, ``flagNames`` (the names
/// the `ETCD_*` variables map to) is read off these declarations, and ``configuration()``
/// turns them into an ``EmbedConfiguration``.
public struct ServerFlags: ParsableArguments {
    public init() {}

    /// Read by the entry point before parsing (``ConfigFile``): when set, the file's settings
    /// replace every other flag and `ETCD_*` variable.
    @Option(
        name: .customLong("config-file"),
        help: "Path to the server configuration file (etcd's YAML). Other flags and ETCD_* variables are then ignored.")
    var configFile: String?

    @Option(name: .customLong("name"), help: "Human-readable name for this member.")
    var name = "default"

    @Option(name: .customLong("data-dir"), help: "Path to the data directory (default: <name>.etcd).")
    var dataDir: String?

    @Option(name: .customLong("listen-client-urls"), help: "Comma-separated URLs to listen on for client traffic.")
    var listenClientURLs = "http://localhost:2379"

    @Option(
        name: .customLong("listen-client-http-urls"),
        help: "Comma-separated URLs to listen on for HTTP-only client traffic (health, /metrics, the /v3 gateway); when set, --listen-client-urls serve gRPC alone.")
    var listenClientHTTPURLs = ""

    @Option(name: .customLong("advertise-client-urls"), help: "Comma-separated client URLs to advertise to the cluster.")
    var advertiseClientURLs = "http://localhost:2379"

    @Option(
        name: .customLong("listen-metrics-urls"),
        help: "Comma-separated http:// or https:// URLs that serve only /metrics and the health endpoints.")
    var listenMetricsURLs = ""

    @Option(
        name: .customLong("metrics"),
        help: "Level of detail of the exported metrics: 'basic', or 'extensive' to add server-side gRPC latency histograms.")
    var metrics = "basic"

    @Option(name: .customLong("listen-peer-urls"), help: "Comma-separated URLs to listen on for peer traffic.")
    var listenPeerURLs = "http://localhost:2380"

    @Option(name: .customLong("initial-advertise-peer-urls"), help: "This member's peer URLs to advertise to the cluster.")
    var initialAdvertisePeerURLs = "http://localhost:2380"

    @Option(name: .customLong("initial-cluster"), help: "Initial cluster configuration for bootstrapping.")
    var initialCluster = "default=http://localhost:2380"

    @Option(name: .customLong("discovery"), help: "Discovery URL used to bootstrap the cluster (etcd's v2 discovery protocol).")
    var discovery: String?

    @Option(name: .customLong("discovery-proxy"), help: "HTTP proxy to use for traffic to discovery service.")
    var discoveryProxy: String?

    @Option(name: .customLong("discovery-token"), help: "V3 discovery: discovery token for the etcd cluster to be bootstrapped.")
    var discoveryToken = ""

    @Option(name: .customLong("discovery-endpoints"), help: "V3 discovery: comma-separated gRPC endpoints of the discovery service.")
    var discoveryEndpoints = ""

    @Option(name: .customLong("discovery-request-timeout"), help: "V3 discovery: timeout for discovery requests.")
    var discoveryRequestTimeout = "5s"

    @Flag(
        name: .customLong("discovery-insecure-transport"), inversion: .prefixedNo,
        help: "V3 discovery: disable transport security for client connections.")
    var discoveryInsecureTransport = true

    @Flag(
        name: .customLong("discovery-insecure-skip-tls-verify"), inversion: .prefixedNo,
        help: "V3 discovery: skip server certificate verification (this makes the connection insecure).")
    var discoveryInsecureSkipTLSVerify = false

    @Option(name: .customLong("discovery-cert"), help: "V3 discovery: identify secure client using this TLS certificate file.")
    var discoveryCert = ""

    @Option(name: .customLong("discovery-key"), help: "V3 discovery: identify secure client using this TLS key file.")
    var discoveryKey = ""

    @Option(name: .customLong("discovery-cacert"), help: "V3 discovery: verify certificates of TLS-enabled secure servers using this CA bundle.")
    var discoveryCACert = ""

    @Option(name: .customLong("discovery-user"), help: "V3 discovery: username[:password] for authentication.")
    var discoveryUser = ""

    @Option(name: .customLong("discovery-password"), help: "V3 discovery: password for authentication (if this option is used, --discovery-user option shouldn't include password).")
    var discoveryPassword = ""

    @Option(name: .customLong("discovery-srv"), help: "DNS domain used to bootstrap initial cluster (from its SRV records).")
    var discoverySRV: String?

    @Option(
        name: .customLong("discovery-srv-name"),
        help: "Suffix to the DNS srv name queried when bootstrapping using DNS ('_etcd-server-ssl-<name>._tcp').")
    var discoverySRVName = ""

    @Option(
        name: .customLong("discovery-srv-resolver"),
        help: ArgumentHelp("DNS server (ip:port) for --discovery-srv instead of /etc/resolv.conf's; for tests.", visibility: .hidden))
    var discoverySRVResolver: String?

    @Option(name: .customLong("initial-cluster-token"), help: "Initial cluster token for the etcd cluster during bootstrap.")
    var initialClusterToken = "etcd-cluster"

    @Option(name: .customLong("initial-cluster-state"), help: "Initial cluster state ('new' or 'existing').")
    var initialClusterState = "new"

    @Option(name: .customLong("heartbeat-interval"), help: "Time (in milliseconds) of a heartbeat interval.")
    var heartbeatInterval = 100

    @Option(name: .customLong("election-timeout"), help: "Time (in milliseconds) for an election to timeout.")
    var electionTimeout = 1000

    @Flag(
        name: .customLong("strict-reconfig-check"), inversion: .prefixedNo,
        help: "Reject reconfiguration requests that would cause quorum loss.")
    var strictReconfigCheck = true

    @Option(
        name: .customLong("max-learners"),
        help: "Sets the maximum number of learners that can be available in the cluster membership (give every member the same).")
    var maxLearners = 1

    @Flag(
        name: .customLong("auto-promote-learners"), inversion: .prefixedNo,
        help: "Promote a learner to a voting member once it has caught up with the leader (not in etcd).")
    var autoPromoteLearners = false

    @Option(name: .customLong("max-request-bytes"), help: "Maximum client request size in bytes the server will accept.")
    var maxRequestBytes = 1_572_864

    @Option(name: .customLong("max-txn-ops"), help: "Maximum number of operations permitted in a transaction.")
    var maxTxnOps = 128

    @Option(name: .customLong("max-concurrent-streams"), help: "Maximum number of streams each client connection may have open at once.")
    var maxConcurrentStreams: UInt32 = .max

    @Option(name: .customLong("grpc-keepalive-min-time"), help: "Shortest time a client should wait between pings to the server.")
    var grpcKeepaliveMinTime = "5s"

    @Option(
        name: .customLong("grpc-keepalive-interval"),
        help: "How long a client connection may stay idle before the server pings it to check it is alive.")
    var grpcKeepaliveInterval = "2h"

    @Option(
        name: .customLong("grpc-keepalive-timeout"),
        help: "How long the server waits for the answer to that ping before closing the connection.")
    var grpcKeepaliveTimeout = "20s"

    @Option(name: .customLong("quota-backend-bytes"), help: "Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).")
    var quotaBackendBytes: Int64 = 0

    @Option(
        name: .customLong("backend-batch-interval"),
        help: "Longest time applied writes wait before the backend commits them (0: the default, 100ms).")
    var backendBatchInterval = "0s"

    @Option(
        name: .customLong("backend-batch-limit"),
        help: "Applied changes that make the backend commit at once (0: the default, 10000).")
    var backendBatchLimit = 0

    @Option(name: .customLong("snapshot-count"), help: "Number of committed transactions to trigger a snapshot to disk.")
    var snapshotCount: UInt64 = 10_000

    @Option(
        name: [.customLong("snapshot-catchup-entries"), .customLong("experimental-snapshot-catchup-entries")],
        help: "Number of entries for a slow follower to catch-up after compacting the raft storage entries.")
    var snapshotCatchUpEntries: UInt64 = 5000

    @Option(
        name: [.customLong("watch-progress-notify-interval"), .customLong("experimental-watch-progress-notify-interval")],
        help: "Duration of periodic watch progress notifications (Go syntax: 10m, 30s, 500ms).")
    var watchProgressNotifyInterval = "10m"

    @Option(
        name: [.customLong("warning-apply-duration"), .customLong("experimental-warning-apply-duration")],
        help: "Time duration after which a warning is generated if applying a request takes more time (Go syntax: 100ms).")
    var warningApplyDuration = "100ms"

    @Option(
        name: [.customLong("warning-unary-request-duration"), .customLong("experimental-warning-unary-request-duration")],
        help: "Time duration after which a warning is generated if a unary request takes more time (Go syntax: 300ms; 0: the default).")
    var warningUnaryRequestDuration = "300ms"

    @Flag(
        name: .customLong("force-new-cluster"), inversion: .prefixedNo,
        help: "Force to create a new one member cluster (from this member's data, removing the others).")
    var forceNewCluster = false

    @Flag(
        name: .customLong("unsafe-no-fsync"), inversion: .prefixedNo,
        help: "Disables fsync, unsafe, will cause data loss (a machine crash may lose acknowledged writes).")
    var unsafeNoFsync = false

    @Option(name: .customLong("auto-compaction-mode"), help: "Interpret 'auto-compaction-retention' one of: periodic|revision.")
    var autoCompactionMode = "periodic"

    @Option(
        name: .customLong("auto-compaction-retention"),
        help: "Auto compaction retention for mvcc key value store: hours or a duration (periodic), revisions (revision). 0 disables.")
    var autoCompactionRetention = "0"

    @Flag(
        name: .customLong("experimental-initial-corrupt-check"), inversion: .prefixedNo,
        help: "Check data corruption before serving client traffic: refuse to start when the hash differs from a peer's.")
    var initialCorruptCheck = false

    @Option(
        name: [.customLong("experimental-corrupt-check-time"), .customLong("corrupt-check-time")],
        help: "Duration between the leader's corruption checks (0s: none; Go syntax: 10m, 30s).")
    var corruptCheckTime = "0s"

    @Flag(
        name: .customLong("experimental-compact-hash-check-enabled"), inversion: .prefixedNo,
        help: "Have the leader check followers' hashes at the newest compaction periodically.")
    var compactHashCheckEnabled = false

    @Option(
        name: [.customLong("experimental-compact-hash-check-time"), .customLong("compact-hash-check-time")],
        help: "Duration between the leader's compaction hash checks.")
    var compactHashCheckTime = "1m"

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

    @OptionGroup(title: "Security") var security: SecurityFlags

    @Option(
        name: .customLong("auth-token"),
        help: "Auth token type: 'simple', or 'jwt,pub-key=<file>,priv-key=<file>,sign-method=<method>,ttl=<duration>'.")
    var authToken = "simple"

    @Option(name: .customLong("auth-token-ttl"), help: "Seconds a simple token lives without use.")
    var authTokenTTL = 300

    @Option(name: .customLong("bcrypt-cost"), help: "bcrypt cost for hashing passwords (4 to 31).")
    var bcryptCost = PasswordHasher.defaultCost

    @Option(name: .customLong("logger"), help: "Logger: only 'zap' (structured JSON) is supported.")
    var logger = "zap"

    @Option(name: .customLong("log-level"), help: "Log level: debug, info, warn, error, panic, or fatal.")
    var logLevel = "info"

    @Option(name: .customLong("log-outputs"), help: "Comma-separated log outputs: stderr, stdout, or file paths.")
    var logOutputs = "default"

    @Option(name: .customLong("log-format"), help: "Configures log format. Only supports json, console.")
    var logFormat = "json"

    @Flag(
        name: .customLong("enable-log-rotation"), inversion: .prefixedNo,
        help: "Enable log rotation of a single log-outputs file target.")
    var enableLogRotation = false

    @Option(
        name: .customLong("log-rotation-config-json"),
        help: "Configures log rotation if enabled with a JSON logger config. MaxSize(MB), MaxAge(days,0=no limit), MaxBackups(0=no limit), LocalTime(use computers local time), Compress(gzip).")
    var logRotationConfigJSON = LogRotation.defaultJSON

    /// Every long flag declared above (hidden ones included), without the dashes: what an
    /// `ETCD_*` variable may name.
    public static let flagNames = Set(declaredFlags.map(\.name))

    /// Each long flag in the help text (hidden ones included, every name of a flag with
    /// several: `--experimental-corrupt-check-time, --corrupt-check-time`), and whether it is a
    /// boolean one (shown as `--flag/--no-flag`).
    private static let declaredFlags: [(name: String, isBoolean: Bool)] = {
        let help = helpMessage(includeHidden: true, columns: 10_000)
        return help.split(separator: "\n").flatMap { line -> [(name: String, isBoolean: Bool)] in
            var rest = line.drop { $0 == " " }
            var flags: [(name: String, isBoolean: Bool)] = []
            while rest.hasPrefix("--") {
                let name = rest.dropFirst(2).prefix { $0.isLetter || $0.isNumber || $0 == "-" }
                guard name != "help" else { return [] }
                rest = rest.dropFirst(2 + name.count)
                flags.append((String(name), rest.hasPrefix("/--no-")))
                guard rest.hasPrefix(", --") else { break }
                rest = rest.dropFirst(2)
            }
            return flags
        }
    }()

    /// The flags as an ``EmbedConfiguration``, refused with the flag's name when a value is
    /// not one etcd takes, and checked together (``EmbedConfiguration/validate()``).
    public func configuration() throws(ConfigurationError) -> EmbedConfiguration {
        let configuration = try parsedConfiguration()
        try configuration.validate()
        return configuration
    }

    /// The flags as an ``EmbedConfiguration``, each value parsed (what Go's flag package
    /// refuses as it parses etcd's flags), not yet checked together.
    public func parsedConfiguration() throws(ConfigurationError) -> EmbedConfiguration {
        // Unsigned in etcd: Go's flag package refuses a negative value as it parses.
        for (flag, value) in [
            ("heartbeat-interval", heartbeatInterval), ("election-timeout", electionTimeout),
            ("max-request-bytes", maxRequestBytes), ("max-txn-ops", maxTxnOps), ("max-snapshots", maxSnapshots),
            ("max-wals", maxWALs), ("auth-token-ttl", authTokenTTL), ("bcrypt-cost", bcryptCost),
            ("self-signed-cert-validity", security.selfSignedCertValidity),
        ] where value < 0 {
            throw ConfigurationError("invalid value \"\(value)\" for flag -\(flag): parse error")
        }
        // etcd parses --cors as URLs (besides `*`); a port is not required here (see HTTPAccessRules).
        for origin in Self.list(security.cors) where origin != "*" {
            let url = URLComponents(string: origin)
            guard let scheme = url?.scheme, ["http", "https", "unix", "unixs"].contains(scheme) else {
                throw ConfigurationError("invalid value \"\(security.cors)\" for flag -cors: URL scheme must be http, https, unix, or unixs: \(origin)")
            }
            guard url?.path.isEmpty ?? true else {
                throw ConfigurationError("invalid value \"\(security.cors)\" for flag -cors: URL must not contain a path: \(origin)")
            }
        }
        guard logger == "zap" else { throw ConfigurationError("--logger: only 'zap' is supported, got '\(logger)'") }
        guard let level = JSONLogHandler.level(named: logLevel) else {
            throw ConfigurationError("--log-level: '\(logLevel)' is not one of debug, info, warn, error, panic, fatal")
        }
        guard let state = EmbedConfiguration.ClusterState(rawValue: initialClusterState) else {
            throw ConfigurationError("--initial-cluster-state: '\(initialClusterState)' is not 'new' or 'existing'")
        }
        guard let interval = GoDuration.parse(watchProgressNotifyInterval), interval > .zero else {
            throw ConfigurationError(
                "--experimental-watch-progress-notify-interval: '\(watchProgressNotifyInterval)' is not a positive duration")
        }
        guard let batchInterval = GoDuration.parse(backendBatchInterval), batchInterval >= .zero else {
            throw ConfigurationError("--backend-batch-interval: '\(backendBatchInterval)' is not a duration of 0 or more")
        }
        guard let corruptCheck = GoDuration.parse(corruptCheckTime), corruptCheck >= .zero else {
            throw ConfigurationError("--experimental-corrupt-check-time: '\(corruptCheckTime)' is not a duration")
        }
        guard let applyWarning = GoDuration.parse(warningApplyDuration), applyWarning > .zero else {
            throw ConfigurationError("--warning-apply-duration: '\(warningApplyDuration)' is not a positive duration")
        }
        guard let unaryWarning = GoDuration.parse(warningUnaryRequestDuration), unaryWarning >= .zero else {
            throw ConfigurationError("--warning-unary-request-duration: '\(warningUnaryRequestDuration)' is not a duration of 0 or more")
        }
        guard let compactHashCheck = GoDuration.parse(compactHashCheckTime), compactHashCheck > .zero else {
            throw ConfigurationError("--experimental-compact-hash-check-time: '\(compactHashCheckTime)' is not a positive duration")
        }
        let keepalive = try [
            ("grpc-keepalive-min-time", grpcKeepaliveMinTime), ("grpc-keepalive-interval", grpcKeepaliveInterval),
            ("grpc-keepalive-timeout", grpcKeepaliveTimeout),
        ].map { (flag, value) throws(ConfigurationError) -> Duration in
            guard let duration = GoDuration.parse(value) else { throw ConfigurationError("--\(flag): '\(value)' is not a duration") }
            return duration
        }
        guard metrics == "basic" || metrics == "extensive" else {
            throw ConfigurationError("--metrics: '\(metrics)' is not 'basic' or 'extensive'")
        }
        var configuration = EmbedConfiguration()
        configuration.name = name
        configuration.extensiveMetrics = metrics == "extensive"
        configuration.dataDirectory = dataDir
        configuration.listenClientURLs = Self.list(listenClientURLs)
        configuration.advertiseClientURLs = Self.list(advertiseClientURLs)
        configuration.listenClientHTTPURLs = Self.list(listenClientHTTPURLs)
        configuration.listenMetricsURLs = Self.list(listenMetricsURLs)
        configuration.corsOrigins = Self.list(security.cors)
        configuration.hostWhitelist = Self.list(security.hostWhitelist)
        configuration.listenPeerURLs = Self.list(listenPeerURLs)
        configuration.initialAdvertisePeerURLs = Self.list(initialAdvertisePeerURLs)
        configuration.initialCluster = initialCluster
        let srv = discoverySRV.flatMap { $0.isEmpty ? nil : $0 }
        let url = discovery.flatMap { $0.isEmpty ? nil : $0 }
        // etcd's default --initial-cluster is the one a member alone would have.
        let endpoints = Self.list(discoveryEndpoints)
        let bootstraps = [initialCluster != "default=http://localhost:2380", srv != nil, url != nil, !endpoints.isEmpty]
            .filter { $0 }.count
        guard bootstraps <= 1 else {
            throw ConfigurationError(
                "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \"discovery\", \"discovery-endpoints\" or \"discovery-srv\"")
        }
        if let srv {
            configuration.discoverySRV = SRVDiscovery(domain: srv, serviceName: discoverySRVName, resolver: discoverySRVResolver)
        }
        if let url {
            configuration.discovery = URLDiscovery(url: url, proxy: discoveryProxy.flatMap { $0.isEmpty ? nil : $0 })
        }
        if !endpoints.isEmpty {
            configuration.v3Discovery = try v3Discovery(endpoints: endpoints)
        }
        configuration.initialClusterToken = initialClusterToken
        configuration.initialClusterState = state
        configuration.heartbeatInterval = heartbeatInterval
        configuration.electionTimeout = electionTimeout
        configuration.strictReconfigCheck = strictReconfigCheck
        configuration.maxLearners = maxLearners
        configuration.autoPromoteLearners = autoPromoteLearners
        configuration.maxRequestBytes = maxRequestBytes
        configuration.maxTxnOperations = maxTxnOps
        configuration.maxConcurrentStreams = maxConcurrentStreams
        (configuration.grpcKeepaliveMinTime, configuration.grpcKeepaliveInterval, configuration.grpcKeepaliveTimeout) =
            (keepalive[0], keepalive[1], keepalive[2])
        configuration.quotaBackendBytes = quotaBackendBytes
        configuration.backendBatchInterval = batchInterval
        configuration.backendBatchLimit = backendBatchLimit
        configuration.snapshotCount = snapshotCount
        configuration.snapshotCatchUpEntries = snapshotCatchUpEntries
        configuration.watchProgressNotifyInterval = interval
        configuration.warningApplyDuration = applyWarning
        // etcd takes 0 as its default.
        configuration.warningUnaryRequestDuration = unaryWarning == .zero ? .milliseconds(300) : unaryWarning
        configuration.initialCorruptCheck = initialCorruptCheck
        configuration.forceNewCluster = forceNewCluster
        configuration.unsafeNoFsync = unsafeNoFsync
        configuration.autoCompaction = try AutoCompactor.parse(mode: autoCompactionMode, retention: autoCompactionRetention) {
            GoDuration.parse($0)
        }
        configuration.corruptCheckTime = corruptCheck > .zero ? corruptCheck : nil
        configuration.compactHashCheckTime = compactHashCheckEnabled ? compactHashCheck : nil
        configuration.maxSnapshots = maxSnapshots
        configuration.maxWALs = maxWALs
        configuration.walDirectory = walDir
        configuration.walSegmentBytes = walSegmentBytes
        configuration.logLevel = level
        configuration.logOutputs = Self.list(logOutputs)
        configuration.logRotationConfigJSON = enableLogRotation ? logRotationConfigJSON : nil
        configuration.logFormat = logFormat
        (configuration.clientTLS, configuration.peerTLS) = try security.tlsInfo()
        do {
            configuration.authToken = try AuthTokenOptions(parsing: authToken) { GoDuration.parse($0).map { Double($0 / .milliseconds(1)) / 1000 } }
        } catch {
            throw ConfigurationError("--auth-token: \(error.description)")
        }
        configuration.authTokenTTL = authTokenTTL
        configuration.bcryptCost = bcryptCost
        return configuration
    }

    /// The flags that take no value (`--client-cert-auth`); Go also accepts `--flag=true` and
    /// `--flag=false` for them, which ``goBooleanSyntax(_:)`` turns into ours.
    public static let booleanFlagNames = Set(declaredFlags.filter(\.isBoolean).map(\.name))

    /// Rewrites Go's `--flag=true` / `--flag=false` for boolean flags as `--flag` / `--no-flag`.
    public static func goBooleanSyntax(_ arguments: [String]) -> [String] {
        arguments.map { argument in
            guard argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") else { return argument }
            let name = String(argument[argument.index(argument.startIndex, offsetBy: 2)..<equals])
            guard booleanFlagNames.contains(name) else { return argument }
            switch argument[argument.index(after: equals)...].lowercased() {
            case "true", "1", "t": return "--\(name)"
            case "false", "0", "f": return "--no-\(name)"
            default: return argument
            }
        }
    }

    /// The `--discovery-*` client settings of etcd 3.6's v3 discovery.
    private func v3Discovery(endpoints: [String]) throws(ConfigurationError) -> V3Discovery {
        guard !discoveryToken.isEmpty else {
            throw ConfigurationError("--discovery-token must be set when --discovery-endpoints is set")
        }
        guard let requestTimeout = GoDuration.parse(discoveryRequestTimeout), requestTimeout > .zero else {
            throw ConfigurationError("--discovery-request-timeout: '\(discoveryRequestTimeout)' is not a duration")
        }
        var discovery = V3Discovery(token: discoveryToken, endpoints: endpoints)
        discovery.requestTimeout = requestTimeout
        let secure = !discoveryInsecureTransport || !discoveryCACert.isEmpty || !discoveryCert.isEmpty
            || endpoints.contains { $0.hasPrefix("https://") }
        if secure {
            var tls = EtcdClient.TLSOptions(
                caFile: discoveryCACert.isEmpty ? nil : discoveryCACert, certFile: discoveryCert.isEmpty ? nil : discoveryCert,
                keyFile: discoveryKey.isEmpty ? nil : discoveryKey)
            tls.insecureSkipVerify = discoveryInsecureSkipTLSVerify
            discovery.tls = tls
        }
        if !discoveryUser.isEmpty {
            let parts = discoveryUser.split(separator: ":", maxSplits: 1).map(String.init)
            discovery.credentials = EtcdCredentials(user: parts[0], password: parts.count == 2 ? parts[1] : discoveryPassword)
        }
        return discovery
    }

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map(String.init)
    }
}
