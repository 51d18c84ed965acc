import Backend
import Crypto
import EtcdProto
import Foundation
import Locking
import Logging
import Synchronization
import WAL

/// `Maintenance.Snapshot`, `Hash` and `Defragment`: backups, the backend's hash, giving space back.
extension EtcdServer {
    /// Bytes of the backend in each `Snapshot` message.
    package static let backupChunkSize = 64 * 1024

    /// Streams a backup of the backend as etcd's `Snapshot` RPC does: a consistent copy holding
    /// every write applied when it was asked for, in chunks with the bytes still to come, then its SHA-256 as
    /// the last message. The first message's header carries the copy's revision. The copy is a
    /// file beside the backend, taken from one read transaction while the member goes on
    /// serving, and removed when the stream ends however it ends (`send` throws once the client
    /// is gone). Blocks the calling thread for the whole transfer.
    package func streamBackup(send: (Etcdserverpb_SnapshotResponse) throws -> Void) throws {
        let path = (snapDirectory as NSString).appendingPathComponent("\(UUID().uuidString).backup.sqlite")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let started = ContinuousClock.now
        // Everything applied, as etcd commits its batch before a backup.
        try Self.waitForBackendCommit(through: currentRevision, published: published, committer: committer)
        try backend.copy(to: path)
        let revision = try SQLiteBackend.storedRevision(ofDatabaseAt: path)
        guard let file = FileHandle(forReadingAtPath: path) else { throw EtcdError.stopped }
        defer { try? file.close() }
        let total = UInt64(try file.seekToEnd())
        try file.seek(toOffset: 0)
        logger.info("sending database snapshot to client", metadata: ["total-bytes": "\(total)", "revision": "\(revision)"])
        var hasher = SHA256()
        var sent: UInt64 = 0
        var first = true
        while sent < total {
            let chunk = try file.read(upToCount: Self.backupChunkSize) ?? Data()
            guard !chunk.isEmpty else { throw EtcdError.stopped }
            hasher.update(data: chunk)
            sent += UInt64(chunk.count)
            var response = Etcdserverpb_SnapshotResponse()
            if first { response.header = header(revision: revision) }
            first = false
            response.remainingBytes = total - sent
            response.blob = chunk
            response.version = Self.version
            try send(response)
        }
        var trailer = Etcdserverpb_SnapshotResponse()
        trailer.blob = Data(hasher.finalize())
        trailer.version = Self.version
        try send(trailer)
        logger.info(
            "sent database snapshot to client",
            metadata: ["total-bytes": "\(total)", "took": "\(ContinuousClock.now - started)"])
    }

    /// `Maintenance.Hash`: CRC-32C over every row of the backend that members share (the
    /// keyspace with its history, membership, auth, alarms, leases and their TTLs, the
    /// revision counters), as committed now. Members that applied the same entries agree on it.
    /// swift-etcd's own value, not comparable with etcd's, as `HashKV`'s.
    package func backendHash() throws -> Etcdserverpb_HashResponse {
        try Self.waitForBackendCommit(through: currentRevision, published: published, committer: committer)
        let (hash, revision, _) = try BackupFile.sharedContentHash(backend)
        var response = Etcdserverpb_HashResponse()
        response.header = header(revision: revision)
        response.hash = hash
        return response
    }

    /// `Maintenance.Defragment`: returns the backend's free pages to the file system while the
    /// member keeps serving reads and writes (etcd stops the member for the whole run). One
    /// defragmentation at a time; a second request waits for the first. Blocks the calling thread.
    package func defragment() throws -> Etcdserverpb_DefragmentResponse {
        try defragmentation.withLock { _ in
            let started = ContinuousClock.now
            logger.info("defragmenting", metadata: ["path": "\(snapDirectory)/backend.sqlite"])
            let (before, after) = try backend.defragment()
            logger.info(
                "finished defragmenting directory",
                metadata: ["current-db-size-bytes-diff": "\(after - before)", "current-db-size-bytes": "\(after)", "took": "\(ContinuousClock.now - started)"])
        }
        var response = Etcdserverpb_DefragmentResponse()
        response.header = header(revision: currentRevision)
        return response
    }
}
