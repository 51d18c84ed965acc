import EtcdClient
import EtcdProto
import Foundation
import SwiftProtobuf
import TestSupport
import Testing

/// Concurrent clients doing get, put and compare-and-set on a few keys through every member of
/// a real cluster while members are killed, paused and cut off, and a fourth member is added
/// (as a learner), promoted and removed over and over; the recorded history must be
/// linearizable and the members must end up agreeing on the membership. `LINEARIZABILITY_RUNS` and `LINEARIZABILITY_SECONDS` lengthen the campaign,
/// `LINEARIZABILITY_SEED` replays one run's choices (`scripts/linearizability-campaign.sh`).
@Suite("Linearizability under faults", .cluster, .serialized)
struct LinearizabilityTests {
    static let environment = ProcessInfo.processInfo.environment
    static let runs = environment["LINEARIZABILITY_RUNS"].flatMap(Int.init) ?? 1
    static let seconds = environment["LINEARIZABILITY_SECONDS"].flatMap(Int.init) ?? 8

    @Test("histories from runs with kills, pauses, partitions and membership changes are linearizable")
    func campaign() async throws {
        let firstSeed = Self.environment["LINEARIZABILITY_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64(UInt32.max))
        var totals = (operations: 0, unknown: 0, faults: 0)
        for run in 0..<Self.runs {
            let seed = firstSeed &+ UInt64(run)
            let (history, faults) = try await Self.runOnce(seed: seed, duration: .seconds(Self.seconds))
            let verdict = LinearizabilityChecker.check(history)
            let unknown = history.filter { $0.outcome == .unknown }.count
            totals.operations += history.count
            totals.unknown += unknown
            totals.faults += faults.count
            print("linearizability run \(run + 1)/\(Self.runs) seed \(seed): \(history.count) operations (\(unknown) unknown), faults \(faults.joined(separator: ", ")): \(verdict == .linearizable ? "linearizable" : "\(verdict)")")
            #expect(verdict == .linearizable, "seed \(seed)")
            // Progress despite the faults: most operations got an answer.
            #expect(history.count - unknown > history.count / 2, "seed \(seed)")
        }
        print("linearizability campaign: \(Self.runs) runs, \(totals.operations) operations, \(totals.unknown) unknown, \(totals.faults) faults, all linearizable: seed \(firstSeed)")
    }

    @Test("the checker flags serializable reads from a member cut off from the majority")
    func stalePartitionedReadsAreFlagged() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers, partitionable: true)
        defer { cluster.destroy() }
        let leader = try await cluster.startAndElect()
        let minority = (leader + 1) % 3
        let majority = (0..<3).filter { $0 != minority }
        let recorder = HistoryRecorder()
        let writer = try EtcdClient(endpoints: majority.map(cluster.endpoint))
        let reader = try EtcdClient(endpoints: [cluster.endpoint(minority)])
        defer {
            Task {
                await writer.close()
                await reader.close()
            }
        }
        try await Self.perform(.put(key: "x", value: "before"), client: 0, with: writer, recorder: recorder)
        // Wait until the minority member has applied it, so the stale read below is about the partition.
        for _ in 0..<600 where try await reader.get("x", serializable: true).kvs.isEmpty {
            try await Task.sleep(for: .milliseconds(50))
        }
        cluster.links!.isolate([minority])
        try await Self.perform(.put(key: "x", value: "during"), client: 0, with: writer, recorder: recorder)
        try await Self.perform(.get(key: "x"), client: 1, with: reader, recorder: recorder, serializable: true)
        let history = recorder.history
        #expect(history.last?.outcome == .value("before"))
        guard case .violation(let key, _) = LinearizabilityChecker.check(history) else {
            Issue.record("a stale serializable read during a partition was not flagged: \(history)")
            return
        }
        #expect(key == "x")
    }

    // MARK: The workload

    static let keys = ["a", "b", "c"]

    /// One run: a fresh 3-member cluster, 6 clients for `duration`, faults every second or so,
    /// and a fourth member joining and leaving.
    static func runOnce(seed: UInt64, duration: Duration) async throws -> ([KVEvent], [String]) {
        let cluster = try await ClusterProcesses(size: 4, founding: 3, extraArguments: ClusterTests.timers, partitionable: true)
        defer { cluster.destroy() }
        try await cluster.start()
        _ = try await cluster.waitForLeader(among: [0, 1, 2])
        let recorder = HistoryRecorder()
        let deadline = ContinuousClock.now + duration
        let faults = try await withThrowingTaskGroup(of: [String].self) { group in
            for client in 0..<6 {
                group.addTask {
                    // Each client talks to one member, so followers forward and read-index for it.
                    let etcd = try EtcdClient(endpoints: [cluster.endpoint(client % 3)], requestTimeout: .seconds(3))
                    var random = SeededRandom(seed: seed &* 31 &+ UInt64(client))
                    var counter = 0
                    // The value this client last read for each key: what its compare-and-sets expect.
                    var lastRead: [String: String] = [:]
                    while ContinuousClock.now < deadline {
                        counter += 1
                        let key = keys[Int(random.next() % UInt64(keys.count))]
                        let value = "\(client)-\(counter)"
                        let operation: KVOperation =
                            switch random.next() % 10 {
                            case 0..<4: .get(key: key)
                            case 4..<7: .put(key: key, value: value)
                            default: .compareAndSet(key: key, expected: lastRead[key], new: value)
                            }
                        let outcome = try await perform(operation, client: client, with: etcd, recorder: recorder)
                        switch outcome {
                        case .value(let seen): lastRead[key] = seen
                        case .unknown: try await Task.sleep(for: .milliseconds(100))  // the member may be down
                        default: break
                        }
                    }
                    await etcd.close()
                    return []
                }
            }
            group.addTask { try await injectFaults(into: cluster, seed: seed, until: deadline) }
            group.addTask { try await changeMembership(of: cluster, seed: seed, until: deadline) }
            var faults: [String] = []
            for try await names in group { faults += names }
            return faults
        }
        try await expectAgreedMembership(cluster)
        return (recorder.history, faults)
    }

    /// Runs one operation and records what the client saw; a failed write's outcome is unknown.
    @discardableResult
    static func perform(
        _ operation: KVOperation, client: Int, with etcd: EtcdClient, recorder: HistoryRecorder, serializable: Bool = false
    ) async throws -> KVOutcome {
        let call = recorder.now()
        var outcome = KVOutcome.unknown
        do {
            switch operation {
            case .get(let key):
                let response = try await etcd.get(key, serializable: serializable)
                outcome = .value(response.kvs.first.map { String(decoding: $0.value, as: UTF8.self) })
            case .put(let key, let value):
                try await etcd.put(key, value)
                outcome = .written
            case .compareAndSet(let key, let expected, let new):
                var request = Etcdserverpb_TxnRequest()
                var compare = Etcdserverpb_Compare()
                compare.key = Data(key.utf8)
                if let expected {
                    compare.target = .value
                    compare.value = Data(expected.utf8)
                } else {
                    compare.target = .version
                    compare.version = 0
                }
                compare.result = .equal
                request.compare = [compare]
                var put = Etcdserverpb_PutRequest()
                put.key = Data(key.utf8)
                put.value = Data(new.utf8)
                var operation = Etcdserverpb_RequestOp()
                operation.requestPut = put
                request.success = [operation]
                outcome = .swapped(try await etcd.txn(request).succeeded)
            }
        } catch {
            // Timed out or refused: it may still take effect later.
        }
        recorder.record(KVEvent(
            client: client, operation: operation, outcome: outcome, call: call, end: outcome == .unknown ? nil : recorder.now()))
        return outcome
    }

    /// Over and over until `deadline`: member m3 is added as a learner, started, promoted once
    /// it has caught up, and after 0.5–2 s removed, stopped and its data wiped. Each step is
    /// retried while the other faults refuse it (no leader, not enough started members, a
    /// learner not yet in sync).
    static func changeMembership(of cluster: ClusterProcesses, seed: UInt64, until deadline: ContinuousClock.Instant)
        async throws -> [String]
    {
        var random = SeededRandom(seed: seed &+ 7)
        var changes: [String] = []
        let etcd = try EtcdClient(endpoints: (0..<3).map(cluster.endpoint), requestTimeout: .seconds(3))
        defer { Task { await etcd.close() } }
        /// Repeats `change` until it succeeds; false once the deadline passed first.
        func retrying(_ change: () async throws -> Void) async throws -> Bool {
            while ContinuousClock.now < deadline {
                do {
                    try await change()
                    return true
                } catch {
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            return false
        }
        let newcomer = cluster.members[3]
        while ContinuousClock.now < deadline {
            var id: UInt64 = 0
            guard try await retrying({
                id = try await etcd.call(Etcdserverpb_ClusterRPCs.memberAdd, .with {
                    $0.peerUrls = [cluster.peerURL(3)]
                    $0.isLearner = true
                }).member.id
            }) else { break }
            changes.append("add m3 as learner")
            try? await cluster.join(3, with: [0, 1, 2])
            if try await retrying({ _ = try await etcd.call(Etcdserverpb_ClusterRPCs.memberPromote, .with { $0.id = id }) }) {
                changes.append("promote m3")
                try await Task.sleep(for: .milliseconds(500 + Int(random.next() % 1500)))
            }
            // Removed even after the deadline: the run ends with the three founding members.
            while (try? await etcd.call(Etcdserverpb_ClusterRPCs.memberRemove, .with { $0.id = id })) == nil {
                try await Task.sleep(for: .milliseconds(200))
            }
            changes.append("remove m3")
            newcomer.kill9()
            try? FileManager.default.removeItem(at: newcomer.dataDirectory)
        }
        return changes
    }

    /// Every founding member lists the same members (the three of them) within 30 s.
    static func expectAgreedMembership(_ cluster: ClusterProcesses) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        var lists: [[UInt64]] = []
        repeat {
            lists = []
            for index in 0..<3 {
                let etcd = try EtcdClient(endpoints: [cluster.endpoint(index)], requestTimeout: .seconds(3))
                let members = try? await etcd.call(Etcdserverpb_ClusterRPCs.memberList, Etcdserverpb_MemberListRequest()).members
                await etcd.close()
                lists.append((members ?? []).map(\.id).sorted())
            }
            if lists.allSatisfy({ $0.count == 3 && $0 == lists[0] }) { return }
            try await Task.sleep(for: .milliseconds(200))
        } while ContinuousClock.now < deadline
        Issue.record("the members disagree on the membership: \(lists)")
    }

    /// Every 0.5–1.5 s, one fault for 0.5–2 s: a member killed with SIGKILL (then restarted),
    /// paused with SIGSTOP (then resumed), or cut off from the others (then reconnected).
    static func injectFaults(into cluster: ClusterProcesses, seed: UInt64, until deadline: ContinuousClock.Instant)
        async throws -> [String]
    {
        var random = SeededRandom(seed: seed)
        var faults: [String] = []
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(500 + Int(random.next() % 1000)))
            guard ContinuousClock.now < deadline else { break }
            let member = Int(random.next() % 3)
            let length = Duration.milliseconds(500 + Int(random.next() % 1500))
            switch random.next() % 3 {
            case 0:
                faults.append("kill m\(member)")
                cluster.members[member].kill9()
                try await Task.sleep(for: length)
                try await cluster.start(member)
            case 1:
                faults.append("pause m\(member)")
                cluster.members[member].signal(SIGSTOP)
                try await Task.sleep(for: length)
                cluster.members[member].signal(SIGCONT)
            default:
                faults.append("isolate m\(member)")
                cluster.links!.isolate([member])
                try await Task.sleep(for: length)
                cluster.links!.heal()
            }
        }
        return faults
    }
}
