import Foundation
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Why a log cannot be opened or written; each names the file (and offset) so an operator can act.
package enum WALError: Error, Equatable, CustomStringConvertible {
    case corrupt(file: String, offset: Int, reason: String)
    case missingSegment(expected: UInt64, found: String)
    case snapshotNotFound(WALSnapshot)
    case io(String)

    package var description: String {
        switch self {
        case .corrupt(let file, let offset, let reason): "wal: \(reason) in \(file) at offset \(offset)"
        case .missingSegment(let expected, let found): "wal: segment \(expected) is missing (found \(found))"
        case .snapshotNotFound(let snapshot):
            "wal: no record of the snapshot at index \(snapshot.index) (term \(snapshot.term)): the log does not match the snapshot"
        case .io(let message): "wal: \(message)"
        }
    }
}

/// The write-ahead log: Raft entries and hard state in CRC-protected records in segment files,
/// durable with one `fdatasync` per save.
///
/// Files: `<directory>/<sequence>-<first index>.wal`, both 16 hex digits. Every segment starts
/// with a CRC record carrying the running CRC (so the chain continues across files), the
/// metadata (format version, member and cluster IDs) and the hard state, so any suffix of the
/// segments can be read on its own. Segments are preallocated (`segmentSize`, 64 MiB by default)
/// by a background pipeline; when one fills, it is truncated to its records and the next
/// prepared file is renamed into place. A snapshot marker record notes each snapshot; a member
/// restarts by reading from its snapshot's marker on, and segments wholly before the newest
/// snapshot can be purged.
///
/// Not thread-safe: one owner appends (the server's apply or Raft loop). ``purge(directory:snapshotIndex:maxFiles:)``
/// may run on another thread: it only removes closed segments.
package final class WriteAheadLog {
    package struct Options: Sendable {
        /// A segment is closed and the next one started once it grows past this.
        package var segmentSize: Int
        /// Called with the duration of every `fdatasync` (etcd's `etcd_disk_wal_fsync_duration_seconds`).
        package var fsyncObserver: (@Sendable (Duration) -> Void)?
        /// etcd's `--unsafe-no-fsync`: records reach the page cache, never wait for the disk. A
        /// process that crashes loses nothing; a machine that does may lose acknowledged writes.
        /// For throwaway clusters (tests, CI) only.
        package var skipsSync = false

        package init(segmentSize: Int = WriteAheadLog.defaultSegmentSize, fsyncObserver: (@Sendable (Duration) -> Void)? = nil) {
            self.segmentSize = segmentSize
            self.fsyncObserver = fsyncObserver
        }
    }

    /// What a log holds from a snapshot on.
    package struct Contents: Sendable, Equatable {
        package var metadata: WALMetadata
        package var hardState: WALHardState
        /// Entries after the snapshot's index, in order (later records replace earlier ones at the same index).
        package var entries: [LogEntry]
    }

    package static let defaultSegmentSize = 64 * 1024 * 1024

    private let directory: String
    private let options: Options
    private let metadata: WALMetadata
    private var file: FileDescriptor
    private var path: String
    private var sequence: UInt64
    private var offset: Int
    /// Where the last successful sync of the current segment left it durable.
    private var syncedOffset: Int
    private var crc: UInt32
    private var hardState: WALHardState
    private var pipeline: SegmentPipeline?
    private var isClosed = false
    /// The first write or sync error; the log accepts nothing after it.
    private var failure: WALError?
    package private(set) var lastIndex: UInt64

    private init(
        directory: String, options: Options, metadata: WALMetadata, file: FileDescriptor, path: String,
        sequence: UInt64, offset: Int, crc: UInt32, hardState: WALHardState, lastIndex: UInt64
    ) {
        self.directory = directory
        self.options = options
        self.metadata = metadata
        self.file = file
        self.path = path
        self.sequence = sequence
        self.offset = offset
        syncedOffset = offset
        self.crc = crc
        self.hardState = hardState
        self.lastIndex = lastIndex
    }

    deinit {
        close()
    }

    /// Whether `directory` holds a log.
    package static func exists(directory: String) -> Bool {
        ((try? FileSystem.list(directory, suffix: ".wal")) ?? []).isEmpty == false
    }

    /// Creates a new log whose first segment records `metadata` and a marker for `snapshot` (the
    /// state the log continues from; (0, 0) for a brand-new member). The segment appears
    /// atomically: written under a temporary name, synced, then renamed.
    package static func create(
        directory: String, metadata: WALMetadata, snapshot: WALSnapshot = WALSnapshot(index: 0, term: 0),
        options: Options = Options()
    ) throws(WALError) -> WriteAheadLog {
        try FileSystem.makeDirectory(directory)
        guard try FileSystem.list(directory, suffix: ".wal").isEmpty else {
            throw .io("cannot create a log in \(directory): one exists already")
        }
        let temporary = "\(directory)/create\(SegmentPipeline.suffix)"
        try? FileSystem.remove(temporary)
        let descriptor = try FileSystem.openForWriting(temporary, create: true)
        let path = "\(directory)/\(segmentName(sequence: 0, firstIndex: snapshot.index))"
        let log = WriteAheadLog(
            directory: directory, options: options, metadata: metadata, file: descriptor, path: temporary,
            sequence: 0, offset: 0, crc: 0, hardState: WALHardState(), lastIndex: snapshot.index)
        try FileSystem.preallocate(descriptor, temporary, size: options.segmentSize)
        var buffer: [UInt8] = []
        log.appendSegmentHeader(to: &buffer)
        RecordCodec.append(.snapshot, RecordCodec.payload(snapshot), crc: &log.crc, to: &buffer)
        try log.write(buffer)
        try FileSystem.rename(temporary, path)
        try FileSystem.syncDirectory(directory)
        log.path = path
        log.pipeline = SegmentPipeline(directory: directory, size: options.segmentSize)
        return log
    }

    /// Opens the log in `directory` and reads it from the marker of `snapshot` on.
    ///
    /// A torn tail is repaired; a bad record elsewhere, a gap in the segment sequence, a missing
    /// marker or a log of another format is an error.
    package static func open(directory: String, from snapshot: WALSnapshot, options: Options = Options())
        throws(WALError) -> (WriteAheadLog, Contents)
    {
        for leftover in try FileSystem.list(directory, suffix: SegmentPipeline.suffix) {
            try FileSystem.remove("\(directory)/\(leftover)")
        }
        let segments = try Segment.list(directory)
        guard let startPosition = segments.lastIndex(where: { $0.firstIndex <= snapshot.index }) else {
            throw .snapshotNotFound(snapshot)
        }
        // Only the segments read must be contiguous: older ones may be half purged.
        try Segment.checkContiguous(segments[startPosition...])
        var crc: UInt32?
        var metadata: WALMetadata?
        var hardState = WALHardState()
        var entries: [LogEntry] = []
        var lastIndex = snapshot.index
        var foundSnapshot = false
        var end = 0
        for position in startPosition..<segments.count {
            let segment = segments[position]
            let name = segment.name
            let bytes = try FileSystem.readAll("\(directory)/\(name)")
            let isLast = position == segments.count - 1
            end = try SegmentReader.read(bytes, name: name, isLast: isLast, crc: &crc) { record, offset throws(WALError) in
                switch record {
                case .crc:
                    break
                case .metadata(let found, let version):
                    guard version == RecordCodec.formatVersion else {
                        throw .corrupt(file: name, offset: offset, reason: "unsupported log format version \(version)")
                    }
                    if let metadata, metadata != found {
                        throw .corrupt(file: name, offset: offset, reason: "metadata of another member")
                    }
                    metadata = found
                case .entry(let entry):
                    guard entry.index <= lastIndex + 1 else {
                        throw .corrupt(file: name, offset: offset, reason: "entry \(entry.index) does not follow \(lastIndex)")
                    }
                    lastIndex = entry.index
                    guard entry.index > snapshot.index else { return }
                    // A newer leader's entry replaces the old tail from its index on.
                    if let last = entries.last, entry.index <= last.index {
                        entries.removeLast(Int(last.index - entry.index + 1))
                    }
                    entries.append(entry)
                case .hardState(let state):
                    hardState = state
                case .snapshot(let found):
                    if found == snapshot { foundSnapshot = true }
                    // Entries after a snapshot from a leader continue from it.
                    if found.index > lastIndex {
                        lastIndex = found.index
                        if found.index > snapshot.index { entries.removeAll() }
                    }
                }
            }
            if isLast && end == 0 {
                // A crash while cutting left a renamed but empty segment: it holds nothing yet.
                break
            }
            guard end == bytes.count || isLast else {
                throw .corrupt(file: name, offset: end, reason: "unexpected bytes after the last record")
            }
        }
        guard let metadata else {
            throw .corrupt(file: segments[startPosition].name, offset: 0, reason: "no metadata record (a log of an older format?)")
        }
        guard foundSnapshot else { throw .snapshotNotFound(snapshot) }

        let last = segments[segments.count - 1]
        let path = "\(directory)/\(last.name)"
        let descriptor = try FileSystem.openForWriting(path, create: false)
        let log = WriteAheadLog(
            directory: directory, options: options, metadata: metadata, file: descriptor, path: path,
            sequence: last.sequence, offset: end, crc: crc ?? 0, hardState: hardState, lastIndex: lastIndex)
        // Clear whatever a torn write left after the last record, so new records are followed by zeros.
        try FileSystem.truncate(descriptor, path, to: end)
        try FileSystem.preallocate(descriptor, path, size: options.segmentSize)
        if end == 0 {
            var buffer: [UInt8] = []
            log.appendSegmentHeader(to: &buffer)
            try log.write(buffer)
        } else {
            try log.sync()
        }
        log.pipeline = SegmentPipeline(directory: directory, size: options.segmentSize)
        return (log, Contents(metadata: metadata, hardState: hardState, entries: entries))
    }

    /// Closes the file and removes the prepared next segment. Closing again does nothing (a
    /// descriptor closed twice could close a file another thread opened in between).
    package func close() {
        guard !isClosed else { return }
        isClosed = true
        pipeline?.close()
        pipeline = nil
        FileSystem.close(file)
    }

    /// Appends `entries` (each index at most one past the last; a lower index replaces the tail
    /// from there) and, when given, the new hard state, with one `fdatasync` unless `sync` is
    /// false (Raft asks for none when only the commit index moved: a lost commit index is
    /// learned again from the leader).
    package func save(hardState newState: WALHardState? = nil, entries: [LogEntry], sync: Bool = true) throws(WALError) {
        guard !entries.isEmpty || newState != nil else { return }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(entries.reduce(32) { $0 + RecordCodec.headerSize + 16 + $1.data.count })
        // The log's state moves only once the records are on disk.
        var nextCRC = crc
        var nextLast = lastIndex
        for entry in entries {
            precondition(entry.index <= nextLast + 1, "log index \(entry.index) does not follow \(nextLast)")
            RecordCodec.append(.entry, RecordCodec.payload(entry), crc: &nextCRC, to: &buffer)
            nextLast = entry.index
        }
        if let newState {
            RecordCodec.append(.hardState, RecordCodec.payload(newState), crc: &nextCRC, to: &buffer)
        }
        try write(buffer, sync: sync)
        crc = nextCRC
        lastIndex = nextLast
        if let newState { hardState = newState }
        if offset >= options.segmentSize {
            try cut()
        }
    }

    /// Records that a snapshot at `snapshot` exists, durably. A snapshot beyond the log (one
    /// received from a leader) moves the log's end: the next entry follows the snapshot.
    package func saveSnapshot(_ snapshot: WALSnapshot) throws(WALError) {
        var buffer: [UInt8] = []
        var nextCRC = crc
        RecordCodec.append(.snapshot, RecordCodec.payload(snapshot), crc: &nextCRC, to: &buffer)
        try write(buffer)
        crc = nextCRC
        lastIndex = max(lastIndex, snapshot.index)
    }

    /// Removes the oldest segments that hold nothing at or after `snapshotIndex` (the newest
    /// snapshot's), while more than `maxFiles` segments remain (0 keeps every file). The segment
    /// a reader would start from for that snapshot is never removed. Returns the names removed.
    ///
    /// Safe to run while the log is appended to: it only touches closed segments. A crash midway
    /// leaves a shorter, still contiguous, run of segments.
    @discardableResult
    package static func purge(directory: String, snapshotIndex: UInt64, maxFiles: Int) throws(WALError) -> [String] {
        guard maxFiles > 0 else { return [] }
        let segments = try Segment.list(directory)
        guard let keepFrom = segments.lastIndex(where: { $0.firstIndex <= snapshotIndex }) else { return [] }
        var removed: [String] = []
        var remaining = segments.count
        for segment in segments[..<keepFrom] where remaining > maxFiles {
            try FileSystem.remove("\(directory)/\(segment.name)")
            removed.append(segment.name)
            remaining -= 1
        }
        if !removed.isEmpty { try FileSystem.syncDirectory(directory) }
        return removed
    }

    // MARK: - Internals

    private func appendSegmentHeader(to buffer: inout [UInt8]) {
        let previous = crc
        RecordCodec.append(.crc, RecordCodec.payload(crc: previous), crc: &crc, to: &buffer)
        RecordCodec.append(.metadata, RecordCodec.payload(metadata), crc: &crc, to: &buffer)
        RecordCodec.append(.hardState, RecordCodec.payload(hardState), crc: &crc, to: &buffer)
    }

    /// Writes (and normally syncs) `buffer` at the end. After any failure the log refuses further writes:
    /// what reached the disk is unknown, and only reopening (which repairs the tail) is safe.
    private func write(_ buffer: [UInt8], sync shouldSync: Bool = true) throws(WALError) {
        guard !isClosed else { throw .io("the log is closed") }
        guard failure == nil else { throw .io("the log stopped after an earlier failure: \(failure!)") }
        do {
            try FileSystem.write(file, path, buffer, at: offset)
            if shouldSync { try sync() }
        } catch {
            failure = error
            discardUnsynced()
            throw error
        }
        offset += buffer.count
        if shouldSync { syncedOffset = offset }
    }

    /// After a failed write or sync, cuts the segment back to what the last successful sync made
    /// durable. Records past it were never acknowledged, but they may sit in the page cache:
    /// after a failed writeback Linux marks those pages clean, so a restarted member would read
    /// records that are not on the disk, and a later successful sync would not write them — the
    /// records after them would follow a hole that a power loss turns into a lost tail. Cutting
    /// the file drops the cached pages at once; syncing the new length is best effort (the
    /// member stops either way).
    private func discardUnsynced() {
        guard ftruncate(file.rawValue, off_t(syncedOffset)) == 0 else { return }
        _ = fdatasync(file.rawValue)
    }

    private func sync() throws(WALError) {
        guard !options.skipsSync else { return }
        let start = ContinuousClock.now
        try FileSystem.syncData(file, path)
        options.fsyncObserver?(ContinuousClock.now - start)
    }

    /// Closes the full segment (cut to its records) and continues in the prepared next file.
    private func cut() throws(WALError) {
        try FileSystem.truncate(file, path, to: offset)
        guard fsync(file.rawValue) == 0 else { throw .io("fsync of \(path) failed: errno \(errno)") }
        guard let pipeline else { throw .io("log is closed") }
        let next = try pipeline.take()
        let nextPath = "\(directory)/\(Self.segmentName(sequence: sequence + 1, firstIndex: lastIndex + 1))"
        do {
            try FileSystem.rename(next.path, nextPath)
            try FileSystem.syncDirectory(directory)
        } catch {
            // Keep writing nowhere: the old segment stays current (and full) until a reopen.
            FileSystem.close(next.descriptor)
            failure = error
            throw error
        }
        FileSystem.close(file)
        file = next.descriptor
        path = nextPath
        sequence += 1
        offset = 0
        syncedOffset = 0
        var buffer: [UInt8] = []
        appendSegmentHeader(to: &buffer)
        try write(buffer)
    }

    static func segmentName(sequence: UInt64, firstIndex: UInt64) -> String {
        hex16(sequence) + "-" + hex16(firstIndex) + ".wal"
    }

    static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// A segment file's place in the log, from its name.
struct Segment {
    let name: String
    let sequence: UInt64
    let firstIndex: UInt64

    /// The directory's segments in sequence order.
    static func list(_ directory: String) throws(WALError) -> [Segment] {
        let names = try FileSystem.list(directory, suffix: ".wal")
        var segments: [Segment] = []
        for name in names {
            let parts = name.dropLast(4).split(separator: "-")
            guard parts.count == 2, parts[0].count == 16, parts[1].count == 16,
                let sequence = UInt64(parts[0], radix: 16), let firstIndex = UInt64(parts[1], radix: 16)
            else { throw .corrupt(file: name, offset: 0, reason: "not a segment name") }
            segments.append(Segment(name: name, sequence: sequence, firstIndex: firstIndex))
        }
        guard !segments.isEmpty else { throw .io("no log in \(directory)") }
        return segments
    }

    /// Throws when `segments` skip a sequence number (a segment is missing in between).
    static func checkContiguous(_ segments: ArraySlice<Segment>) throws(WALError) {
        for (previous, next) in zip(segments, segments.dropFirst()) where next.sequence != previous.sequence + 1 {
            throw .missingSegment(expected: previous.sequence + 1, found: next.name)
        }
    }
}
