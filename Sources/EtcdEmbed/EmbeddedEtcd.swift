import Auth
import BoundSockets
import EtcdAPI
import EtcdGateway
import EtcdHTTP
import EtcdMetrics
import EtcdServer
import Foundation
import GRPCWire
import Logging
import NIOCore
import TransportSecurity

/// A running swift-etcd member with its client listeners: etcd's `embed.Etcd`. The
/// `swift-etcd` executable is this plus flags, logging and signals; tests and Swift programs
/// start one in their own process.
public final class EmbeddedEtcd: Sendable {
    /// The member: Raft, the log, the store, the peer transport.
    package let server: EtcdServer
    private let listeners: [GRPCServer]
    private let metricsListeners: [GRPCServer]
    private let gatewayChannel: GatewayChannel
    private let logger: Logger

    private init(
        server: EtcdServer, listeners: [GRPCServer], metricsListeners: [GRPCServer], gatewayChannel: GatewayChannel, logger: Logger
    ) {
        self.server = server
        self.listeners = listeners
        self.metricsListeners = metricsListeners
        self.gatewayChannel = gatewayChannel
        self.logger = logger
    }

    /// This member's ID, as etcd computes it (hex in logs and `etcdctl member list`).
    public var memberID: UInt64 { server.memberID }
    public var clusterID: UInt64 { server.clusterID }

    /// Where the client listeners listen, in the order of `--listen-client-urls`, then
    /// `--listen-client-http-urls`.
    public var clientAddresses: [SocketAddress] { listeners.compactMap(\.localAddress) }

    /// Where the `--listen-metrics-urls` listeners listen, in their order.
    public var metricsAddresses: [SocketAddress] { metricsListeners.compactMap(\.localAddress) }

    /// Registers this member with `discovery` and waits for the others; returns the initial
    /// cluster they make. A refusal stops the start with etcd's message, before anything is
    /// written to the data directory.
    private static func join(_ discovery: any ClusterDiscovery, _ configuration: EmbedConfiguration, logger: Logger) async throws -> String {
        let token = discovery.token
        let peerURLs = configuration.initialAdvertisePeerURLs
        let memberID = ClusterConfiguration.memberID(peerURLs: peerURLs, token: token)
        logger.info("registering with the discovery service", metadata: ["discovery-token": "\(token)", "member-id": "\(String(memberID, radix: 16))"])
        do {
            return try await discovery.join(
                memberID: memberID, entry: peerURLs.map { "\(configuration.name)=\($0)" }.joined(separator: ","), logger: logger)
        } catch {
            switch error {
            case .duplicateID:
                logger.warning("member has been registered with discovery service", metadata: [
                    "name": "\(configuration.name)", "discovery-token": "\(token)",
                ])
                logger.warning("but could not find valid cluster configuration", metadata: ["data-dir": "\(configuration.resolvedDataDirectory)"])
                logger.warning("check data dir if previous bootstrap succeeded")
                logger.warning("or use a new discovery token if previous bootstrap failed")
            case .duplicateName:
                logger.warning("member with duplicated name has already been registered", metadata: ["discovery-token": "\(token)"])
                logger.warning("cURL the discovery token URL for details")
                logger.warning("do not reuse discovery token; generate a new one to bootstrap a cluster")
            default:
                logger.warning("failed to bootstrap; discovery token was already used", metadata: ["discovery-token": "\(token)"])
                logger.warning("do not reuse discovery token; generate a new one to bootstrap a cluster")
            }
            throw ConfigurationError("failed to join discovery cluster (\(error))")
        }
    }

