import Backend
import BoltReader
import Checksum
import Crypto
import Foundation
import WAL

/// A backup as `etcdctl snapshot save` writes it from the `Snapshot` RPC: a consistent copy of
/// the member's backend (an SQLite database here, a bbolt one with etcd) followed by the SHA-256
/// of those bytes, the trailer etcd's tools check before restoring.
package enum BackupFile {
    package static let checksumSize = SHA256.byteCount

    /// etcd's test for a trailer: a database is a whole number of 512-byte sectors, so a size
    /// 32 bytes past a multiple of 512 means a checksum follows it.
    package static func hasChecksum(fileSize: Int64) -> Bool {
        fileSize % 512 == Int64(checksumSize)
    }

    /// Why a file cannot be restored or read; nothing was written when one is thrown.
    package struct Refusal: Error, CustomStringConvertible, Equatable {
        package var description: String
        package init(_ description: String) { self.description = description }
    }

    /// Whose backend a backup holds.
    package enum Format: Sendable, Equatable {
        /// swift-etcd's: an SQLite database.
        case swiftEtcd
        /// etcd's: a bbolt database (``EtcdSnapshotImport`` reads it).
        case etcd
    }

    /// Checks the file at `path` before anything is made from it: it ends with a SHA-256 that
    /// matches the bytes before it (unless `skipHashCheck`, etcd's flag for a database copied
    /// straight from a data directory, which has none), and those bytes are a swift-etcd or an
    /// etcd backend. Returns the database's size (the file's, less the trailer) and its format.
    /// `progress` gets the bytes hashed so far and the total.
    package static func verify(
        _ path: String, skipHashCheck: Bool, progress: (_ done: Int64, _ total: Int64) -> Void = { _, _ in }
    ) throws -> (bytes: Int64, format: Format) {
        guard let file = FileHandle(forReadingAtPath: path) else { throw Refusal("open \(path): no such file or directory") }
        defer { try? file.close() }
        let size = Int64(try file.seekToEnd())
        let hasTrailer = hasChecksum(fileSize: size)
        let databaseSize = hasTrailer ? size - Int64(checksumSize) : size
        try file.seek(toOffset: 0)
        let header = try file.read(upToCount: 32) ?? Data()
        let format: Format
        if header.prefix(16) == Data("SQLite format 3\0".utf8) {
            format = .swiftEtcd
        } else if BoltFile.looksLikeBolt(header) {
            format = .etcd
        } else {
            throw Refusal("\(path) is not a snapshot: neither a swift-etcd (SQLite) nor an etcd (bbolt) database")
        }
        if !hasTrailer && !skipHashCheck {
            throw Refusal(
                "snapshot missing hash but --skip-hash-check=false (its \(size) bytes are not whole 512-byte sectors "
                    + "and a 32-byte checksum: it is truncated, or a database copied from a data directory)")
        }
        guard hasTrailer && !skipHashCheck else { return (databaseSize, format) }
        try file.seek(toOffset: 0)
        var hasher = SHA256()
        var done: Int64 = 0
        while done < databaseSize {
            let chunk = try file.read(upToCount: Int(min(1 << 20, databaseSize - done))) ?? Data()
            guard !chunk.isEmpty else { break }
            hasher.update(data: chunk)
            done += Int64(chunk.count)
            progress(done, databaseSize)
        }
        let expected = try file.read(upToCount: checksumSize) ?? Data()
        let actual = Data(hasher.finalize())
        guard expected == actual else {
            throw Refusal("expected sha256 \(hex(expected)), got \(hex(actual)) (the file is truncated or corrupted)")
        }
        return (databaseSize, format)
    }

    /// Copies the first `bytes` of `path` (the database, without its trailer) to a new file at
    /// `destination`, synced. `progress` gets the bytes copied so far and the total.
    package static func extractDatabase(
        from path: String, bytes: Int64, to destination: String, progress: (_ done: Int64, _ total: Int64) -> Void = { _, _ in }
    ) throws {
        guard let source = FileHandle(forReadingAtPath: path) else { throw Refusal("open \(path): no such file or directory") }
        defer { try? source.close() }
        guard FileManager.default.createFile(atPath: destination, contents: nil, attributes: [.posixPermissions: 0o600]),
            let output = FileHandle(forWritingAtPath: destination)
        else { throw Refusal("cannot create \(destination)") }
        defer { try? output.close() }
        var done: Int64 = 0
        while done < bytes {
            let chunk = try source.read(upToCount: Int(min(1 << 20, bytes - done))) ?? Data()
            guard !chunk.isEmpty else { throw Refusal("\(path) ended after \(done) of \(bytes) bytes") }
            try output.write(contentsOf: chunk)
            done += Int64(chunk.count)
            progress(done, bytes)
        }
        try output.synchronize()
    }

    /// Makes a swift-etcd backend at `destination` from the first `bytes` of `path`: a copy of
    /// swift-etcd's database, or an import of etcd's. `progress` gets the bytes copied so far
    /// and the total (an import reports none).
    package static func copyDatabase(
        from path: String, bytes: Int64, format: Format, to destination: String,
        progress: (_ done: Int64, _ total: Int64) -> Void = { _, _ in }
    ) throws {
        switch format {
        case .swiftEtcd:
            try extractDatabase(from: path, bytes: bytes, to: destination, progress: progress)
            try SQLiteBackend.requireBackendTables(at: destination)
        case .etcd:
            _ = try EtcdSnapshotImport.importDatabase(from: path, bytes: bytes, to: destination)
        }
    }

    /// What `snapshot status` reports, with etcd's JSON names.
    package struct Status: Codable, Equatable, Sendable {
        /// CRC-32C over the rows every member shares (see ``SQLiteBackend/forEachSharedRow(_:)``).
        package var hash: UInt32
        package var revision: Int64
        /// Rows in the backend (etcd counts the keys of every bucket).
        package var totalKey: Int
        /// The database's size in bytes.
        package var totalSize: Int64
        /// The storage version of the member that wrote it.
        package var version: String
    }

    /// The status of the backup at `path` (verified first unless `skipHashCheck`), read from a
    /// private copy of its database (an etcd backup's imported), so the file itself is never
    /// opened for writing.
    package static func status(of path: String, skipHashCheck: Bool = false) throws -> Status {
        let (bytes, format) = try verify(path, skipHashCheck: skipHashCheck)
        let directory = try FileManager.default.url(
            for: .itemReplacementDirectory, in: .userDomainMask, appropriateFor: URL(fileURLWithPath: NSTemporaryDirectory()), create: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("backend.sqlite").path
        try copyDatabase(from: path, bytes: bytes, format: format, to: copy)
        let backend = try SQLiteBackend(path: copy, synchronousCommits: false)
        let (hash, revision, rows) = try sharedContentHash(backend)
        return Status(hash: hash, revision: revision, totalKey: rows, totalSize: bytes, version: EtcdServer.version)
    }

    /// CRC-32C over the rows every member shares, the newest revision, and the row count.
    static func sharedContentHash(_ backend: SQLiteBackend) throws -> (hash: UInt32, revision: Int64, rows: Int) {
        var crc: UInt32 = 0
        let (revision, rows) = try backend.forEachSharedRow { crc = CRC32C.checksum($0, continuing: crc) }
        return (crc, revision, rows)
    }

    private static func hex(_ bytes: Data) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}
