import EtcdProto
import Foundation
import GRPCWire
import NIOCore

/// A cluster of real `swift-etcd` processes on loopback ports, bootstrapped as etcd's
/// documentation does it (`--initial-cluster a=...,b=...,c=...`), each with its own data directory.
public final class ClusterProcesses: Sendable {
    public let members: [ServerProcess]
    public let names: [String]
    public let directory: URL
    private let arguments: [String]

    /// Creates (but does not start) `size` members; `extraArguments` go to every member.
    public init(size: Int, extraArguments: [String] = []) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("swift-etcd-cluster-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var members: [ServerProcess] = []
        for index in 0..<size {
            members.append(try await ServerProcess(
                dataDirectory: directory.appendingPathComponent("m\(index)"), logFile: directory.appendingPathComponent("m\(index).log")))
        }
        self.members = members
        names = (0..<size).map { "m\($0)" }
        let initialCluster = zip(names, members).map { "\($0)=http://127.0.0.1:\($1.peerPort)" }.joined(separator: ",")
        arguments = ["--initial-cluster", initialCluster, "--initial-cluster-token", "test-cluster"] + extraArguments
    }

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
        let peer = "http://127.0.0.1:\(members[index].peerPort)"
        try await members[index].start(arguments: [
            "--name", names[index], "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
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
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { destroy() }
}
