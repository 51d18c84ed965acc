import EtcdClient
import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf
import Testing
import TestSupport

@testable import EtcdEmbed

/// Moving an etcd cluster to swift-etcd: a snapshot saved from Debian's real etcd restores into
/// a swift-etcd member that serves the same keys at the same revisions, the same history after
/// the same compaction, the same leases and the same users, roles and passwords.
@Suite("An etcd snapshot restored into swift-etcd", .server)
struct EtcdSnapshotImportTests {
    static let hasEtcd = FileManager.default.isExecutableFile(atPath: ServerProcess.etcdBinary.path)

    private static func put(_ key: String, _ value: String) -> Etcdserverpb_RequestOp {
        var op = Etcdserverpb_RequestOp()
        op.requestPut.key = Data(key.utf8)
        op.requestPut.value = Data(value.utf8)
        return op
    }

    private static func everything(at revision: Int64 = 0) -> Etcdserverpb_RangeRequest {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data([0])
        request.rangeEnd = Data([0])
        request.revision = revision
        return request
    }

    @Test(.enabled(if: hasEtcd)) func keysRevisionsHistoryLeasesAndAuthComeAcross() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("import-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let snapshot = directory.appendingPathComponent("etcd.db").path
        let root = EtcdCredentials(user: "root", password: "root-secret")
        var expected: (latest: Etcdserverpb_RangeResponse, atFive: Etcdserverpb_RangeResponse, lease: Int64)?
        try await ServerProcess.withFreshServer(.etcd) { etcd, client in
            for index in 0..<5 { _ = try await client.put("k", "v\(index)") }  // revisions 2...6
            var txn = Etcdserverpb_TxnRequest()
            txn.success = [Self.put("a", "1"), Self.put("b", "2"), Self.put("c", "3")]  // revision 7, sub 0...2
            _ = try await client.txn(txn)
            _ = try await client.delete(Data("b".utf8))  // a tombstone at 8
            let lease = try await client.grantLease(ttl: 600)
            _ = try await client.put("leased", "x", lease: lease.id)  // 9
            _ = try await client.compact(revision: 4)
            _ = try await client.put("k", "after")  // 10
            _ = try await client.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "root"; $0.password = root.password })
            _ = try await client.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = "root" })
            _ = try await client.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = "root"; $0.role = "root" })
            _ = try await client.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "alice"; $0.password = "alice-secret" })
            _ = try await client.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = "reader" })
            _ = try await client.call(Etcdserverpb_AuthRPCs.roleGrantPermission, .with {
                $0.name = "reader"
                $0.perm = .with { $0.permType = .read; $0.key = Data("a".utf8); $0.rangeEnd = Data("z".utf8) }
            })
            _ = try await client.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = "alice"; $0.role = "reader" })
            _ = try await client.call(Etcdserverpb_AuthRPCs.authEnable, .init())
            let authed = try EtcdClient(endpoints: ["http://127.0.0.1:\(etcd.port)"], credentials: root)
            expected = (
                try await authed.range(Self.everything()), try await authed.range(Self.everything(at: 5)), lease.id
            )
            _ = try await authed.saveSnapshot(to: snapshot)
            await authed.close()
        }
        let (latest, atFive, leaseID) = try #require(expected)
        #expect(latest.kvs.map(\.key) == ["a", "c", "k", "leased"].map { Data($0.utf8) })
        #expect(latest.header.revision == 10)

        let configuration = try await EmbeddedEtcdTests().configuration(directory: directory.appendingPathComponent("member"))
        var restore = SnapshotRestore(snapshotPath: snapshot)
        restore.name = configuration.name
        restore.dataDirectory = try #require(configuration.dataDirectory)
        restore.initialCluster = configuration.initialCluster
        restore.initialAdvertisePeerURLs = configuration.initialAdvertisePeerURLs
        let outcome = try restore.run()
        #expect(outcome.revision == 10)
        let member = try await EmbeddedEtcd.start(configuration)
        let port = try #require(member.clientAddresses.first?.port)
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(port)"], credentials: root)
        // The same records, revisions, versions and leases; the same history after the compaction.
        let restored = try await client.range(Self.everything())
        #expect(restored.kvs == latest.kvs)
        #expect(restored.header.revision == 10)
        #expect(try await client.range(Self.everything(at: 5)).kvs == atFive.kvs)
        await #expect(throws: EtcdClientError(code: .outOfRange, message: "etcdserver: mvcc: required revision has been compacted")) {
            _ = try await client.range(Self.everything(at: 3))
        }
        let lease = try await client.leaseTimeToLive(leaseID, keys: true)
        #expect(lease.grantedTtl == 600 && lease.keys == [Data("leased".utf8)])
        // Users and roles, their bcrypt hashes too: alice logs in with her etcd password.
        let users = try await client.call(Etcdserverpb_AuthRPCs.userList, .init())
        #expect(users.users == ["alice", "root"])
        let alice = try EtcdClient(endpoints: ["127.0.0.1:\(port)"], credentials: EtcdCredentials(user: "alice", password: "alice-secret"))
        #expect(try await alice.get("a").kvs.map(\.value) == [Data("1".utf8)])
        await #expect(throws: EtcdClientError(code: .permissionDenied, message: "etcdserver: permission denied")) {
            _ = try await alice.put("a", "mine")
        }
        await alice.close()
        // The restored member goes on from etcd's revision.
        #expect(try await client.put("k", "swift").header.revision == 11)
        await client.close()
        await member.stop()

        // bbolt keeps no checksums of its pages: a damaged or cut file must be refused (or read
        // as whatever its bytes say), never crash or hang the import. Seeded, so reproducible.
        let original = try Data(contentsOf: URL(fileURLWithPath: snapshot)).dropLast(32)
        var generator = SeededRandom(seed: 20_261_205)
        var refused = 0
        for attempt in 0..<240 {
            var damaged = Data(original)
            if attempt < 40 {
                damaged = damaged.prefix(Int.random(in: 0..<damaged.count, using: &generator))
            } else {
                for _ in 0..<(1 + attempt % 4) {
                    damaged[Int.random(in: 0..<damaged.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
            }
            let path = directory.appendingPathComponent("damaged.db").path
            let destination = directory.appendingPathComponent("damaged-\(attempt).sqlite").path
            try damaged.write(to: URL(fileURLWithPath: path))
            do {
                _ = try EtcdSnapshotImport.importDatabase(from: path, bytes: Int64(damaged.count), to: destination)
            } catch is BackupFile.Refusal {
                refused += 1
            }
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: destination + suffix) }
        }
        // Which ones are refused depends on the bytes etcd wrote (IDs, times): many are, and
        // none failed any other way (that would have ended the test).
        #expect(refused > 20)
    }
}
