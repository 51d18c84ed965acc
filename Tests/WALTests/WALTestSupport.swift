import Foundation
import Locking
import Synchronization
import Testing

@testable import WAL

/// Shared helpers for the WAL tests: a private temporary directory per test, deterministic
/// entries, raw file access and the on-disk record sizes the tests compute offsets from.
enum WALTest {
    // Record sizes (9-byte header + payload).
    static let crcRecord = 9 + 4
    static let metadataRecord = 9 + 24
    static let hardStateRecord = 9 + 24
    static let snapshotRecord = 9 + 16
    /// CRC, metadata and hard state records that start every segment.
    static let segmentHeader = crcRecord + metadataRecord + hardStateRecord
    /// The first segment written by `create` also holds the snapshot marker.
    static let createdHeader = segmentHeader + snapshotRecord

    static func entryRecord(dataSize: Int) -> Int { 9 + 16 + dataSize }

    static let metadata = WALMetadata(memberID: 0x8E9E_05C5_2164_694D, clusterID: 0xCDF8_1819_4E3A_8C32)

    /// Runs `body` in a fresh directory that is removed afterwards.
    static func withDirectory(_ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("wal-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try body(directory)
    }

    /// Entries with data that never contains a zero byte (so no record accidentally looks like
    /// preallocated space) and depends on `salt`, so rewritten entries differ from the originals.
    static func entries(_ range: ClosedRange<UInt64>, term: UInt64 = 1, size: Int = 100, salt: Int = 0) -> [LogEntry] {
        range.map { index in
            LogEntry(
                index: index, term: term,
                data: (0..<size).map { UInt8(1 + (Int(index) &* 7 &+ $0 &+ salt &* 13) % 255) })
        }
    }

    static func files(_ directory: String, suffix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(suffix) }.sorted()
    }

    static func segments(_ directory: String) -> [String] { files(directory, suffix: ".wal") }

    static func temporaryFiles(_ directory: String) -> [String] { files(directory, suffix: ".tmp") }

    static func read(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func size(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.size] as? NSNumber)?.intValue ?? -1
    }

    /// Reads one segment file on its own (its CRC record seeds the chain), returning the records
    /// with their offsets, where they end and the running CRC after the last one.
    static func records(_ bytes: [UInt8], name: String = "segment", isLast: Bool = false, crc: UInt32? = nil) throws
        -> (records: [(Record, Int)], end: Int, crc: UInt32?)
    {
        var running = crc
        var found: [(Record, Int)] = []
        let end = try SegmentReader.read(bytes, name: name, isLast: isLast, crc: &running) { record, offset in
            found.append((record, offset))
        }
        return (found, end, running)
    }

    /// Creates a log in `directory` and saves `entries` one save each.
    static func makeLog(
        _ directory: String, entries: [LogEntry], segmentSize: Int = 64 * 1024,
        snapshot: WALSnapshot = WALSnapshot(index: 0, term: 0)
    ) throws {
        let log = try WriteAheadLog.create(
            directory: directory, metadata: metadata, snapshot: snapshot,
            options: WriteAheadLog.Options(segmentSize: segmentSize))
        for entry in entries { try log.save(entries: [entry]) }
    }

    /// Opens the log from `snapshot`, returns its contents and releases it again (closing it).
    static func contents(
        _ directory: String, from snapshot: WALSnapshot = WALSnapshot(index: 0, term: 0), segmentSize: Int = 64 * 1024
    ) throws -> WriteAheadLog.Contents {
        let (_, contents) = try WriteAheadLog.open(
            directory: directory, from: snapshot, options: WriteAheadLog.Options(segmentSize: segmentSize))
        return contents
    }

    /// The error `body` throws, or nil.
    static func error(_ body: () throws -> Void) -> (any Error)? {
        do {
            try body()
            return nil
        } catch {
            return error
        }
    }

    /// Expects `body` to fail with exactly `expected`.
    static func expect(
        _ expected: WALError, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) {
        let thrown = error(body)
        guard let thrown else {
            Issue.record("expected \(expected), nothing thrown", sourceLocation: sourceLocation)
            return
        }
        let walError = thrown as? WALError
        #expect(walError == expected, sourceLocation: sourceLocation)
    }
}

/// Counts calls from any thread.
final class CallCounter: Sendable {
    private let count = Locked(0)

    func increment() { count.withLock { $0 += 1 } }

    var value: Int { count.withLock { $0 } }
}
