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

/// Backups (`Snapshot`), restores (`swift-etcdutl snapshot restore`), `Hash` and online
/// defragmentation on one member, as an operator uses them.
@Suite("Backups, restore and defragmentation", .server)
struct BackupTests {
    /// A member in a fresh directory, with a client; `body` runs, then both stop.
    private func withMember(
        _ body: (EmbeddedEtcd, EtcdClient, URL, EmbedConfiguration) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("backup-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let configuration = try await EmbeddedEtcdTests().configuration(directory: directory.appendingPathComponent("member"))
        let etcd = try await EmbeddedEtcd.start(configuration)
        let port = try #require(etcd.clientAddresses.first?.port)
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(port)"])
        do {
            try await body(etcd, client, directory, configuration)
        } catch {
            await client.close()
            await etcd.stop()
            throw error
        }
        await client.close()
        await etcd.stop()
    }

    /// A restore of `backup` into `directory` for a new member, and that member's configuration.
    private func restoring(_ backup: String, into directory: URL) async throws -> (EmbedConfiguration, SnapshotRestore) {
        let target = try await EmbeddedEtcdTests().configuration(directory: directory)
        var restore = SnapshotRestore(snapshotPath: backup)
        restore.name = target.name
        restore.dataDirectory = directory.path
        restore.initialCluster = target.initialCluster
        restore.initialAdvertisePeerURLs = target.initialAdvertisePeerURLs
        return (target, restore)
    }

    /// Every live key with its revisions, version and lease, at `revision` (0: now).
    private func everything(_ client: EtcdClient, revision: Int64 = 0) async throws -> [Mvccpb_KeyValue] {
        try await client.get(Data([0]), rangeEnd: Data([0]), revision: revision).kvs
    }

    @Test func aBackupTakenUnderWritesRestoresExactlyItsRevision() async throws {
        try await withMember { _, client, directory, _ in
            for index in 0..<50 { try await client.put("before/\(index)", String(repeating: "v", count: index * 100)) }
            let lease = try await client.grantLease(ttl: 600)
            try await client.put(Data("leased".utf8), Data("yes".utf8), lease: lease.id)
            // A writer goes on while the backup streams.
            let writer = Task {
                for index in 0..<200 { try await client.put("during/\(index)", "\(index)") }
            }
            let backup = directory.appendingPathComponent("backup.db").path
            let (revision, bytes) = try await client.saveSnapshot(to: backup)
            try await writer.value
            #expect(BackupFile.hasChecksum(fileSize: bytes))
            let expected = try await everything(client, revision: revision)
            #expect(expected.count >= 51)

            let status = try BackupFile.status(of: backup)
            #expect(status.revision == revision)
            #expect(status.version == "3.6.0")
            #expect(status.totalSize == bytes - 32)

            let (target, restore) = try await restoring(backup, into: directory.appendingPathComponent("restored"))
            let outcome = try restore.run()
            #expect(outcome.revision == revision)

            let restored = try await EmbeddedEtcd.start(target)
            let restoredClient = try EtcdClient(endpoints: ["127.0.0.1:\(try #require(restored.clientAddresses.first?.port))"])
            let got = try await restoredClient.get(Data([0]), rangeEnd: Data([0]))
            #expect(got.header.revision == revision)
            #expect(got.kvs == expected)
            #expect(try await restoredClient.leaseTimeToLive(lease.id).grantedTtl == 600)
            #expect(try await restoredClient.put("after", "1").header.revision == revision + 1)
            #expect(restored.memberID == outcome.memberID)
            await restoredClient.close()
            await restored.stop()
        }
    }

    @Test func aRestoreRefusesBadBackupsAndWritesNothing() async throws {
        try await withMember { _, client, directory, _ in
            for index in 0..<20 { try await client.put("k\(index)", String(repeating: "x", count: 1000)) }
            let backup = directory.appendingPathComponent("good.db").path
            try await client.saveSnapshot(to: backup)
            let original = try Data(contentsOf: URL(fileURLWithPath: backup))
            func refusal(_ bytes: Data, dataDirectory: String? = nil) throws -> String {
                let path = directory.appendingPathComponent("candidate.db").path
                try bytes.write(to: URL(fileURLWithPath: path))
                var restore = SnapshotRestore(snapshotPath: path)
                restore.dataDirectory = dataDirectory ?? directory.appendingPathComponent("target").path
                do {
                    _ = try restore.run()
                    return "restored"
                } catch {
                    return "\(error)"
                }
            }
            var flipped = original
            flipped[4096 + 100] ^= 0xFF
            let flippedError = try refusal(flipped)
            #expect(flippedError.hasPrefix("expected sha256 "), "\(flippedError)")
            #expect(flippedError.contains("the file is truncated or corrupted"))
            #expect(try refusal(original.prefix(original.count - 1000)).hasPrefix("snapshot missing hash but --skip-hash-check=false"))
            #expect(try refusal(Data(repeating: 7, count: 4096 + 32)).contains("is not a snapshot: neither a swift-etcd (SQLite) nor an etcd (bbolt) database"))
            let occupied = directory.appendingPathComponent("occupied")
            try FileManager.default.createDirectory(at: occupied, withIntermediateDirectories: true)
            try Data("x".utf8).write(to: occupied.appendingPathComponent("file"))
            #expect(try refusal(original, dataDirectory: occupied.path) == "data-dir \"\(occupied.path)\" not empty or could not be read")
            // Nothing was made for the refused restores, not even a temporary directory.
            let left = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
            #expect(left == ["candidate.db", "good.db", "member", "occupied"])
            // The same bytes, untouched, restore.
            #expect(try refusal(original) == "restored")
        }
    }

    @Test func bumpingAndCompactingTheRevisionOnRestore() async throws {
        try await withMember { _, client, directory, _ in
            try await client.put("a", "1")
            try await client.put("a", "2")
            let backup = directory.appendingPathComponent("backup.db").path
            let (revision, _) = try await client.saveSnapshot(to: backup)
            let (target, prepared) = try await restoring(backup, into: directory.appendingPathComponent("restored"))
            var restore = prepared
            restore.bumpRevision = 1000
            #expect(throws: BackupFile.Refusal("--mark-compacted required if --bump-revision > 0")) { try restore.run() }
            restore.markCompacted = true
            #expect(try restore.run().revision == revision + 1000)

            let restored = try await EmbeddedEtcd.start(target)
            let restoredClient = try EtcdClient(endpoints: ["127.0.0.1:\(try #require(restored.clientAddresses.first?.port))"])
            let current = try await restoredClient.get("a")
            #expect(current.header.revision == revision + 1000)
            #expect(current.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["2"])
            await #expect(throws: EtcdClientError(code: .outOfRange, message: "etcdserver: mvcc: required revision has been compacted")) {
                _ = try await restoredClient.get(Data("a".utf8), revision: revision)
            }
            #expect(try await restoredClient.put("a", "3").header.revision == revision + 1001)
            await restoredClient.close()
            await restored.stop()
        }
    }

