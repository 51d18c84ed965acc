import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import Testing
import TestSupport

/// The space quota on a 3-member cluster: NOSPACE raised by a member refuses growing writes on
/// every member, and etcd's way out (compact, defragment every member, disarm) works.
@Suite("Space quota on a cluster")
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
        let deleted = try await client.delete(Data("fill/".utf8), rangeEnd: Data("fill0".utf8))
        #expect(deleted.deleted == Int64(filled))
        try await client.compact(revision: deleted.header.revision)
        let defrag = try cluster.etcdctl(["defrag", "--cluster"], endpoints: [0])
        #expect(defrag.status == 0, "\(defrag.output)")
        #expect(defrag.output.components(separatedBy: "Finished defragmenting etcd member").count == 4, "\(defrag.output)")
        for index in cluster.members.indices {
            #expect(try await cluster.status(index).dbSize < 1 << 20)
        }
        let disarm = try cluster.etcdctl(["alarm", "disarm"], endpoints: [0])
        #expect(disarm.status == 0 && disarm.output.contains("alarm:NOSPACE"), "\(disarm.output)")
        #expect(try await client.call(Etcdserverpb_MaintenanceRPCs.alarm, .with { $0.action = .get }).alarms.isEmpty)
        for index in 0..<(filled / 2) { try await client.put("again/\(index)", value) }
    }
}
