import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import TestSupport
import Testing

/// `etcdctl member add` prints the `ETCD_*` variables the new member needs; pasted into its
/// environment, they start it as a member of the cluster, as with etcd.
@Suite("Joining with etcdctl member add's variables", .cluster, .serialized)
struct MemberAddEnvironmentTests {
    @Test("a one-member cluster grows to two with the variables etcdctl member add prints")
    func theVariablesOfMemberAddStartTheNewMember() async throws {
        let cluster = try await ClusterProcesses(size: 2, founding: 1, extraArguments: ClusterTests.timers)
        defer { cluster.destroy() }
        try await cluster.start()
        _ = try await cluster.waitForLeader(among: [0])
        let added = try await cluster.etcdctl(["member", "add", "m1", "--peer-urls=\(cluster.peerURL(1))"], endpoints: [0])
        #expect(added.status == 0, "\(added.output)")
        var environment: [String: String] = [:]
        for line in added.output.split(separator: "\n") where line.hasPrefix("ETCD_") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            environment[parts[0]] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        #expect(environment.keys.sorted() == ["ETCD_INITIAL_ADVERTISE_PEER_URLS", "ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE", "ETCD_NAME"])
        #expect(environment["ETCD_INITIAL_CLUSTER_STATE"] == "existing")

        // Only what a host decides itself goes on the command line: where to listen and store.
        let member = cluster.members[1]
        try await member.start(
            environment: environment.merging(["ETCD_HEARTBEAT_INTERVAL": "50", "ETCD_ELECTION_TIMEOUT": "500"]) { $1 },
            arguments: ["--listen-peer-urls", "http://127.0.0.1:\(member.peerPort)"])
        let client = try cluster.client([1])
        defer { Task { await client.close() } }
        #expect(try await client.put("joined", "yes").header.revision > 1)
        let members = try await client.call(Etcdserverpb_ClusterRPCs.memberList, Etcdserverpb_MemberListRequest()).members
        #expect(members.map(\.name).sorted() == ["m0", "m1"])
        #expect(members.allSatisfy { !$0.clientUrls.isEmpty })
    }
}
