import EtcdClient
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

    /// How many members bootstrap the cluster; the others join it later (``join(_:)``).
    public let founding: Int
    private let extraArguments: [String]

    /// Creates (but does not start) `size` members, the first `founding` (all by default) of
    /// which bootstrap the cluster; `extraArguments` go to every member. With `partitionable`,
    /// peer traffic goes through ``PeerLinkProxies`` so tests can cut links.
    /// With `tls`, every client and peer URL is `https` (``TestTLS/kubeadm()``).
    public init(
        size: Int, founding: Int? = nil, extraArguments: [String] = [], partitionable: Bool = false, tls: TestTLS? = nil
    ) async throws {
        precondition(!(partitionable && tls != nil), "link proxies read the peer hello, which TLS encrypts")
        self.tls = tls
        let scheme = tls == nil ? "http" : "https"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("swift-etcd-cluster-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var members: [ServerProcess] = []
        for index in 0..<size {
            members.append(try await ServerProcess(
                dataDirectory: directory.appendingPathComponent("m\(index)"), logFile: directory.appendingPathComponent("m\(index).log"),
                tls: tls))
        }
        self.members = members
        let names = (0..<size).map { "m\($0)" }
        self.names = names
        let founding = founding ?? size
        self.founding = founding
        self.extraArguments = extraArguments
        let token = "test-cluster"
        func initialCluster(_ ports: [Int]) -> String {
            zip(names, ports).map { "\($0)=\(scheme)://127.0.0.1:\($1)" }.joined(separator: ",")
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
        arguments = [
            "--initial-cluster", initialCluster(Array(advertised.prefix(founding))), "--initial-cluster-token", token,
        ] + extraArguments
    }

    public let tls: TestTLS?

    /// The peer port each member advertises (a proxy's when links are partitionable).
    public let advertisedPeerPorts: [Int]

    /// The peer URL member `index` advertises (what `etcdctl member add --peer-urls` takes).
    public func peerURL(_ index: Int) -> String { "\(members[index].scheme)://127.0.0.1:\(advertisedPeerPorts[index])" }

    /// Starts every founding member: all are launched first, then each is waited for (a member
    /// serves once its peers are up and a leader is elected).
    public func start() async throws {
        try await start { self.ownArguments($0) + self.arguments }
    }

    /// Starts every founding member with `arguments(index)` alone (none of the cluster's own
    /// flags): all are launched first, then each is waited for.
    public func start(with arguments: (Int) -> [String]) async throws {
        for index in 0..<founding { try await members[index].start(arguments: arguments(index), waitUntilServing: false) }
        for index in 0..<founding { try await members[index].waitUntilServing() }
    }

    /// Starts every founding member and returns the index of the leader they elect.
    public func startAndElect() async throws -> Int {
        try await start()
        return try await waitForLeader()
    }

    /// Starts (or restarts) member `index` with its data directory as it is, `extra` flags and
    /// `environment`; with `waitUntilServing` false, without waiting for it to answer.
    public func start(_ index: Int, extra: [String] = [], environment: [String: String] = [:], waitUntilServing: Bool = true)
        async throws
    {
        try await members[index].start(
            environment: environment, arguments: ownArguments(index) + arguments + extra, waitUntilServing: waitUntilServing)
    }

    /// Starts member `index` (not a founding one) to join the running cluster, as etcd's docs
    /// say after `etcdctl member add`: `--initial-cluster` lists the members so far and this
    /// one, with `--initial-cluster-state existing`.
    public func join(_ index: Int, with current: [Int]) async throws {
        let initialCluster = (current + [index]).map { "\(names[$0])=\(peerURL($0))" }.joined(separator: ",")
        try await members[index].start(arguments: ownArguments(index) + [
            "--initial-cluster", initialCluster, "--initial-cluster-token", "test-cluster", "--initial-cluster-state", "existing",
        ] + extraArguments)
    }

    private func ownArguments(_ index: Int) -> [String] {
        [
            "--name", names[index], "--listen-peer-urls", "\(members[index].scheme)://127.0.0.1:\(members[index].peerPort)",
            "--initial-advertise-peer-urls", peerURL(index),
        ]
    }

    /// Runs Debian's `etcdctl` (API v3) against `endpoints`; returns its exit status and output.
    public func etcdctl(_ arguments: [String], endpoints: [Int]) async throws -> (status: Int32, output: String) {
        try await runTool(
            URL(fileURLWithPath: "/usr/bin/etcdctl"),
            ["--endpoints", endpoints.map(endpoint).joined(separator: ","), "--command-timeout=10s"] + (tls?.etcdctlArguments ?? [])
                + arguments,
            environment: ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"])
    }

    public func endpoint(_ index: Int) -> String { tls == nil ? "127.0.0.1:\(members[index].port)" : members[index].clientURL }

    /// A client of `members` (all by default), with the test client certificate under TLS.
    public func client(_ members: [Int]? = nil, requestTimeout: Duration? = .seconds(5)) throws -> EtcdClient {
        try EtcdClient(endpoints: (members ?? Array(self.members.indices)).map(endpoint), tls: tls?.clientOptions, requestTimeout: requestTimeout)
    }

    public var endpoints: [String] { members.indices.map(endpoint) }

    /// Asks one member for its `Maintenance.Status`.
    public func status(_ index: Int) async throws -> Etcdserverpb_StatusResponse {
        let connection = try await members[index].connect()
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

/// Runs a command-line tool to its end; returns its exit status and its output (standard
/// output and error together). `environment` nil: this process's. A tool still running after
/// `limit` is killed (its status is then SIGKILL's 9). The output is read on a thread of its
/// own: the test run's two cooperative threads never wait on a child.
public func runTool(
    _ executable: URL, _ arguments: [String], environment: [String: String]? = nil, within limit: Duration = .seconds(120)
) async throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try ChildProcesses.launch(process)
    let pid = process.processIdentifier
    let overtime = Task {
        try await Task.sleep(for: limit)
        kill(pid, SIGKILL)
    }
    defer { overtime.cancel() }
    let data = await withCheckedContinuation { (continuation: CheckedContinuation<Data, Never>) in
        Thread { continuation.resume(returning: pipe.fileHandleForReading.readDataToEndOfFile()) }.start()
    }
    let status = await ChildProcesses.exit(of: process) ?? -1
    return (status, String(decoding: data, as: UTF8.self))
}
