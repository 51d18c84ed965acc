import EtcdClient
import EtcdProto
import Foundation
import TestSupport
import Testing

/// A member of a three-member cluster whose log sync fails (the `faultfs` shim, ``DiskFault``):
/// it stops, the other two go on (electing a new leader when it led), no acknowledged write is
/// lost, and restarted on a working disk it catches up to the same keyspace as the others.
@Suite("Failing disk in a cluster", .cluster, .serialized)
struct FailingDiskClusterTests {
    enum Victim: String, CaseIterable, Sendable {
        case leader, follower
    }

    @Test(arguments: Victim.allCases)
    func aMemberWhoseLogSyncFailsStopsAndTheOthersGoOn(victim: Victim) async throws {
        let cluster = try await ClusterProcesses(size: 3)
        defer { cluster.destroy() }
        let shim = try await DiskFault.buildShim(in: cluster.directory)
        let fault = DiskFault(.sync, of: "/member/wal/", errno: EIO)
        let triggers = (0..<3).map { cluster.directory.appendingPathComponent("strike-m\($0)") }
        for index in 0..<3 {
            try await cluster.start(index, environment: fault.environment(shim: shim, trigger: triggers[index]), waitUntilServing: false)
        }
        for member in cluster.members { try await member.waitUntilServing() }
        let leader = try await cluster.waitForLeader()
        let failing = victim == .leader ? leader : (leader + 1) % 3
        let others = (0..<3).filter { $0 != failing }

        let client = try cluster.client()
        var acknowledged: [String: String] = [:]
        var failures = 0
        for n in 0..<150 {
            if n == 50 { DiskFault.strike(triggers[failing]) }
            let key = String(format: "key%03d", n)
            do {
                try await client.put(key, "value\(n)")
                acknowledged[key] = "value\(n)"
            } catch {
                failures += 1
            }
        }
        await client.close()
        let status = await cluster.members[failing].exitStatus(within: .seconds(30))
        #expect(status == 1, "the member with the failing disk did not stop")
        #expect(acknowledged.count >= 140, "\(failures) puts failed")
        #expect(!FileManager.default.fileExists(atPath: triggers[failing].path), "the fault never struck")
        let log = try String(contentsOf: cluster.directory.appendingPathComponent("m\(failing).log"), encoding: .utf8)
        #expect(log.contains("failed to persist raft state to the log"))
        _ = try await cluster.waitForLeader(among: others)

        try await cluster.start(failing)
        let newest = try await cluster.status(others[0]).header.revision
        let deadline = ContinuousClock.now + .seconds(30)
        while try await cluster.status(failing).header.revision < newest, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        var keyspaces: [[String: String]] = []
        for index in 0..<3 {
            let reader = try cluster.client([index])
            let range = try await reader.get(Data("key".utf8), rangeEnd: Data("kez".utf8), serializable: true)
            await reader.close()
            keyspaces.append(Dictionary(uniqueKeysWithValues: range.kvs.map {
                (String(decoding: $0.key, as: UTF8.self), String(decoding: $0.value, as: UTF8.self))
            }))
        }
        for (key, value) in acknowledged {
            #expect(keyspaces[failing][key] == value, "\(key) on the restarted member")
            #expect(keyspaces[others[0]][key] == value, "\(key) on m\(others[0])")
        }
        #expect(keyspaces[0] == keyspaces[1] && keyspaces[1] == keyspaces[2], "the members disagree")
    }
}