    /// Opens the data directory, starts the member, then listens on every client URL, logging
    /// what etcd logs as it starts.
    public static func start(_ configuration: EmbedConfiguration, logger: Logger = Logger(label: "swift-etcd")) async throws
        -> EmbeddedEtcd
    {
        try configuration.validate()
        let urls = try configuration.listenClientURLs.map(ClientListenURL.init)
        let httpURLs = try configuration.listenClientHTTPURLs.map(ClientListenURL.init)
        let metricsURLs = try configuration.listenMetricsURLs.map(ClientListenURL.init)
        var member = configuration.memberConfiguration
        let clientTLS = try clientCredentials(configuration, urls: urls + httpURLs + metricsURLs, logger: logger)
        member.peerTLS = try peerCredentials(configuration, logger: logger)
        member.peerHandshakeTimeout = configuration.tlsHandshakeTimeout
        // Every listener is bound before the data directory is touched (etcd binds first): a
        // port in use must not leave a new member's log behind.
        member.peerListenAddresses = try EtcdServer.bindPeerListeners(member)
        // With --listen-client-http-urls, as in etcd, the client URLs serve gRPC alone.
        let clientSockets = try (urls.map { ($0, true) } + httpURLs.map { ($0, false) }).map {
            (url, servesGRPC) throws(ConfigurationError) in (url, servesGRPC, try url.bind())
        }
        let metricsSockets = try metricsURLs.map { url throws(ConfigurationError) in (url, try url.bind()) }
        if let discovery = configuration.clusterDiscovery, !member.hasLog {
            // As etcd: the discovery's token is the cluster token, from which members derive their IDs.
            member.initialClusterToken = discovery.token
            discovery.announce(logger)
            member.initialCluster = try await join(discovery, configuration, logger: logger)
        }
        if let discovery = configuration.discoverySRV {
            member.initialCluster = try discovery.initialCluster(
                name: configuration.name, advertisedPeerURLs: configuration.initialAdvertisePeerURLs, logger: logger)
        }
        let metrics = EtcdMetrics()
        // SWIFT_ETCD_BENCHMARK_NO_METRICS=1 records nothing as it happens (no histograms, no gRPC
        // counters): only for measuring what recording costs (scripts/metrics-cost.sh).
        let recordsMetrics = ProcessInfo.processInfo.environment["SWIFT_ETCD_BENCHMARK_NO_METRICS"] != "1"
        if recordsMetrics { member.metricHooks = metrics.hooks }
        if case .jwt(let options) = configuration.authToken {
            do {
                member.jwtTokens = try await JWTTokens.load(options)
            } catch let failure as AuthTokenOptions.Failure {
                throw ConfigurationError("--auth-token: \(failure.description)")
            }
        }
        logger.info("starting an etcd server", metadata: [
            "name": "\(configuration.name)", "data-dir": "\(member.dataDirectory)", "etcd-version": "\(EtcdServer.version)",
            "max-request-bytes": "\(configuration.maxRequestBytes)", "max-txn-ops": "\(configuration.maxTxnOperations)",
            "snapshot-count": "\(configuration.snapshotCount)", "max-snapshots": "\(configuration.maxSnapshots)",
            "max-wals": "\(configuration.maxWALs)", "wal-dir": "\(configuration.walDirectory ?? "")",
        ])
        if configuration.unsafeNoFsync {
            logger.warning("--unsafe-no-fsync is set: the log is never synced, and a machine crash may lose acknowledged writes")
        }
        let server = try EtcdServer(member)
        if configuration.initialCorruptCheck {
            // Blocks while the peers answer (20 s at most): off the caller's executor.
            let check = await withCheckedContinuation { continuation in
                DispatchQueue.global().async { continuation.resume(returning: Result { try server.checkForCorruptionAtStart() }) }
            }
            if case .failure(let error) = check {
                server.stop()
                throw error
            }
        }
        logger.info("opened backend db", metadata: [
            "path": "\(member.dataDirectory)/member/snap/backend.sqlite", "revision": "\(server.currentRevision)",
        ])
        let router = EtcdRouter.make(serving: server)
        metrics.attach(server)
        let grpcMetrics: [any ServerInterceptor] =
            recordsMetrics ? [GRPCMetricsInterceptor(metrics: metrics, extensive: configuration.extensiveMetrics)] : []
        let requestStats = RequestStatsInterceptor(RequestStats(warning: configuration.warningUnaryRequestDuration))
        var gatewayConfiguration = GRPCServer.Configuration()
        gatewayConfiguration.limits = EtcdRouter.messageLimits(for: server)
        gatewayConfiguration.streamsEndAtShutdown = GRPCStatus(EtcdError.stopped)
        gatewayConfiguration.interceptor = ServerInterceptors(grpcMetrics + [
            AuthInterceptor(server: server, certificateIdentities: configuration.clientTLS.clientCertAuth, commonNameForwarded: true),
            requestStats,
        ])
        let gatewayChannel: GatewayChannel
        do {
            gatewayChannel = try await GatewayChannel.start(router: router, configuration: gatewayConfiguration)
        } catch {
            server.stop()
            throw error
        }
        // Health, version, metrics and the /v3 gateway over HTTP/1.1 on the same ports.
        let gateway = Gateway(channel: gatewayChannel, maximumBodyBytes: 2 * EtcdRouter.messageLimits(for: server).maximumReceiveMessageSize)
        // Base64 makes a value a third longer in JSON: a body twice the gRPC limit is surely
        // too large; below that, the member refuses a request over --max-request-bytes itself.
        let http = HTTPService(
            endpoints: ClientEndpoints(
                server: server, metrics: metrics, gateway: gateway,
                access: HTTPAccessRules(origins: configuration.corsOrigins, hosts: configuration.hostWhitelist)),
            maximumBodyBytes: 2 * EtcdRouter.messageLimits(for: server).maximumReceiveMessageSize)
        var listeners: [GRPCServer] = []
        var metricsListeners: [GRPCServer] = []
        do {
            for (url, servesGRPC, socket) in clientSockets {
                var grpc = GRPCServer.Configuration()
                grpc.boundSocket = socket
                grpc.servesGRPC = servesGRPC
                grpc.limits = EtcdRouter.messageLimits(for: server)
                grpc.maximumConcurrentStreams = Int(configuration.maxConcurrentStreams == 0 ? .max : configuration.maxConcurrentStreams)
                grpc.keepalive = configuration.keepalivePolicy
                grpc.http1 = servesGRPC && !httpURLs.isEmpty ? nil : http
                grpc.interceptor = ServerInterceptors(grpcMetrics + [
                    AuthInterceptor(server: server, certificateIdentities: configuration.clientTLS.clientCertAuth), requestStats,
                ])
                // Watches and keep-alives end at once when the member stops, so their clients
                // fail over to another member instead of waiting out the grace period.
                grpc.streamsEndAtShutdown = GRPCStatus(EtcdError.stopped)
                grpc.onRejectedConnection = { reason, address in
                    logger.warning("rejected connection on client endpoint", metadata: [
                        "remote-addr": "\(address?.hostAndPort ?? "")", "error": "\(reason)",
                    ])
                }
                if url.isSecure, let clientTLS {
                    grpc.security = SecuredListener(
                        credentials: clientTLS, handshakeTimeout: .nanoseconds(
                            Int64(configuration.tlsHandshakeTimeout / .nanoseconds(1))))
                }
                // Bound now, served once the member is ready (below).
                grpc.acceptsAtStart = false
                do {
                    listeners.append(try await GRPCServer.start(router: router, configuration: grpc))
                } catch {
                    throw url.cannotListen(error)
                }
            }
            // etcd's --listen-metrics-urls: /metrics and the health endpoints alone, HTTP/1.1 only.
            let metricsHTTP = HTTPService(endpoints: MetricsEndpoints(server: server, metrics: metrics), maximumBodyBytes: 0)
            for (url, socket) in metricsSockets {
                var listener = GRPCServer.Configuration()
                listener.boundSocket = socket
                listener.http1 = metricsHTTP
                listener.servesGRPC = false
                if url.isSecure, let clientTLS {
                    listener.security = SecuredListener(
                        credentials: clientTLS, handshakeTimeout: .nanoseconds(Int64(configuration.tlsHandshakeTimeout / .nanoseconds(1))))
                }
                do {
                    metricsListeners.append(try await GRPCServer.start(router: ServerRouter(), configuration: listener))
                } catch {
                    throw url.cannotListen(error)
                }
                logger.info("serving metrics", metadata: ["address": "\(url.url)"])
            }
        } catch {
            for listener in listeners + metricsListeners { await listener.shutdown(gracePeriod: .zero) }
            await gatewayChannel.stop(gracePeriod: .zero)
            server.stop()
            throw error
        }
        let etcd = EmbeddedEtcd(
            server: server, listeners: listeners, metricsListeners: metricsListeners, gatewayChannel: gatewayChannel, logger: logger)
        Task { await etcd.serveWhenReady(urls: clientSockets.map { ($0.0, $0.1 ? "grpc" : "http") }, name: configuration.name) }
        return etcd
    }

