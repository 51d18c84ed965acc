import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import TestSupport
import Testing

/// `--strict-reconfig-check` counts the members that are started as every member sees them,
/// followers included (etcd's followers keep a stream to every peer).
@Suite("Strict reconfiguration checks on followers", .cluster, .serialized)
struct StrictReconfigTests {
    @Test("a follower removes the leader: the other follower counts as started")
    func aFollowerSeesTheOtherFollowerAsStarted() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers)
        defer { cluster.destroy() }
        let leader = try await cluster.startAndElect()
        let follower = (leader + 1) % 3
        // A few ticks for the follower to connect to the other follower.
        try await Task.sleep(for: .seconds(1))
        let leaderID = try await cluster.status(leader).header.memberID
        let removed = try await cluster.etcdctl(["member", "remove", String(leaderID, radix: 16)], endpoints: [follower])
        #expect(removed.status == 0, "\(removed.output)")
        #expect(removed.output.contains("removed from cluster"))
    }
}