    @Test func aBackupWhoseClientLeavesIsRemoved() async throws {
        try await withMember { etcd, client, directory, _ in
            let value = String(repeating: "z", count: 100_000)
            for index in 0..<60 { try await client.put("big/\(index)", value) }
            let port = try #require(etcd.clientAddresses.first?.port)
            let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: port))
            let call = connection.makeStreamingCall(
                Etcdserverpb_MaintenanceRPCs.snapshot.path, requestType: Etcdserverpb_SnapshotRequest.self,
                responseType: Etcdserverpb_SnapshotResponse.self)
            call.send(Etcdserverpb_SnapshotRequest())
            call.finishSending()
            var iterator = call.responses.makeAsyncIterator()
            let first = try #require(try await iterator.next())
            #expect(first.remainingBytes > 5_000_000)
            call.cancel()
            await connection.close()
            // The member notices at its next send and removes its copy.
            let snap = directory.appendingPathComponent("member/member/snap").path
            let deadline = ContinuousClock.now + .seconds(10)
            var backups: [String] = ["pending"]
            while ContinuousClock.now < deadline {
                backups = try FileManager.default.contentsOfDirectory(atPath: snap).filter { $0.hasSuffix(".backup.sqlite") }
                if backups.isEmpty { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(backups.isEmpty)
            // And still serves.
            try await client.put("after", "1")
        }
    }

    @Test func defragmentingGivesSpaceBackWhileWritesGoOn() async throws {
        try await withMember { _, client, _, _ in
            let value = String(repeating: "d", count: 100_000)
            for index in 0..<80 { try await client.put("fill/\(index)", value) }
            let deleted = try await client.delete(Data("fill/".utf8), rangeEnd: Data("fill0".utf8))
            #expect(deleted.deleted == 80)
            try await client.compact(revision: deleted.header.revision)
            let compacted = try await client.status()
            #expect(compacted.dbSize > 8_000_000)
            #expect(compacted.dbSizeInUse < compacted.dbSize / 4, "\(compacted.dbSizeInUse) of \(compacted.dbSize)")

            // Writes go on during the defragmentation, and none fails.
            let writer = Task {
                var written = 0
                while !Task.isCancelled && written < 5000 {
                    try await client.put("during/\(written % 20)", "\(written)")
                    written += 1
                }
                return written
            }
            try await Task.sleep(for: .milliseconds(50))
            _ = try await client.call(Etcdserverpb_MaintenanceRPCs.defragment, Etcdserverpb_DefragmentRequest())
            writer.cancel()
            let written = try await writer.value
            #expect(written > 0)
            let defragmented = try await client.status()
            #expect(defragmented.dbSize < compacted.dbSize / 4, "\(defragmented.dbSize) after, \(compacted.dbSize) before")
            #expect(defragmented.dbSize - defragmented.dbSizeInUse < 1 << 20)
            let during = try await client.get(Data("during/".utf8), rangeEnd: Data("during0".utf8))
            #expect(during.kvs.count == min(written, 20))
            #expect(during.kvs.map(\.modRevision).max() == during.header.revision)
        }
    }

    @Test func theHashChangesWithTheDataAndOnlyWithIt() async throws {
        try await withMember { _, client, _, _ in
            try await client.put("a", "1")
            let first = try await client.call(Etcdserverpb_MaintenanceRPCs.hash, Etcdserverpb_HashRequest())
            let again = try await client.call(Etcdserverpb_MaintenanceRPCs.hash, Etcdserverpb_HashRequest())
            #expect(first.hash == again.hash)
            #expect(first.header.revision == 2)
            // A defragmentation moves pages, not data.
            _ = try await client.call(Etcdserverpb_MaintenanceRPCs.defragment, Etcdserverpb_DefragmentRequest())
            #expect(try await client.call(Etcdserverpb_MaintenanceRPCs.hash, Etcdserverpb_HashRequest()).hash == first.hash)
            try await client.put("a", "2")
            let changed = try await client.call(Etcdserverpb_MaintenanceRPCs.hash, Etcdserverpb_HashRequest())
            #expect(changed.hash != first.hash)
            #expect(changed.header.revision == 3)
        }
    }
}
