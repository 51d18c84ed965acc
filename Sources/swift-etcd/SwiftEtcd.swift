import ArgumentParser
import EtcdAPI
import EtcdServer
import GRPCWire
import NIOCore
import NIOPosix

/// The swift-etcd server: etcd's flags, one member.
@main
struct SwiftEtcd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swift-etcd",
        abstract: "A distributed, strongly consistent key-value store that speaks etcd's v3 API.")

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

    @Option(name: .customLong("max-request-bytes"), help: "Maximum client request size in bytes the server will accept.")
    var maxRequestBytes = 1_572_864

    @Option(name: .customLong("max-txn-ops"), help: "Maximum number of operations permitted in a transaction.")
    var maxTxnOps = 128

    @Option(name: .customLong("quota-backend-bytes"), help: "Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).")
    var quotaBackendBytes: Int64 = 0

    func run() async throws {
        let listeners = try listenClientURLs.split(separator: ",").map { url -> GRPCClient.Endpoint in
            guard let endpoint = GRPCClient.Endpoint(String(url)), String(url).hasPrefix("http://") else {
                throw ValidationError("--listen-client-urls: \(url) is not an http://host:port URL (TLS is not supported yet)")
            }
            return endpoint
        }
        var configuration = EtcdServer.Configuration(
            name: name, dataDirectory: dataDir ?? "\(name).etcd", initialCluster: initialCluster,
            initialClusterToken: initialClusterToken,
            advertiseClientURLs: advertiseClientURLs.split(separator: ",").map(String.init))
        configuration.maxRequestBytes = maxRequestBytes
        configuration.maxTxnOperations = maxTxnOps
        if quotaBackendBytes > 0 { configuration.quotaBackendBytes = quotaBackendBytes }
        let member: EtcdServer
        do {
            member = try EtcdServer(configuration)
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
        log("opened backend", ["data-dir": configuration.dataDirectory, "revision": "\(member.currentRevision)"])
        let router = EtcdRouter.make(serving: member)
        var servers: [GRPCServer] = []
        for listener in listeners {
            let host = listener.host == "localhost" ? "127.0.0.1" : listener.host
            var configuration = GRPCServer.Configuration(host: host, port: listener.port)
            configuration.limits = EtcdRouter.messageLimits(for: member)
            servers.append(try await GRPCServer.start(router: router, configuration: configuration))
            log("serving client traffic insecurely; this is strongly discouraged!", ["address": "\(host):\(listener.port)"])
        }
        log("ready to serve client requests", [
            "name": name, "member-id": String(member.member.id, radix: 16), "cluster-id": String(member.cluster.id, radix: 16),
        ])
        await waitForTerminationSignal()
        log("received signal; shutting down", [:])
        for server in servers { await server.shutdown(gracePeriod: .seconds(5)) }
        member.stop()
    }

    private func log(_ message: String, _ fields: [String: String]) {
        var line = #"{"level":"info","msg":"\#(message)""#
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) { line += #","\#(key)":"\#(value)""# }
        print(line + "}")
    }
}
