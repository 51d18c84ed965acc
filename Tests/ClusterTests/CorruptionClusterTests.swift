import Backend
import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import Testing
import TestSupport

/// etcd's corruption checks with real processes and real files: a member whose backend was
/// changed on disk refuses to start (`--experimental-initial-corrupt-check`), and one whose data
/// changes while it runs is found by the leader's periodic check, which raises CORRUPT.
@Suite("Corruption checks", .cluster)
struct CorruptionClusterTests {
    /// A value easy to find in the backend's files.
    static let marker = "corruption-marker-" + String(repeating: "m", count: 64)

    /// Waits until every member has applied the newest write (serializable reads of `key`).
    static func waitForAll(_ cluster: ClusterProcesses, toHave key: String) async throws {
        for index in cluster.members.indices {
            let client = try cluster.client([index])
            let deadline = ContinuousClock.now + .seconds(10)
            while try await client.get(key, serializable: true).kvs.isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            await client.close()
        }
    }

    /// Changes the value of the record `marked` has at `revision` in `member`'s backend, as
    /// another process writing to its file would (the member may be running).
    static func changeMarkedRecord(of member: ServerProcess, at revision: Int64) throws {
        let backend = try SQLiteBackend(
            path: member.dataDirectory.appendingPathComponent("member/snap/backend.sqlite").path, synchronousCommits: true)
        let record = KeyValue(
            key: Array("marked".utf8), value: Array("changed".utf8), createRevision: revision, modRevision: revision, version: 1, lease: 0)
        try backend.commit([Change(kind: .put, revision: Revision(main: revision, sub: 0), kv: record)], meta: [:])
    }

    /// The alarms, once there are any (20 s at most); `meanwhile` runs between looks.
    static func firstAlarms(_ client: EtcdClient, meanwhile: () async -> Void) async throws -> [Etcdserverpb_AlarmMember] {
        var alarms: [Etcdserverpb_AlarmMember] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while alarms.isEmpty, ContinuousClock.now < deadline {
            await meanwhile()
            try await Task.sleep(for: .milliseconds(200))
            alarms = try await client.call(Etcdserverpb_MaintenanceRPCs.alarm, .with { $0.action = .get }).alarms
        }
        return alarms
    }

    /// Flips one byte of every copy of `marker` in the backend's files (the database and
    /// SQLite's log), or flips it back (`back`); returns how many copies it changed.
    static func flipMarker(in dataDirectory: URL, back: Bool = false) throws -> Int {
        var flipped = 0
        for name in ["backend.sqlite", "backend.sqlite-wal"] {
            let url = dataDirectory.appendingPathComponent("member/snap/\(name)")
            guard var bytes = try? Data(contentsOf: url) else { continue }
            var pattern = Data(marker.utf8)
            if back { pattern[20] ^= 0x01 }
            var searchFrom = bytes.startIndex
            while let found = bytes.range(of: pattern, in: searchFrom..<bytes.endIndex) {
                bytes[found.lowerBound + 20] ^= 0x01
                flipped += 1
                searchFrom = found.upperBound
            }
            try bytes.write(to: url)
        }
        return flipped
    }

    @Test func aMemberWhoseBackendChangedOnDiskRefusesToStart() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ["--experimental-initial-corrupt-check"])
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        let client = try cluster.client()
        defer { Task { await client.close() } }
        try await client.put("marked", Self.marker)
        for index in 0..<20 { try await client.put("other/\(index)", "\(index)") }
        try await Self.waitForAll(cluster, toHave: "other/19")

        let id = String(try await cluster.status(2).header.memberID, radix: 16)
        cluster.members[2].terminate()
        #expect(try Self.flipMarker(in: cluster.members[2].dataDirectory) >= 1)
        await #expect(throws: (any Error).self) { try await cluster.start(2) }
        let log = try String(contentsOf: cluster.directory.appendingPathComponent("m2.log"), encoding: .utf8)
        // The changed record fails its checksum before any hash is compared.
        #expect(log.contains("\(id) found a corrupt record in its backend (\(cluster.members[2].dataDirectory.path)/member/snap/backend.sqlite): a record does not match its checksum"))

        // The others still serve (once they have elected a leader: member 2 may have led);
        // the flipped byte put back, the member starts.
        _ = try await cluster.waitForLeader(among: [0, 1])
        try await client.put("still", "serving")
        #expect(try Self.flipMarker(in: cluster.members[2].dataDirectory, back: true) >= 1)
        try await cluster.start(2)
        let restarted = try cluster.client([2])
        #expect(try await restarted.get("marked").kvs.first?.value == Data(Self.marker.utf8))
        await restarted.close()
    }

    @Test func thePeriodicCheckRaisesCorruptForAMemberChangedBehindItsBack() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ["--experimental-corrupt-check-time", "1s"])
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        let client = try cluster.client()
        defer { Task { await client.close() } }
        let put = try await client.put("marked", Self.marker)
        try await Self.waitForAll(cluster, toHave: "marked")
        try await Task.sleep(for: .seconds(2))
        #expect(try await client.call(Etcdserverpb_MaintenanceRPCs.alarm, .with { $0.action = .get }).alarms.isEmpty)

        // Another process changes member 1's stored value while it runs.
        let victim = try await cluster.status(1).header.memberID
        try Self.changeMarkedRecord(of: cluster.members[1], at: put.header.revision)

        let alarms = try await Self.firstAlarms(client) {}
        #expect(alarms.map(\.alarm) == [.corrupt])
        #expect(alarms.map(\.memberID) == [victim])
        let corrupt = EtcdClientError(code: .dataLoss, message: "etcdserver: corrupt cluster")
        await #expect(throws: corrupt) { try await client.put("k", "v") }
        await #expect(throws: corrupt) { _ = try await client.get("marked") }
        await #expect(throws: corrupt) { try await client.grantLease(ttl: 10) }
        let health = try await cluster.etcdctl(["endpoint", "health"], endpoints: [0])
        #expect(health.output.contains("alarm activated: CORRUPT") || health.output.contains("unhealthy"), "\(health.output)")
    }

    /// The compaction hash check: history at or before the newest compaction never changes
    /// again, so a member whose kept record there differs is corrupt even while writes go on.
    @Test func theCompactionHashCheckFindsAChangedRecordBeforeTheCompaction() async throws {
        let cluster = try await ClusterProcesses(
            size: 3, extraArguments: ["--experimental-compact-hash-check-enabled", "--experimental-compact-hash-check-time", "1s"])
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        let client = try cluster.client()
        defer { Task { await client.close() } }
        let put = try await client.put("marked", Self.marker)
        let later = try await client.put("later", "1")
        try await client.compact(revision: later.header.revision)
        try await Self.waitForAll(cluster, toHave: "later")
        try await Task.sleep(for: .seconds(2))
        #expect(try await client.call(Etcdserverpb_MaintenanceRPCs.alarm, .with { $0.action = .get }).alarms.isEmpty)

        let victim = try await cluster.status(2).header.memberID
        try Self.changeMarkedRecord(of: cluster.members[2], at: put.header.revision)
        // Writes go on; the check compares the history at the compaction, which they do not touch.
        var written = 0
        let alarms = try await Self.firstAlarms(client) {
            _ = try? await client.put("busy/\(written % 10)", "\(written)")
            written += 1
        }
        #expect(alarms.map(\.alarm) == [.corrupt])
        #expect(alarms.map(\.memberID) == [victim])
    }
}
