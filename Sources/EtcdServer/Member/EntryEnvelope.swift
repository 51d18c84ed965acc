import Raft
import WAL

/// How the member's log entries are encoded: a normal entry is a tag byte, who proposed it and
/// under which request ID (so the member that proposed it can answer its client), then the write
/// request; an empty one is a new leader's no-op. In the write-ahead log a membership change is
/// its own tag byte followed by the encoded change, so the two kinds never collide.
struct EntryEnvelope {
    var proposer: NodeID
    var requestID: UInt64
    var request: WriteRequest

    private static let writeTag: UInt8 = 1
    private static let membershipTag: UInt8 = 2
    private static let attributesTag: UInt8 = 3

    static func encode(_ update: MemberAttributesUpdate) -> [UInt8] {
        [attributesTag] + update.encoded()
    }

    /// The attributes update a normal entry holds, if it holds one.
    static func attributesUpdate(_ data: [UInt8]) -> MemberAttributesUpdate? {
        guard data.first == attributesTag else { return nil }
        return try? MemberAttributesUpdate(encoded: Array(data.dropFirst()))
    }

    static func encode(proposer: NodeID, requestID: UInt64, request: WriteRequest) -> [UInt8] {
        [writeTag] + BigEndian.bytes(proposer) + BigEndian.bytes(requestID) + request.logData
    }

    init(_ data: [UInt8]) throws {
        guard data.count > 17, data[0] == Self.writeTag else {
            throw ConfigurationError("entry of \(data.count) bytes is not a write request")
        }
        proposer = BigEndian.number(data[1..<9])!
        requestID = BigEndian.number(data[9..<17])!
        request = try WriteRequest(logData: Array(data[17...]))
    }

    /// A Raft entry as the log stores it.
    static func logEntry(_ entry: Entry) -> LogEntry {
        switch entry.kind {
        case .normal: LogEntry(index: entry.index, term: entry.term, data: entry.data)
        case .confChange: LogEntry(index: entry.index, term: entry.term, data: [membershipTag] + entry.data)
        }
    }

    /// A logged entry as Raft takes it back.
    static func raftEntry(_ entry: LogEntry) -> Entry {
        if entry.data.first == membershipTag {
            return Entry(term: entry.term, index: entry.index, kind: .confChange, data: Array(entry.data.dropFirst()))
        }
        return Entry(term: entry.term, index: entry.index, data: entry.data)
    }
}
