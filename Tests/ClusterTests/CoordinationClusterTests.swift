import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import TestSupport
import Testing

/// Locks and elections on a 3-member cluster of processes, with members and lock holders
/// killed (kill -9) while clients contend.
@Suite("Locks and elections on clusters", .cluster, .serialized)
struct CoordinationClusterTests {
    /// Retries `body` until it succeeds, pausing briefly after each failure (a member down, a
    /// leader being elected), until `deadline`.
    private static func retrying<T>(until deadline: ContinuousClock.Instant, _ body: () async throws -> T) async throws -> T {
        while true {
            do {
                return try await body()
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    private static func counter(_ client: EtcdClient) async throws -> Int {
        Int(try await client.get("counter").kvs.first.map { String(decoding: $0.value, as: UTF8.self) } ?? "0")!
    }

    /// An `etcdctl lock --ttl 3 counter-lock` process: it prints its key once it holds the lock.
    private static func etcdctlHolder(_ cluster: ClusterProcesses, output: URL) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        process.arguments = ["--endpoints", cluster.endpoints.joined(separator: ","), "lock", "--ttl", "3", "counter-lock"]
        process.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        FileManager.default.createFile(atPath: output.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = FileHandle.nullDevice
        try ChildProcesses.launch(process)
        return process
    }

    private static func holds(_ output: URL) -> Bool {
        ((try? String(contentsOf: output, encoding: .utf8)) ?? "").contains("counter-lock/")
    }

    @Test("6 clients on 3 members increment a counter under one lock 48 times: exact, with a member and two etcdctl holders killed")
    func mutualExclusionUnderContentionAndKills() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers)
        defer { cluster.destroy() }
        let leader = try await cluster.startAndElect()
        let deadline = ContinuousClock.now + .seconds(150)

        // Two real etcdctl processes queue for the lock first; the first holds it.
        let firstOutput = cluster.directory.appendingPathComponent("holder-1.out")
        let secondOutput = cluster.directory.appendingPathComponent("holder-2.out")
        let first = try Self.etcdctlHolder(cluster, output: firstOutput)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        while !Self.holds(firstOutput), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let second = try Self.etcdctlHolder(cluster, output: secondOutput)
        defer { if second.isRunning { kill(second.processIdentifier, SIGKILL) } }
        let observer = try cluster.client()
        defer { Task { await observer.close() } }
        while try await observer.get(Data("counter-lock/".utf8), rangeEnd: prefixEnd("counter-lock/")).count < 2,
            ContinuousClock.now < deadline
        {
            try await Task.sleep(for: .milliseconds(50))
        }

        let workers = 6
        let increments = 8
        let workersDone = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<workers {
                    group.addTask {
                        // Each client starts with its own member and fails over to the others.
                        let order = (0..<3).map { (worker + $0) % 3 }
                        let client = try cluster.client(order)
                        let session = try await Self.retrying(until: deadline) { try await EtcdSession.open(client, ttl: 10) }
                        let mutex = EtcdMutex(session: session, name: "counter-lock")
                        for _ in 0..<increments {
                            try await Self.retrying(until: deadline) { try await mutex.lock() }
                            let value = try await Self.retrying(until: deadline) { try await Self.counter(client) }
                            // A put whose answer was lost may have landed: read back before retrying it.
                            try await Self.retrying(until: deadline) {
                                if try await Self.counter(client) == value + 1 { return }
                                try await client.put("counter", String(value + 1))
                            }
                            try await Self.retrying(until: deadline) { try await mutex.unlock() }
                        }
                        try await Self.retrying(until: deadline) { try await session.close() }
                        await client.close()
                    }
                }
                try await group.waitForAll()
            }
        }

        // The holding etcdctl dies: its lease expires and the lock passes to the queue.
        try await Task.sleep(for: .seconds(1))
        kill(first.processIdentifier, SIGKILL)
        while !Self.holds(secondOutput), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(Self.holds(secondOutput))
        kill(second.processIdentifier, SIGKILL)

        // Once the workers are under way, the Raft leader dies and comes back.
        while try await Self.retrying(until: deadline, { try await Self.counter(observer) }) < 10, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        cluster.members[leader].kill9()
        try await Task.sleep(for: .seconds(2))
        try await cluster.start(leader)

        try await workersDone.value
        #expect(try await Self.counter(observer) == workers * increments)
        // Every holder's key is gone: released, or expired with its lease.
        let left = try await Self.retrying(until: deadline) {
            try await observer.get(Data("counter-lock/".utf8), rangeEnd: prefixEnd("counter-lock/")).count
        }
        #expect(left == 0)
    }

    @Test("observers on two members and a failing-over client see 4 leaders in the same order, across a Raft leader kill")
    func observersAgreeAcrossLeaderCrashes() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers)
        defer { cluster.destroy() }
        let leader = try await cluster.startAndElect()
        let survivors = (0..<3).filter { $0 != leader }
        let deadline = ContinuousClock.now + .seconds(90)
        let name = Data("primary".utf8)

        // Observe on each surviving member (the member runs the recipe) and through the client's recipe.
        var rpcObservers: [Task<[String], any Error>] = []
        for member in survivors {
            let client = try cluster.client([member], requestTimeout: nil)
            let stream = try await client.observe(name)
            rpcObservers.append(Task {
                var values: [String] = []
                for try await response in stream {
                    values.append(String(decoding: response.kv.value, as: UTF8.self))
                    if values.count == 4 { break }
                }
                await client.close()
                return values
            })
        }
        let watching = try cluster.client()
        let recipeObserver = Task {
            let election = EtcdElection(session: try await EtcdSession.open(watching, ttl: 30), name: "primary")
            var values: [String] = []
            for try await kv in election.observe() {
                values.append(String(decoding: kv.value, as: UTF8.self))
                if values.count == 4 { break }
            }
            return values
        }

        // Four campaigners, each on its own member first; each campaign starts after the last
        // one's key exists, so they lead in this order.
        var sessions: [EtcdSession] = []
        var campaigns: [Task<Void, any Error>] = []
        for index in 0..<4 {
            let client = try cluster.client((0..<3).map { (index + $0) % 3 })
            let session = try await EtcdSession.open(client, ttl: 5)
            sessions.append(session)
            let election = EtcdElection(session: session, name: "primary")
            campaigns.append(Task { try await Self.retrying(until: deadline) { try await election.campaign(Data("leader-\(index)".utf8)) } })
            while try await watching.get(name + Data("/".utf8), rangeEnd: prefixEnd("primary/")).count < index + 1,
                ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        // Nothing waits past the deadline: a stream that stops delivering or a campaign that
        // never wins is cancelled, and the expectations below say what was missing.
        let stuck = rpcObservers.map { task in { task.cancel() } } + [{ recipeObserver.cancel() }] + campaigns.map { task in { task.cancel() } }
        let watchdog = Task {
            try await Task.sleep(until: deadline + .seconds(30))
            for cancel in stuck { cancel() }
        }
        defer { watchdog.cancel() }

        // Each leader "crashes" in turn (its session stops renewing, as a dead process's would);
        // after the first, the Raft leader member is killed too.
        for index in 0..<3 {
            try await campaigns[index].value
            sessions[index].orphan()
            if index == 0 { cluster.members[leader].kill9() }
        }
        try await campaigns[3].value

        let expected = ["leader-0", "leader-1", "leader-2", "leader-3"]
        for observer in rpcObservers { #expect(try await observer.value == expected) }
        #expect(try await recipeObserver.value == expected)
        try await sessions[3].close()
        await watching.close()
    }
}