    /// Once the member has published itself through Raft (etcd's `ReadyNotify`), starts taking
    /// client connections (those that came meanwhile waited in the backlog), says so in etcd's
    /// words and tells systemd (`READY=1` to `$NOTIFY_SOCKET`), as etcd does at that moment.
    private func serveWhenReady(urls: [(url: ClientListenURL, traffic: String)], name: String) async {
        guard await server.readiness.wait() else { return }
        let memberID = String(server.memberID, radix: 16)
        logger.info("published local member to cluster through raft", metadata: [
            "local-member-id": "\(memberID)", "cluster-id": "\(String(server.clusterID, radix: 16))", "name": "\(name)",
        ])
        for (listener, (url, traffic)) in zip(listeners, urls) {
            do {
                try await listener.startAccepting()
            } catch {
                logger.warning("cannot serve client requests", metadata: ["address": "\(url.url)", "error": "\(error)"])
                continue
            }
            logger.info("ready to serve client requests", metadata: ["local-member-id": "\(memberID)"])
            if url.isSecure {
                logger.info("serving client traffic securely", metadata: ["traffic": "\(traffic)", "address": "\(url.url)"])
            } else {
                logger.warning("serving client traffic insecurely; this is strongly discouraged!", metadata: [
                    "traffic": "\(traffic)", "address": "\(url.url)",
                ])
            }
        }
        SystemdNotify.ready(logger: logger)
    }

