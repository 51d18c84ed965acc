import Auth
import Raft
import WAL

/// How the member's log entries are encoded: a normal entry is a tag byte, who proposed it and
/// under which request ID (so the member that proposed it can answer its client), for a
/// client's request who made it (auth checks it when the entry is applied), then the write
/// request; an empty one is a new leader's no-op. In the write-ahead log a membership change is
/// its own tag byte followed by the encoded change, so the two kinds never collide.
struct EntryEnvelope {
    var proposer: NodeID
    var requestID: UInt64
    /// Who made a client's request: `.client(nil)` when it came without credentials.
    var origin: Origin
    var request: WriteRequest

    /// Where a write comes from.
    enum Origin: Equatable {
        /// The member itself (the leader's lease expiries and checkpoints): auth does not apply.
        case member
        case client(AuthIdentity?)
    }

    /// The member's own writes (and every write logged before auth existed).
    private static let writeTag: UInt8 = 1
    private static let membershipTag: UInt8 = 2
    private static let attributesTag: UInt8 = 3
    private static let clientWriteTag: UInt8 = 4

    static func encode(_ update: MemberAttributesUpdate) -> [UInt8] {
        [attributesTag] + update.encoded()
    }

    /// The attributes update a normal entry holds, if it holds one.
    static func attributesUpdate(_ data: [UInt8]) -> MemberAttributesUpdate? {
        guard data.first == attributesTag else { return nil }
        return try? MemberAttributesUpdate(encoded: Array(data.dropFirst()))
    }

    static func encode(proposer: NodeID, requestID: UInt64, origin: Origin, request: WriteRequest) -> [UInt8] {
        let ids = BigEndian.bytes(proposer) + BigEndian.bytes(requestID)
        switch origin {
        case .member:
            return [writeTag] + ids + request.logData
        case .client(let identity):
            let user = Array((identity?.user ?? "").utf8.prefix(Int(UInt16.max)))
            let length = [UInt8(user.count >> 8), UInt8(user.count & 0xFF)]
            return [clientWriteTag] + ids + BigEndian.bytes(identity?.revision ?? 0) + length + user + request.logData
        }
    }

    /// Whether a normal entry's `data` is a new leader's no-op, a member's attributes or a
    /// put: what a batch holds when applying it is quick and bounded (read without decoding).
    static func isPutOrNoOp(_ data: [UInt8]) -> Bool {
        guard let tag = data.first else { return true }
        switch tag {
        case attributesTag: return true
        case writeTag: return data.count > 17 && data[17] == WriteRequest.putKind
        case clientWriteTag:
            guard data.count > 27 else { return false }
            let userEnd = 27 + (Int(data[25]) << 8 | Int(data[26]))
            return data.count > userEnd && data[userEnd] == WriteRequest.putKind
        default: return false
        }
    }

    init(_ data: [UInt8]) throws {
        guard data.count > 17, data[0] == Self.writeTag || data[0] == Self.clientWriteTag else {
            throw ConfigurationError("entry of \(data.count) bytes is not a write request")
        }
        proposer = BigEndian.number(data[1..<9])!
        requestID = BigEndian.number(data[9..<17])!
        guard data[0] == Self.clientWriteTag else {
            origin = .member
            request = try WriteRequest(logData: Array(data[17...]))
            return
        }
        guard data.count > 27 else { throw ConfigurationError("client entry of \(data.count) bytes is truncated") }
        let revision = BigEndian.number(data[17..<25])!
        let userEnd = 27 + (Int(data[25]) << 8 | Int(data[26]))
        guard data.count > userEnd else { throw ConfigurationError("client entry of \(data.count) bytes is truncated") }
        let user = String(decoding: data[27..<userEnd], as: UTF8.self)
        origin = .client(user.isEmpty && revision == 0 ? nil : AuthIdentity(user: user, revision: revision))
        request = try WriteRequest(logData: Array(data[userEnd...]))
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
