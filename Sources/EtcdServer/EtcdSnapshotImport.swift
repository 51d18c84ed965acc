import Auth
import Backend
import BoltReader
import EtcdProto
import Foundation
import MVCC
import SwiftProtobuf

/// Moves an etcd cluster's data to swift-etcd: reads an etcd backend (bbolt), as `etcdctl
/// snapshot save` writes it or as it lies in a stopped member's `member/snap/db`, into a new
/// swift-etcd backend, for ``SnapshotRestore`` to make a member of it.
///
/// Kept: every key revision with its create and mod revisions, version and lease (so clients'
/// revisions, Kubernetes' resource versions among them, stay valid, and history and watches
/// resume where they were), the compaction point, the leases (each restarts at its full TTL,
/// as etcd's restore does), and auth (users with their bcrypt hashes, roles, whether auth is
/// on, its revision). Not kept, as in any etcd restore: membership (from the restore's flags)
/// and alarms. etcd's buckets: `key` (revision → `mvccpb.KeyValue`; a tombstone's revision ends
/// in `t`), `meta` (`finishedCompactRev`, `scheduledCompactRev`), `lease` (`leasepb.Lease`),
/// `auth`, `authUsers`, `authRoles`.
package enum EtcdSnapshotImport {
    /// What an import found.
    package struct Summary: Equatable, Sendable {
        package var revisions: Int
        /// The store's revision: the newest key revision's, or a later compaction's.
        package var newestRevision: Int64
        package var compactedRevision: Int64?
        package var leases: Int
        package var users: Int
        package var roles: Int
    }

    /// Changes written per backend transaction.
    private static let batchSize = 10_000

    /// Reads the bbolt database in the first `bytes` bytes of `path` into a new backend at
    /// `destination`.
    package static func importDatabase(from path: String, bytes: Int64, to destination: String) throws -> Summary {
        do {
            return try importDatabase(try BoltFile(path: path, length: Int(bytes)), path: path, to: destination)
        } catch let failure as BoltFile.Failure {
            throw BackupFile.Refusal("\(path) is not a readable etcd snapshot: \(failure.description)")
        }
    }

    private static func importDatabase(_ bolt: BoltFile, path: String, to destination: String) throws -> Summary {
        let backend = try SQLiteBackend(path: destination, synchronousCommits: false)
        var summary = Summary(revisions: 0, newestRevision: 1, compactedRevision: nil, leases: 0, users: 0, roles: 0)
        var batch: [Change] = []
        batch.reserveCapacity(batchSize)
        let hasKeys = try bolt.forEach(inBucket: "key") { key, value in
            let change = try change(revisionKey: key, value: value)
            summary.newestRevision = max(summary.newestRevision, change.revision.main)
            summary.revisions += 1
            batch.append(change)
            if batch.count == batchSize {
                try backend.commit(batch, meta: [:])
                batch.removeAll(keepingCapacity: true)
            }
        }
        guard hasKeys else { throw BackupFile.Refusal("\(path) is a bbolt database without etcd's key bucket: not an etcd backend") }

        var meta: [SQLiteBackend.Meta: Int64] = [:]
        var scheduledCompaction: Int64?
        try bolt.forEach(inBucket: "meta") { key, value in
            switch String(decoding: key, as: UTF8.self) {
            case "finishedCompactRev": summary.compactedRevision = try revision(value).main
            case "scheduledCompactRev": scheduledCompaction = try revision(value).main
            default: break
            }
        }
        if let compacted = summary.compactedRevision { meta[.compactedRevision] = compacted }
        // As etcd restores: the revision is at least the compaction's, finished or scheduled
        // (its newest revisions may have been tombstones the compaction removed).
        summary.newestRevision = max(summary.newestRevision, summary.compactedRevision ?? 0, scheduledCompaction ?? 0)
        meta[.revision] = summary.newestRevision

        var leases: [Int64: SQLiteBackend.LeaseRow?] = [:]
        try bolt.forEach(inBucket: "lease") { _, value in
            let lease = try LeaseRecord(value)
            leases[lease.id] = SQLiteBackend.LeaseRow(id: lease.id, ttl: lease.ttl, remainingMilliseconds: nil)
        }
        summary.leases = leases.count

        let auth = try authState(bolt)
        summary.users = auth.users.count
        summary.roles = auth.roles.count
        try backend.commit(batch, meta: meta, documents: [.auth: auth.encoded()], leases: leases)

        // A compaction etcd scheduled but had not finished when the snapshot was taken is
        // finished here, as etcd finishes it when it restarts.
        if let scheduled = scheduledCompaction, scheduled > (summary.compactedRevision ?? 0) {
            var store = try KeyValueStore(restoringFrom: backend)
            let kept = try store.compact(atMain: scheduled)
            try backend.commit([], meta: [.compactedRevision: scheduled], removingAtOrBefore: (scheduled, kept))
            summary.compactedRevision = scheduled
        }
        try backend.checkpoint()
        return summary
    }

    /// etcd's revision key: the main revision (8 bytes, big-endian), `_`, the sub revision
    /// (8 bytes), and `t` for a tombstone.
    private static func revision(_ bytes: [UInt8]) throws -> Revision {
        guard bytes.count >= 17, bytes[8] == UInt8(ascii: "_") else {
            throw BackupFile.Refusal("an etcd revision key of \(bytes.count) bytes is malformed")
        }
        func bigEndian(_ range: Range<Int>) -> Int64 {
            bytes[range].reduce(Int64(0)) { $0 << 8 | Int64($1) }
        }
        return Revision(main: bigEndian(0..<8), sub: bigEndian(9..<17))
    }

    private static func change(revisionKey: [UInt8], value: [UInt8]) throws -> Change {
        let at = try revision(revisionKey)
        let record = try decoded(Mvccpb_KeyValue.self, value, "the key revision \(at.main).\(at.sub)")
        if revisionKey.count == 18, revisionKey[17] == UInt8(ascii: "t") {
            return Change(
                kind: .delete, revision: at,
                kv: KeyValue(key: Array(record.key), value: [], createRevision: 0, modRevision: at.main, version: 0, lease: 0))
        }
        return Change(
            kind: .put, revision: at,
            kv: KeyValue(
                key: Array(record.key), value: Array(record.value), createRevision: record.createRevision,
                modRevision: record.modRevision, version: record.version, lease: record.lease))
    }

    /// etcd's `leasepb.Lease`: `ID` (1), `TTL` (2) and `RemainingTTL` (3), varints; not part of
    /// the client API, so decoded here.
    private struct LeaseRecord {
        var id: Int64 = 0
        var ttl: Int64 = 0

        init(_ bytes: [UInt8]) throws {
            var index = 0
            func varint() throws -> UInt64 {
                var result: UInt64 = 0
                var shift: UInt64 = 0
                while index < bytes.count, shift < 64 {
                    let byte = bytes[index]
                    index += 1
                    result |= UInt64(byte & 0x7F) << shift
                    if byte & 0x80 == 0 { return result }
                    shift += 7
                }
                throw BackupFile.Refusal("a lease record is malformed")
            }
            while index < bytes.count {
                let tag = try varint()
                guard tag & 7 == 0 else { throw BackupFile.Refusal("a lease record has a field that is not a varint") }
                let number = try varint()
                switch tag >> 3 {
                case 1: id = Int64(bitPattern: number)
                case 2: ttl = Int64(bitPattern: number)
                default: break
                }
            }
        }
    }

    private static func decoded<Record: SwiftProtobuf.Message>(_: Record.Type, _ bytes: [UInt8], _ what: String) throws -> Record {
        do {
            return try Record(serializedBytes: bytes)
        } catch {
            throw BackupFile.Refusal("\(what) record does not decode: \(error)")
        }
    }

    /// Users, roles, whether auth is on and its revision, from etcd's auth buckets.
    private static func authState(_ bolt: BoltFile) throws -> AuthState {
        var enabled = false
        var revision: UInt64 = 1
        try bolt.forEach(inBucket: "auth") { key, value in
            switch String(decoding: key, as: UTF8.self) {
            case "authEnabled": enabled = value.first == 1
            case "authRevision" where value.count == 8: revision = value.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            default: break
            }
        }
        var users: [AuthState.User] = []
        try bolt.forEach(inBucket: "authUsers") { _, value in
            let user = try decoded(Authpb_User.self, value, "a user")
            users.append(AuthState.User(
                name: String(decoding: user.name, as: UTF8.self),
                passwordHash: user.password.isEmpty ? nil : String(decoding: user.password, as: UTF8.self),
                roles: user.roles.sorted(), noPassword: user.options.noPassword))
        }
        var roles: [AuthState.Role] = []
        try bolt.forEach(inBucket: "authRoles") { _, value in
            let role = try decoded(Authpb_Role.self, value, "a role")
            roles.append(AuthState.Role(
                name: String(decoding: role.name, as: UTF8.self),
                permissions: role.keyPermission.map { permission in
                    AuthState.Permission(
                        access: AuthState.Access(rawValue: permission.permType.rawValue) ?? .read, key: Array(permission.key),
                        rangeEnd: Array(permission.rangeEnd))
                }))
        }
        return AuthState(enabled: enabled, revision: max(revision, 1), users: users, roles: roles)
    }
}