    /// Client TLS for the `https` and `unixs` listeners, read and checked before anything starts.
    private static func clientCredentials(_ configuration: EmbedConfiguration, urls: [ClientListenURL], logger: Logger)
        throws(ConfigurationError) -> TLSCredentials?
    {
        guard urls.contains(where: \.isSecure) else { return nil }
        // The server picks the first of these the client offers: gRPC clients offer only `h2`;
        // curl, browsers and Prometheus offer both and get HTTP/1.1, which the health, metrics
        // and gateway endpoints speak (etcd serves them over HTTP/2 too).
        return try credentials(
            configuration.clientTLS, configuration: configuration, hosts: urls.compactMap(\.host),
            applicationProtocols: ["http/1.1", "h2"], logger: logger)
    }

    /// Peer TLS, when any is configured: `https` peer URLs listen and dial with it.
    private static func peerCredentials(_ configuration: EmbedConfiguration, logger: Logger) throws(ConfigurationError)
        -> TLSCredentials?
    {
        guard configuration.peerTLS.isConfigured else { return nil }
        let hosts = configuration.listenPeerURLs.compactMap { URLComponents(string: $0)?.addressHost }
        return try credentials(configuration.peerTLS, configuration: configuration, hosts: hosts, logger: logger)
    }

    private static func credentials(
        _ info: TLSInfo, configuration: EmbedConfiguration, hosts: [String], applicationProtocols: [String] = [],
        logger: Logger
    ) throws(ConfigurationError) -> TLSCredentials {
        logger.info("starting with \(info.side.rawValue) TLS", metadata: [
            "cert-file": "\(info.certFile)", "key-file": "\(info.keyFile)", "trusted-ca-file": "\(info.trustedCAFile)",
            "client-cert-auth": "\(info.clientCertAuth)", "crl-file": "\(info.crlFile)", "auto-tls": "\(info.autoTLS)",
            "cipher-suites": "\(info.cipherSuites)",
        ])
        do {
            return try TLSCredentials(
                info, autoTLSDirectory: "\(configuration.resolvedDataDirectory)/fixtures/\(info.side.rawValue)", hosts: hosts,
                applicationProtocols: applicationProtocols, logger: logger)
        } catch {
            throw ConfigurationError(error.description)
        }
    }

    /// Lets the calls in flight finish (5 s at most), then stops the member.
    public func stop() async {
        for listener in listeners + metricsListeners { await listener.shutdown(gracePeriod: .seconds(5)) }
        await gatewayChannel.stop(gracePeriod: .seconds(1))
        server.stop()
        logger.info("stopped serving", metadata: ["local-member-id": "\(String(server.memberID, radix: 16))"])
    }
}

/// A client listener's TLS: the member's credentials, read again as they rotate.
private struct SecuredListener: ServerConnectionSecurity {
    let credentials: TLSCredentials
    let handshakeTimeout: TimeAmount

    func secure(_ channel: any Channel) throws {
        try credentials.secureAccepted(channel, handshakeTimeout: handshakeTimeout)
    }
}
