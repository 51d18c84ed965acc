import Checksum

/// A snapshot record kept in `member/snap/`: where the snapshot sits in the log and the
/// membership there. The state itself is the backend's.
package struct SnapshotFile: Sendable, Equatable {
    package var index: UInt64
    package var term: UInt64
    /// The server's encoding of the membership (Raft conf state) at `index`.
    package var confState: [UInt8]

    package init(index: UInt64, term: UInt64, confState: [UInt8]) {
        self.index = index
        self.term = term
        self.confState = confState
    }

    package var marker: WALSnapshot { WALSnapshot(index: index, term: term) }
}

/// Saves, loads and prunes snapshot files: `<term>-<index>.snap` (16 hex digits each), holding a
/// CRC-32C and the record, written under a temporary name, synced and renamed so a crash never
/// leaves half a snapshot.
package enum Snapshotter {
    static let suffix = ".snap"
    /// etcd's suffix for a snapshot file found corrupt: kept for inspection, never loaded again.
    static let brokenSuffix = ".broken"

    package static func save(_ snapshot: SnapshotFile, directory: String) throws(WALError) {
        try FileSystem.makeDirectory(directory)
        var payload: [UInt8] = []
        RecordCodec.appendLittleEndian(snapshot.index, to: &payload)
        RecordCodec.appendLittleEndian(snapshot.term, to: &payload)
        payload += snapshot.confState
        var bytes: [UInt8] = []
        RecordCodec.appendLittleEndian(CRC32C.checksum(payload), to: &bytes)
        bytes += payload
        let name = WriteAheadLog.hex16(snapshot.term) + "-" + WriteAheadLog.hex16(snapshot.index) + suffix
        let temporary = "\(directory)/\(name)\(SegmentPipeline.suffix)"
        try? FileSystem.remove(temporary)
        let descriptor = try FileSystem.openForWriting(temporary, create: true)
        defer { FileSystem.close(descriptor) }
        try FileSystem.write(descriptor, temporary, bytes, at: 0)
        try FileSystem.syncData(descriptor, temporary)
        try FileSystem.rename(temporary, "\(directory)/\(name)")
        try FileSystem.syncDirectory(directory)
    }

    /// Every readable snapshot, newest first. Leftover temporary files are removed; a file that
    /// fails its CRC is renamed to `.broken` (as etcd does) and skipped, and `onBroken` hears of it.
    package static func loadAll(directory: String, onBroken: (String, WALError) -> Void = { _, _ in }) throws(WALError)
        -> [SnapshotFile]
    {
        try FileSystem.makeDirectory(directory)
        for leftover in try FileSystem.list(directory, suffix: SegmentPipeline.suffix) {
            try FileSystem.remove("\(directory)/\(leftover)")
        }
        var snapshots: [SnapshotFile] = []
        for name in try FileSystem.list(directory, suffix: suffix).reversed() {
            let path = "\(directory)/\(name)"
            let bytes = try FileSystem.readAll(path)
            do {
                snapshots.append(try decode(bytes, name: name))
            } catch {
                // Only a file that reads but does not check out is broken; an I/O error propagates.
                onBroken(name, error)
                try FileSystem.rename(path, path + brokenSuffix)
            }
        }
        return snapshots.sorted { $0.index > $1.index }
    }

    /// Removes all but the newest `keep` snapshot files (0 keeps all).
    @discardableResult
    package static func purge(directory: String, keep: Int) throws(WALError) -> [String] {
        guard keep > 0 else { return [] }
        let names = try FileSystem.list(directory, suffix: suffix)
        guard names.count > keep else { return [] }
        // Names sort by term, then index: the oldest first.
        let removed = Array(names.prefix(names.count - keep))
        for name in removed { try FileSystem.remove("\(directory)/\(name)") }
        try FileSystem.syncDirectory(directory)
        return removed
    }

    private static func decode(_ bytes: [UInt8], name: String) throws(WALError) -> SnapshotFile {
        guard bytes.count >= 20 else { throw .corrupt(file: name, offset: 0, reason: "short snapshot file") }
        return try FileSystem.withRawBytes(bytes) { (raw) throws(WALError) -> SnapshotFile in
            let stored = RecordCodec.readUInt32(raw, 0)
            let payload = UnsafeRawBufferPointer(rebasing: raw[4...])
            guard CRC32C.checksum(payload) == stored else {
                throw .corrupt(file: name, offset: 0, reason: "snapshot CRC mismatch")
            }
            return SnapshotFile(
                index: RecordCodec.readUInt64(payload, 0),
                term: RecordCodec.readUInt64(payload, 8),
                confState: Array(payload[16...])
            )
        }
    }
}
