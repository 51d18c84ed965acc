import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import Testing
import TestSupport

/// etcd's disaster-recovery path with real processes and the real tools: `etcdctl snapshot
/// save` from one member of a cluster under writes, `swift-etcdutl snapshot restore` into
/// every member of a new cluster, which then serves exactly the backup's keys and revisions.
@Suite("Backup and restore of a cluster", .cluster)
struct BackupClusterTests {
    /// `swift-etcdutl` beside `swift-etcd` in the build folder.
    static let etcdutl = ServerProcess.binary.deletingLastPathComponent().appendingPathComponent("swift-etcdutl")

    static func etcdutl(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await runTool(etcdutl, arguments)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/etcdctl")))
    func aClusterRestoredFromOneMembersBackupServesItsRevision() async throws {
        let original = try await ClusterProcesses(size: 3)
        defer { original.destroy() }
        _ = try await original.startAndElect()
        let client = try original.client()
        defer { Task { await client.close() } }
        for index in 0..<100 { try await client.put("before/\(index)", "\(index)") }
        let lease = try await client.grantLease(ttl: 900)
        try await client.put(Data("leased".utf8), Data("1".utf8), lease: lease.id)

        let writer = Task {
            for index in 0..<300 { try await client.put("during/\(index % 50)", "\(index)") }
        }
        try await Task.sleep(for: .milliseconds(100))
        let backup = original.directory.appendingPathComponent("backup.db").path
        let saved = try await original.etcdctl(["snapshot", "save", backup], endpoints: [1])
        #expect(saved.status == 0, "\(saved.output)")
        #expect(saved.output.contains("Snapshot saved at \(backup)"))
        try await writer.value

        let status = try await Self.etcdutl(["snapshot", "status", backup, "-w", "json"])
        #expect(status.status == 0, "\(status.output)")
        let revision = try #require(
            (try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any])?["revision"] as? Int64)
        let expected = try await client.get(Data([0]), rangeEnd: Data([0]), revision: revision).kvs
        #expect(expected.count > 101)

        // A new cluster on new ports: every member restores the same file with its own name.
        let restored = try await ClusterProcesses(size: 4, founding: 3)
        defer { restored.destroy() }
        let initialCluster = (0..<3).map { "\(restored.names[$0])=\(restored.peerURL($0))" }.joined(separator: ",")
        for index in 0..<3 {
            let made = try await Self.etcdutl([
                "snapshot", "restore", backup, "--name", restored.names[index], "--data-dir", restored.members[index].dataDirectory.path,
                "--initial-cluster", initialCluster, "--initial-cluster-token", "test-cluster",
                "--initial-advertise-peer-urls", restored.peerURL(index),
            ])
            #expect(made.status == 0, "\(made.output)")
        }
        try await restored.start()
        _ = try await restored.waitForLeader(among: [0, 1, 2])
        let restoredClient = try restored.client()
        defer { Task { await restoredClient.close() } }
        let got = try await restoredClient.get(Data([0]), rangeEnd: Data([0]))
        #expect(got.header.revision == revision)
        #expect(got.kvs == expected)
        #expect(try await restoredClient.leaseTimeToLive(lease.id).grantedTtl == 900)
        let members = try await restoredClient.call(Etcdserverpb_ClusterRPCs.memberList, Etcdserverpb_MemberListRequest())
        #expect(Set(members.members.map(\.name)) == ["m0", "m1", "m2"])
        #expect(Set(members.members.flatMap(\.peerUrls)) == Set((0..<3).map(restored.peerURL)))

        // It takes writes, and every member holds the same data (`Hash` agrees).
        let put = try await restoredClient.put("after", "1")
        #expect(put.header.revision == revision + 1)
        // A member added now has only the backup's snapshot to start from (the restored log
        // begins after it): it receives the leader's backend and catches up.
        // (Strict reconfiguration counts the members the leader is connected to: retried until
        // its connections to the others are up.)
        let addDeadline = ContinuousClock.now + .seconds(10)
        var added = false
        while !added {
            do {
                _ = try await restoredClient.call(Etcdserverpb_ClusterRPCs.memberAdd, .with { $0.peerUrls = [restored.peerURL(3)] })
                added = true
            } catch {
                guard ContinuousClock.now < addDeadline else { throw error }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        try await restored.join(3, with: [0, 1, 2])
        let clients = try restored.members.indices.map { try restored.client([$0]) }
        defer { for client in clients { Task { await client.close() } } }
        for member in clients {
            let deadline = ContinuousClock.now + .seconds(20)
            while try await member.get("after", serializable: true).kvs.isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        // Their backends converge (the new member's attributes reach each one a moment apart).
        var hashes: [UInt32] = []
        let deadline = ContinuousClock.now + .seconds(10)
        repeat {
            hashes = []
            for member in clients {
                hashes.append(try await member.call(Etcdserverpb_MaintenanceRPCs.hash, Etcdserverpb_HashRequest()).hash)
            }
            if Set(hashes).count == 1 { break }
            try await Task.sleep(for: .milliseconds(200))
        } while ContinuousClock.now < deadline
        #expect(Set(hashes).count == 1, "\(hashes)")
    }

    @Test func aDefragmentationInterruptedByKillDashNineLeavesTheDataIntact() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("defrag-kill-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try await ServerProcess(dataDirectory: directory.appendingPathComponent("data"))
        try await server.start()
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(server.port)"])
        let value = String(repeating: "d", count: 100_000)
        for index in 0..<600 { try await client.put("fill/\(index)", value) }
        for index in stride(from: 0, to: 600, by: 2) { try await client.delete(Data("fill/\(index)".utf8)) }
        let last = try await client.put("last", "written")
        try await client.compact(revision: last.header.revision)
        let expected = try await client.get(Data([0]), rangeEnd: Data([0])).kvs
        #expect(expected.count == 301)
        // The defragmentation (about 30 MB to give back) is killed part way.
        let defrag = Task { try await client.call(Etcdserverpb_MaintenanceRPCs.defragment, Etcdserverpb_DefragmentRequest()) }
        try await Task.sleep(for: .milliseconds(40))
        server.kill9()
        _ = await defrag.result
        await client.close()

        try await server.start()
        let restarted = try EtcdClient(endpoints: ["127.0.0.1:\(server.port)"])
        #expect(try await restarted.get(Data([0]), rangeEnd: Data([0])).kvs == expected)
        _ = try await restarted.call(Etcdserverpb_MaintenanceRPCs.defragment, Etcdserverpb_DefragmentRequest())
        #expect(try await restarted.get(Data([0]), rangeEnd: Data([0])).kvs == expected)
        #expect(try await restarted.status().dbSize < 40_000_000)
        await restarted.close()
        server.kill9()
    }
}
