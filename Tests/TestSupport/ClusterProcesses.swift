import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import NIOCore

/// A cluster of real `swift-etcd` processes on loopback ports, bootstrapped as etcd's
/// documentation does it (`--initial-cluster a=...,b=...,c=...`), each with its own data directory.
public final class ClusterProcesses: Sendable {
    public let members: [ServerProcess]
    public let names: [String]
    public let directory: URL
    /// Set when the cluster was made with partitionable links.
    public let links: PeerLinkProxies?
    private let arguments: [String]

    /// Creates (but does not start) `size` members; `extraArguments` go to every member. With
    /// `partitionable`, peer traffic goes through ``PeerLinkProxies`` so tests can cut links.
    public init(size: Int, extraArguments: [String] = [], partitionable: Bool = false) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("swift-etcd-cluster-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var members: [ServerProcess] = []
        for index in 0..<size {
            members.append(try await ServerProcess(
                dataDirectory: directory.appendingPathComponent("m\(index)"), logFile: directory.appendingPathComponent("m\(index).log")))
        }
        self.members = members
        let names = (0..<size).map { "m\($0)" }
        self.names = names
        let token = "test-cluster"
        func initialCluster(_ ports: [Int]) -> String {
            zip(names, ports).map { "\($0)=http://127.0.0.1:\($1)" }.joined(separator: ",")
        }
        if partitionable {
            let advertised = try await (0..<size).asyncMap { _ in try await ServerProcess.freePort() }
            let ids = try ClusterConfiguration(initialCluster: initialCluster(advertised), token: token).members.map(\.id)
            links = try await PeerLinkProxies(targets: members.map(\.peerPort), ids: ids, listeningOn: advertised)
        } else {
            links = nil
        }
        let advertised = links?.advertisedPorts ?? members.map(\.peerPort)
        advertisedPeerPorts = advertised
        arguments = ["--initial-cluster", initialCluster(advertised), "--initial-cluster-token", token] + extraArguments
    }

    /// The peer port each member advertises (a proxy's when links are partitionable).
    public let advertisedPeerPorts: [Int]

    /// Starts every member (concurrently: each waits for its peers to elect a leader).
    public func start() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in members.indices {
                group.addTask { try await self.start(index) }
            }
            try await group.waitForAll()
        }
    }

    /// Starts (or restarts) member `index` with its data directory as it is.
    public func start(_ index: Int) async throws {
        try await members[index].start(arguments: [
            "--name", names[index], "--listen-peer-urls", "http://127.0.0.1:\(members[index].peerPort)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(advertisedPeerPorts[index])",
        ] + arguments)
    }

    public func endpoint(_ index: Int) -> String { "127.0.0.1:\(members[index].port)" }

    public var endpoints: [String] { members.indices.map(endpoint) }

    /// Asks one member for its `Maintenance.Status`.
    public func status(_ index: Int) async throws -> Etcdserverpb_StatusResponse {
        let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: members[index].port))
        defer { Task { await connection.close() } }
        return try await connection.unary(
            Etcdserverpb_MaintenanceRPCs.status.path, Etcdserverpb_StatusRequest(), timeout: .seconds(2),
            responseType: Etcdserverpb_StatusResponse.self)
    }

    /// Waits (at most `limit`) until the running members in `among` agree on one leader among
    /// them; returns its index.
    public func waitForLeader(among: [Int]? = nil, within limit: Duration = .seconds(30)) async throws -> Int {
        let candidates = among ?? Array(members.indices)
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            var leaders: Set<UInt64> = []
            var ids: [UInt64: Int] = [:]
            for index in candidates {
                guard let status = try? await status(index) else {
                    leaders.insert(0)
                    continue
                }
                leaders.insert(status.leader)
                ids[status.header.memberID] = index
            }
            if leaders.count == 1, let leader = leaders.first, leader != 0, let index = ids[leader] { return index }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw GRPCStatus(.deadlineExceeded, "no leader agreed among members \(candidates) within \(limit)")
    }

    /// Stops every member and removes the data directories.
    public func destroy() {
        for member in members { member.kill9() }
        links?.close()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { destroy() }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}
