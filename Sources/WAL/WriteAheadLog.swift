import Foundation
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One logged entry: its position in the log and the bytes the server gave it.
public struct LogEntry: Sendable, Equatable {
    public var index: UInt64
    public var data: [UInt8]

    public init(index: UInt64, data: [UInt8]) {
        self.index = index
        self.data = data
    }
}

/// Why a log cannot be opened; each names the file and offset so an operator can act.
public enum WALError: Error, Equatable, CustomStringConvertible {
    case corrupt(file: String, offset: Int, reason: String)
    case missingSegment(expected: UInt64, found: String)
    case io(String)

    public var description: String {
        switch self {
        case .corrupt(let file, let offset, let reason): "wal: \(reason) in \(file) at offset \(offset)"
        case .missingSegment(let expected, let found): "wal: segment \(expected) is missing (found \(found))"
        case .io(let message): "wal: \(message)"
        }
    }
}

/// An append-only log of entries in segment files, each record protected by a CRC-32C that is
/// chained across records (and segments), made durable with one `fdatasync` per append.
///
/// Files: `<directory>/<sequence>-<first index>.wal`, both 16 hex digits. A record is a 9-byte
/// header (payload length u32, type u8, CRC u32, little-endian) and the payload; the CRC covers
/// the type and payload and continues from the previous record's. A segment starts with a CRC
/// record carrying the running CRC, so each file can be checked on its own terms.
///
/// Opening repairs a torn tail (a partial or mis-checksummed last record at the end of the last
/// segment is cut off); a bad record anywhere else is an error naming the file and offset.
public final class WriteAheadLog {
    enum RecordType: UInt8 {
        case entry = 1
        case crc = 2
    }

    static let headerSize = 9
    /// A segment is closed and the next one started once it grows past this.
    public static let defaultSegmentSize = 64 * 1024 * 1024

    private let directory: String
    private let segmentSize: Int
    private var file: FileDescriptor
    private var sequence: UInt64
    private var offset: Int
    private var runningCRC: UInt32
    public private(set) var lastIndex: UInt64

