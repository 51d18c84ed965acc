import EtcdAPI
import EtcdServer
import GRPCWire
import Logging
import NIOCore

/// A running swift-etcd member with its client listeners: etcd's `embed.Etcd`. The
/// `swift-etcd` executable is this plus flags, logging and signals; tests and Swift programs
/// start one in their own process.
public final class EmbeddedEtcd: Sendable {
    /// The member: Raft, the log, the store, the peer transport.
    package let server: EtcdServer
    private let listeners: [GRPCServer]
    private let logger: Logger

    private init(server: EtcdServer, listeners: [GRPCServer], logger: Logger) {
        self.server = server
        self.listeners = listeners
        self.logger = logger
    }

    /// This member's ID, as etcd computes it (hex in logs and `etcdctl member list`).
    public var memberID: UInt64 { server.memberID }
    public var clusterID: UInt64 { server.clusterID }

    /// Where the client listeners listen, in the order of `--listen-client-urls`.
    public var clientAddresses: [SocketAddress] { listeners.compactMap(\.localAddress) }

    /// Opens the data directory, starts the member, then listens on every client URL, logging
    /// what etcd logs as it starts.
    public static func start(_ configuration: EmbedConfiguration, logger: Logger = Logger(label: "swift-etcd")) async throws
        -> EmbeddedEtcd
    {
        try configuration.validate()
        let endpoints = try configuration.listenClientURLs.map { url throws(ConfigurationError) -> GRPCClient.Endpoint in
            guard let endpoint = GRPCClient.Endpoint(url) else {
                throw ConfigurationError("--listen-client-urls: \(url) is not an http://host:port URL")
            }
            return endpoint
        }
        let member = configuration.memberConfiguration
        logger.info("starting an etcd server", metadata: [
            "name": "\(configuration.name)", "data-dir": "\(member.dataDirectory)", "etcd-version": "\(EtcdServer.version)",
            "max-request-bytes": "\(configuration.maxRequestBytes)", "max-txn-ops": "\(configuration.maxTxnOperations)",
            "snapshot-count": "\(configuration.snapshotCount)", "max-snapshots": "\(configuration.maxSnapshots)",
            "max-wals": "\(configuration.maxWALs)", "wal-dir": "\(configuration.walDirectory ?? "")",
        ])
        let server = try EtcdServer(member)
        let memberID = String(server.memberID, radix: 16)
        logger.info("opened backend db", metadata: [
            "path": "\(member.dataDirectory)/member/snap/backend.sqlite", "revision": "\(server.currentRevision)",
        ])
        logger.info("published local member to cluster", metadata: [
            "local-member-id": "\(memberID)", "cluster-id": "\(String(server.clusterID, radix: 16))", "name": "\(configuration.name)",
        ])
        logger.info("enabled capabilities for version", metadata: ["cluster-version": "3.6"])
        let router = EtcdRouter.make(serving: server)
        var listeners: [GRPCServer] = []
        do {
            for endpoint in endpoints {
                let host = endpoint.host == "localhost" ? "127.0.0.1" : endpoint.host
                var grpc = GRPCServer.Configuration(host: host, port: endpoint.port)
                grpc.limits = EtcdRouter.messageLimits(for: server)
                listeners.append(try await GRPCServer.start(router: router, configuration: grpc))
                logger.info("ready to serve client requests", metadata: ["local-member-id": "\(memberID)"])
                logger.warning("serving client traffic insecurely; this is strongly discouraged!", metadata: [
                    "address": "\(host):\(endpoint.port)",
                ])
            }
        } catch {
            for listener in listeners { await listener.shutdown(gracePeriod: .zero) }
            server.stop()
            throw error
        }
        return EmbeddedEtcd(server: server, listeners: listeners, logger: logger)
    }

    /// Lets the calls in flight finish (5 s at most), then stops the member.
    public func stop() async {
        for listener in listeners { await listener.shutdown(gracePeriod: .seconds(5)) }
        server.stop()
        logger.info("stopped serving", metadata: ["local-member-id": "\(String(server.memberID, radix: 16))"])
    }
}
