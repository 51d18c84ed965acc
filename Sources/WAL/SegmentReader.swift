import Checksum
import Foundation

/// A decoded record.
enum Record: Equatable {
    case crc(UInt32)
    case metadata(WALMetadata, version: UInt64)
    case entry(LogEntry)
    case hardState(WALHardState)
    case snapshot(WALSnapshot)
}

/// Reads the records of one segment file, checking each CRC against the running chain.
enum SegmentReader {
    /// Visits every valid record of `bytes` (the whole file) and returns where they end.
    ///
    /// `crc` is the running CRC before the segment (nil for the first segment read, whose CRC
    /// record then seeds the chain) and after it. Only `isLast` may be torn: a partial last
    /// record, a record followed by nothing but zeros (preallocated space), a record claiming to
    /// run past the end, or one with a zeroed 512-byte sector (the pages of one append reach the
    /// disk in any order until its fdatasync) ends the log there. Anything else is corruption,
    /// reported with the file and offset.
    static func read(
        _ bytes: [UInt8], name: String, isLast: Bool, crc: inout UInt32?,
        visit: (Record, Int) throws(WALError) -> Void
    ) throws(WALError) -> Int {
        try FileSystem.withRawBytes(bytes) { (raw: UnsafeRawBufferPointer) throws(WALError) -> Int in
            var offset = 0
            while offset < raw.count {
                func torn(_ reason: String) throws(WALError) -> Int {
                    if isLast && isTornTail(raw, at: offset) { return offset }
                    throw WALError.corrupt(file: name, offset: offset, reason: reason)
                }
                guard raw.count - offset >= RecordCodec.headerSize else { return try torn("partial record header") }
                let length = Int(RecordCodec.readUInt32(raw, offset))
                let typeByte = raw[offset + 4]
                let stored = RecordCodec.readUInt32(raw, offset + 5)
                guard raw.count - offset - RecordCodec.headerSize >= length else { return try torn("partial record") }
                let payload = UnsafeRawBufferPointer(rebasing: raw[(offset + RecordCodec.headerSize)..<(offset + RecordCodec.headerSize + length)])
                // The first record read seeds the chain with the CRC it carries.
                var previous = crc
                if previous == nil {
                    guard typeByte == RecordType.crc.rawValue, length == 4 else {
                        return try torn("segment does not start with a CRC record")
                    }
                    previous = RecordCodec.readUInt32(payload, 0)
                }
                let computed = CRC32C.checksum(payload, continuing: CRC32C.checksum([typeByte], continuing: previous!))
                guard computed == stored else { return try torn("CRC mismatch") }
                guard let type = RecordType(rawValue: typeByte) else {
                    throw WALError.corrupt(file: name, offset: offset, reason: "unknown record type \(typeByte)")
                }
                let record = try decode(type, payload, name: name, offset: offset)
                if case .crc(let carried) = record, carried != previous! {
                    throw WALError.corrupt(file: name, offset: offset, reason: "CRC record does not continue the chain")
                }
                try visit(record, offset)
                crc = computed
                offset += RecordCodec.headerSize + length
            }
            return offset
        }
    }

    private static func decode(_ type: RecordType, _ payload: UnsafeRawBufferPointer, name: String, offset: Int)
        throws(WALError) -> Record
    {
        func need(_ count: Int) throws(WALError) {
            guard payload.count >= count else {
                throw WALError.corrupt(file: name, offset: offset, reason: "short \(type) record")
            }
        }
        switch type {
        case .crc:
            try need(4)
            return .crc(RecordCodec.readUInt32(payload, 0))
        case .metadata:
            try need(24)
            let metadata = WALMetadata(memberID: RecordCodec.readUInt64(payload, 8), clusterID: RecordCodec.readUInt64(payload, 16))
            return .metadata(metadata, version: RecordCodec.readUInt64(payload, 0))
        case .entry:
            try need(16)
            return .entry(
                LogEntry(
                    index: RecordCodec.readUInt64(payload, 0),
                    term: RecordCodec.readUInt64(payload, 8),
                    data: Array(payload[16...])
                )
            )
        case .hardState:
            try need(24)
            return .hardState(
                WALHardState(
                    term: RecordCodec.readUInt64(payload, 0),
                    vote: RecordCodec.readUInt64(payload, 8),
                    commit: RecordCodec.readUInt64(payload, 16)
                )
            )
        case .snapshot:
            try need(16)
            return .snapshot(WALSnapshot(index: RecordCodec.readUInt64(payload, 0), term: RecordCodec.readUInt64(payload, 8)))
        }
    }

    /// Whether the bytes from `offset` on can only be the unfinished end of the log.
    private static func isTornTail(_ raw: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        let rest = raw.count - offset
        if rest < RecordCodec.headerSize { return true }
        if allZero(raw, from: offset + RecordCodec.headerSize, to: raw.count) { return true }
        let end = offset + RecordCodec.headerSize + Int(RecordCodec.readUInt32(raw, offset))
        if end >= raw.count { return true }
        // A zeroed sector inside the record: a write that did not finish reaching the disk.
        var start = offset
        while start < end {
            let sectorEnd = min(end, (start / 512 + 1) * 512)
            if allZero(raw, from: start, to: sectorEnd) { return true }
            start = sectorEnd
        }
        return false
    }

    /// Compared against in chunks: a segment's preallocated tail is tens of MiB, and `memcmp`
    /// scans it in milliseconds in any build (a byte loop took seconds in a debug build, on
    /// every restart).
    private static let zeros = [UInt8](repeating: 0, count: 64 * 1024)

    private static func allZero(_ raw: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Bool {
        guard start < end, let base = raw.baseAddress else { return true }
        return zeros.withUnsafeBytes { zeros in
            var position = start
            while position < end {
                let length = min(end - position, zeros.count)
                if memcmp(base + position, zeros.baseAddress!, length) != 0 { return false }
                position += length
            }
            return true
        }
    }
}
