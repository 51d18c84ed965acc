import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import Testing
import TestSupport

/// The space quota on a 3-member cluster: NOSPACE raised by a member refuses growing writes on
/// every member, and etcd's way out (compact, defragment every member, disarm) works.
@Suite("Space quota on a cluster", .cluster)
struct QuotaClusterTests {
    static let noSpace = EtcdClientError(code: .resourceExhausted, message: "etcdserver: mvcc: database space exceeded")

    @Test func noSpaceOnOneMemberRefusesWritesEverywhereUntilDisarmed() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ["--quota-backend-bytes", "\(4 << 20)"])
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        let client = try cluster.client()
        defer { Task { await client.close() } }
        let value = String(repeating: "q", count: 100_000)
        var refusedAt: Int?
        for index in 0..<100 {
            do {
                try await client.put("fill/\(index)", value)
            } catch {
                #expect(error == Self.noSpace)
                refusedAt = index
                break
            }
        }
        let filled = try #require(refusedAt)
        // The alarm reaches every member, and each refuses what grows the store.
        let deadline = ContinuousClock.now + .seconds(10)
        var alarms: [Etcdserverpb_AlarmMember] = []
        while alarms.isEmpty, ContinuousClock.now < deadline {
            alarms = try await client.call(Etcdserverpb_MaintenanceRPCs.alarm, .with { $0.action = .get }).alarms
        }
        #expect(!alarms.isEmpty && alarms.allSatisfy { $0.alarm == .nospace })
        for index in cluster.members.indices {
            let member = try cluster.client([index])
            await #expect(throws: Self.noSpace) { try await member.put("small", "1") }
            await #expect(throws: Self.noSpace) { try await member.grantLease(ttl: 10) }
            #expect(try await member.get("fill/0").kvs.count == 1)
            await member.close()
        }

        // etcd's way out: delete, compact, defragment every member, disarm.
        // The refused put may be there too: a member past its quota at apply still applies the
        // write it answers NOSPACE (as etcd does), and a put the client gave up on may land.
        let present = try await client.get(Data("fill/".utf8), rangeEnd: Data("fill0".utf8)).count
        #expect(present == Int64(filled) || present == Int64(filled) + 1)
        let deleted = try await client.delete(Data("fill/".utf8), rangeEnd: Data("fill0".utf8))
        #expect(deleted.deleted == present)
        try await client.compact(revision: deleted.header.revision)
        let defrag = try await cluster.etcdctl(["defrag", "--cluster"], endpoints: [0])
        #expect(defrag.status == 0, "\(defrag.output)")
        #expect(defrag.output.components(separatedBy: "Finished defragmenting etcd member").count == 4, "\(defrag.output)")
        for index in cluster.members.indices {
            #expect(try await cluster.status(index).dbSize < 1 << 20)
        }
        let disarm = try await cluster.etcdctl(["alarm", "disarm"], endpoints: [0])
        #expect(disarm.status == 0 && disarm.output.contains("alarm:NOSPACE"), "\(disarm.output)")
        #expect(try await client.call(Etcdserverpb_MaintenanceRPCs.alarm, .with { $0.action = .get }).alarms.isEmpty)
        for index in 0..<(filled / 2) { try await client.put("again/\(index)", value) }
    }

    /// etcd's quota applier: the quota is checked again as each member applies a write. A
    /// member whose own quota is smaller applies the write like the others (their data stays
    /// the same) but raises NOSPACE, which then refuses growing writes everywhere.
    @Test func aMemberPastItsQuotaWhenApplyingRaisesNoSpace() async throws {
        let cluster = try await ClusterProcesses(size: 3)
        defer { cluster.destroy() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await cluster.start(0, extra: ["--quota-backend-bytes", "\(4 << 20)"]) }
            group.addTask { try await cluster.start(1) }
            group.addTask { try await cluster.start(2) }
            try await group.waitForAll()
        }
        _ = try await cluster.waitForLeader()
        let small = try await cluster.status(0).header.memberID
        // Every write goes through member 1, whose own quota (2 GiB) lets it propose them.
        let client = try cluster.client([1])
        defer { Task { await client.close() } }
        let value = String(repeating: "a", count: 100_000)
        var written = 0
        var alarms: [Etcdserverpb_AlarmMember] = []
        while alarms.isEmpty, written < 100 {
            do {
                try await client.put("fill/\(written)", value)
                written += 1
            } catch {
                #expect(error == Self.noSpace)
                break
            }
            alarms = try await client.call(Etcdserverpb_MaintenanceRPCs.alarm, .with { $0.action = .get }).alarms
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while alarms.isEmpty, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            alarms = try await client.call(Etcdserverpb_MaintenanceRPCs.alarm, .with { $0.action = .get }).alarms
        }
        #expect(alarms.map(\.memberID) == [small])
        #expect(alarms.map(\.alarm) == [.nospace])
        #expect(written > 20 && written < 60, "\(written)")
        await #expect(throws: Self.noSpace) { try await client.put("more", "1") }
        // Every member holds the same keys: the writes past the small quota were applied everywhere.
        let members = try cluster.members.indices.map { try cluster.client([$0]) }
        defer { for member in members { Task { await member.close() } } }
        var counts: [Int] = []
        let converged = ContinuousClock.now + .seconds(10)
        repeat {
            counts = []
            for member in members {
                counts.append(try await member.get(Data("fill/".utf8), rangeEnd: Data("fill0".utf8), serializable: true).kvs.count)
            }
            if Set(counts).count == 1 { break }
            try await Task.sleep(for: .milliseconds(100))
        } while ContinuousClock.now < converged
        #expect(Set(counts).count == 1, "\(counts)")
        #expect(counts.first ?? 0 >= written)
    }
}
