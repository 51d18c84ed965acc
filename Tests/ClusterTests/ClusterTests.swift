import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import TestSupport
import Testing

/// Real multi-process clusters: members started as etcd's documentation starts them, driven by
/// the Swift client, killed with SIGKILL.
@Suite("Multi-member clusters", .cluster, .serialized)
struct ClusterTests {
    /// Short Raft timers keep the tests quick; the ratios are etcd's defaults (1:10).
    static let timers = ["--heartbeat-interval", "50", "--election-timeout", "500"]

    @Test("a write through any member is read linearizably through every member")
    func writesAndReadsThroughAnyMember() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: Self.timers)
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        for writer in 0..<3 {
            let client = try EtcdClient(endpoints: [cluster.endpoint(writer)])
            let put = try await client.put("key-\(writer)", "from-\(writer)")
            await client.close()
            for reader in 0..<3 {
                let readerClient = try EtcdClient(endpoints: [cluster.endpoint(reader)])
                let got = try await readerClient.get("key-\(writer)")
                await readerClient.close()
                #expect(got.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["from-\(writer)"])
                #expect(got.header.revision >= put.header.revision)
            }
        }
        // Every member reports the same leader, term and applied index once quiet.
        let statuses = try await [cluster.status(0), cluster.status(1), cluster.status(2)]
        #expect(Set(statuses.map(\.leader)).count == 1)
        #expect(Set(statuses.map(\.raftTerm)).count == 1)
        #expect(statuses.allSatisfy { $0.header.revision == 4 })
        #expect(Set(statuses.map(\.header.clusterID)).count == 1)
        #expect(Set(statuses.map(\.header.memberID)).count == 3)
    }

    @Test("the leader killed with SIGKILL: a new leader is elected, writes go on, the old leader catches up")
    func leaderKilled() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: Self.timers)
        defer { cluster.destroy() }
        let leader = try await cluster.startAndElect()
        let client = try EtcdClient(endpoints: cluster.endpoints)
        defer { Task { await client.close() } }
        for index in 0..<20 { try await client.put("before-\(index)", "\(index)") }
        let termBefore = try await cluster.status(leader).raftTerm

        cluster.members[leader].kill9()
        let killedAt = ContinuousClock.now
        let survivors = (0..<3).filter { $0 != leader }
        let newLeader = try await cluster.waitForLeader(among: survivors)
        let electionTime = ContinuousClock.now - killedAt
        print("new leader elected \(electionTime) after the leader was killed (election timeout 500 ms)")
        #expect(newLeader != leader)
        // Generous against scheduling noise on a loaded machine; the figure above is the measurement.
        #expect(electionTime < .seconds(10))
        #expect(try await cluster.status(newLeader).raftTerm > termBefore)

        let survivorClient = try EtcdClient(endpoints: survivors.map(cluster.endpoint))
        defer { Task { await survivorClient.close() } }
        for index in 0..<20 { try await survivorClient.put("after-\(index)", "\(index)") }
        let all = try await survivorClient.get(Data("a".utf8), rangeEnd: Data("c".utf8))
        #expect(all.count == 40)

        try await cluster.start(leader)
        // The restarted member catches up: its own (serializable) view reaches the same revision.
        let target = try await cluster.status(newLeader).header.revision
        let restartedClient = try EtcdClient(endpoints: [cluster.endpoint(leader)])
        defer { Task { await restartedClient.close() } }
        let deadline = ContinuousClock.now + .seconds(30)
        var revision: Int64 = 0
        while ContinuousClock.now < deadline {
            revision = (try? await restartedClient.get("after-19", serializable: true).header.revision) ?? 0
            if revision >= target { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(revision == target)
        let caughtUp = try await restartedClient.get("after-19", serializable: true)
        #expect(caughtUp.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["19"])
    }

    @Test("a member cut off from the majority answers writes and linearizable reads with etcd's no-leader error")
    func minorityRefuses() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: Self.timers)
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        let client = try EtcdClient(endpoints: [cluster.endpoint(0)], requestTimeout: .seconds(30))
        defer { Task { await client.close() } }
        try await client.put("k", "before")
        cluster.members[1].kill9()
        cluster.members[2].kill9()

        var putError: EtcdClientError?
        do {
            try await client.put("k", "after")
        } catch {
            putError = error
        }
        #expect(putError?.code == .unavailable)
        #expect(putError?.message == "etcdserver: no leader")

        var readError: EtcdClientError?
        do {
            _ = try await client.get("k")
        } catch {
            readError = error
        }
        #expect(readError?.code == .unavailable)
        #expect(readError?.message == "etcdserver: no leader")

        // A serializable read is answered from what the member has.
        let local = try await client.get("k", serializable: true)
        #expect(local.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["before"])
    }

    @Test("a member down while the others snapshot and compact their logs catches up from a streamed snapshot")
    func catchUpBySnapshot() async throws {
        // Snapshots every 50 entries, keeping 10 behind each: the leader's log soon starts far
        // past where the stopped member's ends.
        let cluster = try await ClusterProcesses(
            size: 3,
            extraArguments: Self.timers + ["--snapshot-count", "50", "--experimental-snapshot-catchup-entries", "10"])
        defer { cluster.destroy() }
        let leader = try await cluster.startAndElect()
        let lagging = (leader + 1) % 3
        let client = try EtcdClient(endpoints: (0..<3).filter { $0 != lagging }.map(cluster.endpoint))
        defer { Task { await client.close() } }
        try await client.put("first", "1")
        cluster.members[lagging].kill9()
        for index in 0..<300 { try await client.put("k\(index % 40)", "v\(index)") }
        try await client.delete(Data("first".utf8))
        let target = try await client.get("k39").header.revision

        try await cluster.start(lagging)
        let laggingClient = try EtcdClient(endpoints: [cluster.endpoint(lagging)])
        defer { Task { await laggingClient.close() } }
        var revision: Int64 = 0
        for _ in 0..<600 {
            revision = (try? await laggingClient.get("k39", serializable: true).header.revision) ?? 0
            if revision >= target { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(revision == target)
        let all = try await laggingClient.get(Data([0]), rangeEnd: Data([0]), serializable: true)
        #expect(all.count == 40)
        #expect(all.kvs.first { $0.key == Data("k39".utf8) }.map { String(decoding: $0.value, as: UTF8.self) } == "v279")
        // It serves linearizable reads and takes writes like any member.
        try await laggingClient.put("after", "caught-up")
        #expect(try await client.get("after").kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["caught-up"])
        let log = try String(contentsOf: cluster.directory.appendingPathComponent("m\(lagging).log"), encoding: .utf8)
        #expect(log.contains("applied snapshot from the leader"))
    }

    @Test("five members survive two of them killed, and the three left agree")
    func fiveMembers() async throws {
        let cluster = try await ClusterProcesses(size: 5, extraArguments: Self.timers)
        defer { cluster.destroy() }
        let leader = try await cluster.startAndElect()
        let victims = [leader, (leader + 1) % 5]
        for victim in victims { cluster.members[victim].kill9() }
        let survivors = (0..<5).filter { !victims.contains($0) }
        _ = try await cluster.waitForLeader(among: survivors)
        let client = try EtcdClient(endpoints: survivors.map(cluster.endpoint))
        defer { Task { await client.close() } }
        for index in 0..<30 { try await client.put("k\(index)", "v\(index)") }
        for survivor in survivors {
            let one = try EtcdClient(endpoints: [cluster.endpoint(survivor)])
            let got = try await one.get("k29")
            await one.close()
            #expect(got.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["v29"])
            #expect(got.header.revision == 31)
        }
    }
}

/// Partitions made by cutting peer links (``PeerLinkProxies``), with every process running.
@Suite("Cluster partitions", .cluster, .serialized)
struct PartitionTests {
    @Test("an isolated leader steps down and refuses; the majority elects a leader and goes on; healing converges")
    func isolatedLeader() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers, partitionable: true)
        defer { cluster.destroy() }
        let leader = try await cluster.startAndElect()
        let everyone = try EtcdClient(endpoints: cluster.endpoints)
        defer { Task { await everyone.close() } }
        for index in 0..<10 { try await everyone.put("before-\(index)", "\(index)") }

        cluster.links!.isolate([leader])
        let majority = (0..<3).filter { $0 != leader }
        _ = try await cluster.waitForLeader(among: majority)
        let majorityClient = try EtcdClient(endpoints: majority.map(cluster.endpoint))
        defer { Task { await majorityClient.close() } }
        for index in 0..<10 { try await majorityClient.put("during-\(index)", "\(index)") }

        // The old leader, alone, acknowledges nothing and serves no linearizable read.
        let isolated = try EtcdClient(endpoints: [cluster.endpoint(leader)], requestTimeout: .seconds(30))
        defer { Task { await isolated.close() } }
        var writeError: EtcdClientError?
        do { try await isolated.put("minority", "x") } catch { writeError = error }
        #expect(writeError?.message == "etcdserver: no leader")
        var readError: EtcdClientError?
        do { _ = try await isolated.get("during-0") } catch { readError = error }
        #expect(readError?.message == "etcdserver: no leader")
        // Its serializable view is stale: it never saw the majority's writes.
        #expect(try await isolated.get("during-0", serializable: true).kvs.isEmpty)

        cluster.links!.heal()
        _ = try await cluster.waitForLeader()
        try await majorityClient.put("after", "healed")
        // Every member converges on the same keys at the same revision; the write the isolated
        // member could not make is nowhere.
        var views: [[String]] = []
        var revisions: [Int64] = []
        for member in 0..<3 {
            let client = try EtcdClient(endpoints: [cluster.endpoint(member)])
            let deadline = ContinuousClock.now + .seconds(30)
            var response = Etcdserverpb_RangeResponse()
            while ContinuousClock.now < deadline {
                response = try await client.get(Data([0]), rangeEnd: Data([0]), serializable: true)
                if response.kvs.contains(where: { $0.key == Data("after".utf8) }) { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            await client.close()
            views.append(response.kvs.map { String(decoding: $0.key, as: UTF8.self) + "=" + String(decoding: $0.value, as: UTF8.self) })
            revisions.append(response.header.revision)
        }
        // And on the same checksum of their whole keyspace at that revision.
        var hashes: [UInt32] = []
        for member in 0..<3 {
            let client = try EtcdClient(endpoints: [cluster.endpoint(member)])
            var request = Etcdserverpb_HashKVRequest()
            request.revision = 22
            hashes.append(try await client.call(Etcdserverpb_MaintenanceRPCs.hashKV, request).hash)
            await client.close()
        }
        #expect(Set(hashes).count == 1)
        #expect(hashes[0] != 0)
        #expect(views[0].count == 21)
        #expect(views[0] == views[1])
        #expect(views[1] == views[2])
        #expect(Set(revisions) == [22])
        #expect(!views[0].contains { $0.hasPrefix("minority") })
    }
}
