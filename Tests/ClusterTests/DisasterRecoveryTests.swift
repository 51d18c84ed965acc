import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import Testing
import TestSupport

/// etcd's disaster recovery when a cluster lost its quorum for good: a survivor restarts with
/// `--force-new-cluster` as a one-member cluster holding every committed write, and new
/// members join it as usual.
@Suite("Disaster recovery", .cluster)
struct DisasterRecoveryTests {
    @Test func aSurvivorOfALostQuorumRestartsAloneWithEveryWriteAndGrowsAgain() async throws {
        let cluster = try await ClusterProcesses(size: 4, founding: 3)
        defer { cluster.destroy() }
        try await cluster.start()
        _ = try await cluster.waitForLeader(among: [0, 1, 2])
        let client = try cluster.client([0, 1, 2])
        for index in 0..<50 { try await client.put("key/\(index)", "\(index)") }
        let last = try await client.put("last", "written")
        await client.close()

        // Two of three members are gone for good; the survivor alone cannot elect a leader.
        cluster.members[1].kill9()
        cluster.members[2].kill9()
        try FileManager.default.removeItem(at: cluster.members[1].dataDirectory)
        try FileManager.default.removeItem(at: cluster.members[2].dataDirectory)
        cluster.members[0].kill9()

        try await cluster.start(0, extra: ["--force-new-cluster"])
        let survivor = try cluster.client([0])
        let leader = try await cluster.waitForLeader(among: [0], within: .seconds(15))
        #expect(leader == 0)
        let members = try await survivor.call(Etcdserverpb_ClusterRPCs.memberList, Etcdserverpb_MemberListRequest())
        #expect(members.members.map(\.name) == ["m0"])
        let everything = try await survivor.get(Data("key/".utf8), rangeEnd: Data("key0".utf8))
        #expect(everything.kvs.count == 50)
        #expect(try await survivor.get("last").kvs.first?.modRevision == last.header.revision)
        #expect(try await survivor.put("after", "recovery").header.revision == last.header.revision + 1)

        // It grows again as any cluster does: member add, then the new member joins.
        _ = try await survivor.call(Etcdserverpb_ClusterRPCs.memberAdd, .with { $0.peerUrls = [cluster.peerURL(3)] })
        try await cluster.join(3, with: [0])
        let joined = try cluster.client([3])
        let deadline = ContinuousClock.now + .seconds(20)
        while try await joined.get("after", serializable: true).kvs.isEmpty, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try await joined.get(Data("key/".utf8), rangeEnd: Data("key0".utf8), serializable: true).kvs.count == 50)
        #expect(try await survivor.put("two", "members").header.revision == last.header.revision + 2)
        await joined.close()

        // Restarted without the flag (as etcd's guide says: with it, the member would remove
        // the others again), it is one of two.
        cluster.members[0].terminate()
        try await cluster.start(0)
        _ = try await cluster.waitForLeader(among: [0, 3], within: .seconds(15))
        let again = try await survivor.call(Etcdserverpb_ClusterRPCs.memberList, Etcdserverpb_MemberListRequest())
        #expect(again.members.count == 2)
        await survivor.close()
    }
}