    /// Opens (creating if needed) the log in `directory`, returning it and every entry it holds.
    public static func open(directory: String, segmentSize: Int = defaultSegmentSize) throws -> (WriteAheadLog, [LogEntry]) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".wal") }.sorted()
        var entries: [LogEntry] = []
        var crc: UInt32 = 0
        var end = 0
        for (position, name) in names.enumerated() {
            guard let sequence = UInt64(name.prefix(16), radix: 16), sequence == UInt64(position) else {
                throw WALError.missingSegment(expected: UInt64(position), found: name)
            }
            let isLast = position == names.count - 1
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(name)")))
            end = try read(bytes, name: name, isLast: isLast, crc: &crc, into: &entries)
            if isLast, end < bytes.count {
                // A torn tail: drop the partial record so appends continue from a clean end.
                guard truncate("\(directory)/\(name)", off_t(end)) == 0 else { throw WALError.io("cannot truncate \(name)") }
            }
        }
        let log: WriteAheadLog
        if let last = names.last {
            let descriptor = try FileDescriptor.open("\(directory)/\(last)", .writeOnly)
            log = WriteAheadLog(
                directory: directory, segmentSize: segmentSize, file: descriptor, sequence: UInt64(names.count - 1),
                offset: end, crc: crc, lastIndex: entries.last?.index ?? 0)
        } else {
            log = try WriteAheadLog(directory: directory, segmentSize: segmentSize, startingSegment: 0, firstIndex: 1, crc: 0, lastIndex: 0)
        }
        return (log, entries)
    }

    private init(directory: String, segmentSize: Int, file: FileDescriptor, sequence: UInt64, offset: Int, crc: UInt32, lastIndex: UInt64) {
        self.directory = directory
        self.segmentSize = segmentSize
        self.file = file
        self.sequence = sequence
        self.offset = offset
        self.runningCRC = crc
        self.lastIndex = lastIndex
    }

    /// Creates segment `sequence` holding its opening CRC record, durably (file and directory).
    private convenience init(directory: String, segmentSize: Int, startingSegment sequence: UInt64, firstIndex: UInt64, crc: UInt32, lastIndex: UInt64) throws {
        let descriptor = try Self.createSegment(directory: directory, sequence: sequence, firstIndex: firstIndex, crc: crc)
        self.init(
            directory: directory, segmentSize: segmentSize, file: descriptor, sequence: sequence, offset: 0, crc: crc,
            lastIndex: lastIndex)
        try appendRecords { buffer in self.encode(.crc, Self.littleEndian(crc), into: &buffer) }
    }

    deinit { try? file.close() }

    /// Starts an empty log's numbering after `index` (the state already applied elsewhere).
    public func resume(after index: UInt64) {
        precondition(lastIndex == 0, "only an empty log can be renumbered")
        lastIndex = index
    }

    /// Appends `entries` (whose indexes must continue the log) and makes them durable before returning.
    public func append(_ entries: [LogEntry]) throws {
        guard !entries.isEmpty else { return }
        if offset >= segmentSize { try startNextSegment(firstIndex: entries[0].index) }
        try appendRecords { buffer in
            for entry in entries {
                precondition(entry.index == lastIndex + 1, "log index \(entry.index) does not follow \(lastIndex)")
                encode(.entry, Self.littleEndian(entry.index) + entry.data, into: &buffer)
                lastIndex = entry.index
            }
        }
    }

    private func appendRecords(_ build: (inout [UInt8]) -> Void) throws {
        var buffer: [UInt8] = []
        build(&buffer)
        let written = try buffer.withUnsafeBytes { try file.writeAll(toAbsoluteOffset: Int64(offset), $0) }
        offset += written
        guard fdatasync(file.rawValue) == 0 else { throw WALError.io("fdatasync failed: errno \(errno)") }
    }

    private func encode(_ type: RecordType, _ payload: [UInt8], into buffer: inout [UInt8]) {
        let crc = CRC32C.checksum(payload, continuing: CRC32C.checksum([type.rawValue], continuing: runningCRC))
        runningCRC = crc
        buffer += Self.littleEndian(UInt32(payload.count))
        buffer.append(type.rawValue)
        buffer += Self.littleEndian(crc)
        buffer += payload
    }

    private func startNextSegment(firstIndex: UInt64) throws {
        try file.close()
        sequence += 1
        file = try Self.createSegment(directory: directory, sequence: sequence, firstIndex: firstIndex, crc: runningCRC)
        offset = 0
        let crc = runningCRC
        try appendRecords { buffer in encode(.crc, Self.littleEndian(crc), into: &buffer) }
    }

    private static func createSegment(directory: String, sequence: UInt64, firstIndex: UInt64, crc: UInt32) throws -> FileDescriptor {
        let name = String(format: "%016llx-%016llx.wal", sequence, firstIndex)
        let descriptor = try FileDescriptor.open(
            "\(directory)/\(name)", .writeOnly, options: [.create, .exclusiveCreate], permissions: [.ownerReadWrite])
        // The new name must survive a crash too.
        let directoryDescriptor = try FileDescriptor.open(directory, .readOnly)
        defer { try? directoryDescriptor.close() }
        guard fsync(directoryDescriptor.rawValue) == 0 else { throw WALError.io("fsync of \(directory) failed: errno \(errno)") }
        return descriptor
    }

    /// Reads one segment's records, checking every CRC; returns where the valid records end.
    private static func read(_ bytes: [UInt8], name: String, isLast: Bool, crc: inout UInt32, into entries: inout [LogEntry]) throws -> Int {
        var offset = 0
        while offset < bytes.count {
            let torn = { (reason: String) throws -> Int in
                // Only the end of the log may be torn: the last record of the last segment, a
                // record followed by nothing but zeros, or one with a zeroed disk sector (the
                // pages of one append can reach the disk in any order before its fdatasync).
                let rest = bytes[offset...]
                if isLast,
                    rest.count < headerSize || rest.dropFirst(headerSize).allSatisfy({ $0 == 0 })
                        || recordReachesEnd(bytes, offset) || hasZeroedSector(bytes, recordAt: offset)
                {
                    return offset
                }
                throw WALError.corrupt(file: name, offset: offset, reason: reason)
            }
            guard bytes.count - offset >= headerSize else { return try torn("partial record header") }
            let length = Int(Self.readUInt32(bytes, offset))
            let type = bytes[offset + 4]
            let stored = Self.readUInt32(bytes, offset + 5)
            guard bytes.count - offset - headerSize >= length else { return try torn("partial record") }
            let payload = Array(bytes[(offset + headerSize)..<(offset + headerSize + length)])
            let computed = CRC32C.checksum(payload, continuing: CRC32C.checksum([type], continuing: crc))
            guard computed == stored else { return try torn("CRC mismatch") }
            switch RecordType(rawValue: type) {
            case .entry:
                guard payload.count >= 8 else { throw WALError.corrupt(file: name, offset: offset, reason: "short entry record") }
                let index = UInt64(Self.readUInt32(payload, 0)) | UInt64(Self.readUInt32(payload, 4)) << 32
                if let last = entries.last, index != last.index + 1 {
                    throw WALError.corrupt(file: name, offset: offset, reason: "entry \(index) does not follow \(last.index)")
                }
                entries.append(LogEntry(index: index, data: Array(payload[8...])))
            case .crc:
                break
            case nil:
                throw WALError.corrupt(file: name, offset: offset, reason: "unknown record type \(type)")
            }
            crc = computed
            offset += headerSize + length
        }
        return offset
    }

    /// Whether some 512-byte disk sector (or the part of one the record covers) of the record
    /// at `offset` is all zeros.
    private static func hasZeroedSector(_ bytes: [UInt8], recordAt offset: Int) -> Bool {
        let end = min(bytes.count, offset + headerSize + Int(readUInt32(bytes, offset)))
        var start = offset
        while start < end {
            let sectorEnd = min(end, (start / 512 + 1) * 512)
            if bytes[start..<sectorEnd].allSatisfy({ $0 == 0 }) { return true }
            start = sectorEnd
        }
        return false
    }

    /// Whether the record starting at `offset` claims to run to (or past) the end of the file.
    private static func recordReachesEnd(_ bytes: [UInt8], _ offset: Int) -> Bool {
        guard bytes.count - offset >= 4 else { return true }
        return offset + headerSize + Int(readUInt32(bytes, offset)) >= bytes.count
    }

    private static func readUInt32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
    }

    private static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
}
