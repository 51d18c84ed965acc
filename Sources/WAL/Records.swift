import Checksum

/// One logged entry: its Raft position and the bytes the server gave it.
package struct LogEntry: Sendable, Equatable {
    package var index: UInt64
    package var term: UInt64
    package var data: [UInt8]

    package init(index: UInt64, term: UInt64, data: [UInt8]) {
        self.index = index
        self.term = term
        self.data = data
    }
}

/// Who wrote a log: repeated at the start of every segment so each file names its member.
package struct WALMetadata: Sendable, Equatable {
    package var memberID: UInt64
    package var clusterID: UInt64

    package init(memberID: UInt64, clusterID: UInt64) {
        self.memberID = memberID
        self.clusterID = clusterID
    }
}

/// Raft's durable vote state, logged whenever it changes.
package struct WALHardState: Sendable, Equatable {
    package var term: UInt64
    package var vote: UInt64
    package var commit: UInt64

    package init(term: UInt64 = 0, vote: UInt64 = 0, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// Marks that a snapshot at (`index`, `term`) exists: a log is read from the marker of the
/// snapshot the member restarts from.
package struct WALSnapshot: Sendable, Equatable, Hashable {
    package var index: UInt64
    package var term: UInt64

    package init(index: UInt64, term: UInt64) {
        self.index = index
        self.term = term
    }
}

/// What a record holds. The numbers are the on-disk format.
enum RecordType: UInt8 {
    /// The running CRC, first in every segment, so a file can be checked on its own.
    case crc = 1
    case metadata = 2
    case entry = 3
    case hardState = 4
    case snapshot = 5
}

/// The 9-byte record header (payload length u32, type u8, CRC-32C u32, little-endian) followed
/// by the payload. The CRC covers type and payload and continues from the previous record's.
enum RecordCodec {
    static let headerSize = 9

    /// The version of the record format, stored in every metadata record.
    static let formatVersion: UInt64 = 2

    static func append(_ type: RecordType, _ payload: [UInt8], crc: inout UInt32, to buffer: inout [UInt8]) {
        let checksum = CRC32C.checksum(payload, continuing: CRC32C.checksum([type.rawValue], continuing: crc))
        crc = checksum
        appendLittleEndian(UInt32(payload.count), to: &buffer)
        buffer.append(type.rawValue)
        appendLittleEndian(checksum, to: &buffer)
        buffer += payload
    }

    static func payload(_ entry: LogEntry) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(16 + entry.data.count)
        appendLittleEndian(entry.index, to: &out)
        appendLittleEndian(entry.term, to: &out)
        out += entry.data
        return out
    }

    static func payload(_ metadata: WALMetadata) -> [UInt8] {
        var out: [UInt8] = []
        appendLittleEndian(formatVersion, to: &out)
        appendLittleEndian(metadata.memberID, to: &out)
        appendLittleEndian(metadata.clusterID, to: &out)
        return out
    }

    static func payload(_ state: WALHardState) -> [UInt8] {
        var out: [UInt8] = []
        appendLittleEndian(state.term, to: &out)
        appendLittleEndian(state.vote, to: &out)
        appendLittleEndian(state.commit, to: &out)
        return out
    }

    static func payload(_ snapshot: WALSnapshot) -> [UInt8] {
        var out: [UInt8] = []
        appendLittleEndian(snapshot.index, to: &out)
        appendLittleEndian(snapshot.term, to: &out)
        return out
    }

    static func payload(crc: UInt32) -> [UInt8] {
        var out: [UInt8] = []
        appendLittleEndian(crc, to: &out)
        return out
    }

    static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    static func readUInt32(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    static func readUInt64(_ bytes: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}
