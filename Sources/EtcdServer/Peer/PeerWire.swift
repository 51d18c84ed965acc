import NIOCore
import Raft

/// The binary format members speak to each other on the peer port: internal to swift-etcd
/// (etcd's Go peers cannot join a swift-etcd cluster, nor the other way round).
///
/// A connection is a sequence of frames, each a 4-byte big-endian length and a body. The
/// first frame from the dialling member is a ``PeerHello``; every later frame is a batch of
/// Raft messages. Integers are big-endian; byte strings and lists carry a 4-byte count.
package enum PeerWire {
    /// Most bytes in one frame: a full message of entries (1 MiB by default) is far smaller.
    static let maxFrameSize = 256 * 1024 * 1024
    /// Senders start a new frame once a batch passes this many bytes.
    static let targetFrameSize = 16 * 1024 * 1024
    /// Most bytes in a connection's first frame (a hello or a request's answer).
    static let maxFirstFrameSize = 1024 * 1024

    /// Identifies the protocol and its version in the hello frame.
    package static let magic: UInt64 = 0x7377_6966_7465_7463  // "swiftetc"
    static let version: UInt8 = 1

    struct DecodingError: Error, CustomStringConvertible {
        let description: String
    }

    // MARK: Frames

    /// Appends `body` as one frame.
    static func writeFrame(_ buffer: inout ByteBuffer, body: (inout ByteBuffer) -> Void) {
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        body(&buffer)
        buffer.setInteger(UInt32(buffer.writerIndex - lengthIndex - 4), at: lengthIndex)
    }

    // MARK: Messages

    static func write(_ messages: [Message], to buffer: inout ByteBuffer) {
        writeFrame(&buffer) { body in
            body.writeInteger(UInt32(messages.count))
            for message in messages { write(message, to: &body) }
        }
    }

    static func readMessages(_ body: inout ByteBuffer) throws(DecodingError) -> [Message] {
        let count = try readCount(&body, itemSize: 60)
        var messages: [Message] = []
        messages.reserveCapacity(count)
        for _ in 0..<count { messages.append(try readMessage(&body)) }
        guard body.readableBytes == 0 else { throw DecodingError(description: "\(body.readableBytes) bytes after the messages") }
        return messages
    }

    static func write(_ message: Message, to buffer: inout ByteBuffer) {
        buffer.writeInteger(message.type.rawValue)
        buffer.writeMultipleIntegers(
            message.to, message.from, message.term, message.logTerm, message.index, message.commit, message.rejectHint)
        buffer.writeInteger(UInt8(message.reject ? 1 : 0))
        writeBytes(message.context, to: &buffer)
        buffer.writeInteger(UInt32(message.entries.count))
        for entry in message.entries {
            buffer.writeMultipleIntegers(entry.term, entry.index, entry.kind.rawValue)
            writeBytes(entry.data, to: &buffer)
        }
        if let snapshot = message.snapshot {
            buffer.writeInteger(UInt8(1))
            buffer.writeMultipleIntegers(snapshot.metadata.index, snapshot.metadata.term)
            write(snapshot.metadata.confState, to: &buffer)
            writeBytes(snapshot.data, to: &buffer)
        } else {
            buffer.writeInteger(UInt8(0))
        }
    }

    static func readMessage(_ buffer: inout ByteBuffer) throws(DecodingError) -> Message {
        guard let rawType = buffer.readInteger(as: UInt8.self), let type = MessageType(rawValue: rawType) else {
            throw DecodingError(description: "unknown message type")
        }
        guard let (to, from, term, logTerm, index, commit, rejectHint) = buffer.readMultipleIntegers(
                as: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64).self),
            let reject = buffer.readInteger(as: UInt8.self)
        else { throw DecodingError(description: "truncated message") }
        let context = try readBytes(&buffer)
        let entryCount = try readCount(&buffer, itemSize: 21)
        var entries: [Entry] = []
        entries.reserveCapacity(entryCount)
        for _ in 0..<entryCount {
            guard let (entryTerm, entryIndex, rawKind) = buffer.readMultipleIntegers(as: (UInt64, UInt64, UInt8).self),
                let kind = EntryKind(rawValue: rawKind)
            else { throw DecodingError(description: "truncated or unknown entry") }
            entries.append(Entry(term: entryTerm, index: entryIndex, kind: kind, data: try readBytes(&buffer)))
        }
        var snapshot: Snapshot?
        switch buffer.readInteger(as: UInt8.self) {
        case 0: break
        case 1:
            guard let (snapshotIndex, snapshotTerm) = buffer.readMultipleIntegers(as: (UInt64, UInt64).self) else {
                throw DecodingError(description: "truncated snapshot")
            }
            let confState = try readConfState(&buffer)
            snapshot = Snapshot(
                metadata: SnapshotMetadata(index: snapshotIndex, term: snapshotTerm, confState: confState),
                data: try readBytes(&buffer))
        default: throw DecodingError(description: "bad snapshot flag")
        }
        return Message(
            type: type, to: to, from: from, term: term, logTerm: logTerm, index: index, entries: entries, commit: commit,
            snapshot: snapshot, reject: reject != 0, rejectHint: rejectHint, context: context)
    }

    // MARK: Membership

    /// A ``ConfState`` as bytes: also how snapshot files record the membership.
    static func encode(_ confState: ConfState) -> [UInt8] {
        var buffer = ByteBuffer()
        write(confState, to: &buffer)
        return Array(buffer.readableBytesView)
    }

    static func decodeConfState(_ bytes: [UInt8]) throws(DecodingError) -> ConfState {
        var buffer = ByteBuffer(bytes: bytes)
        let confState = try readConfState(&buffer)
        guard buffer.readableBytes == 0 else { throw DecodingError(description: "bytes after the membership") }
        return confState
    }

    static func write(_ confState: ConfState, to buffer: inout ByteBuffer) {
        for ids in [confState.voters, confState.votersOutgoing, confState.learners, confState.learnersNext] {
            buffer.writeInteger(UInt32(ids.count))
            for id in ids { buffer.writeInteger(id) }
        }
        buffer.writeInteger(UInt8(confState.autoLeave ? 1 : 0))
    }

    static func readConfState(_ buffer: inout ByteBuffer) throws(DecodingError) -> ConfState {
        var lists: [[NodeID]] = []
        for _ in 0..<4 {
            let count = try readCount(&buffer, itemSize: 8)
            var ids: [NodeID] = []
            for _ in 0..<count { ids.append(buffer.readInteger(as: UInt64.self)!) }
            lists.append(ids)
        }
        guard let autoLeave = buffer.readInteger(as: UInt8.self) else { throw DecodingError(description: "truncated membership") }
        return ConfState(voters: lists[0], votersOutgoing: lists[1], learners: lists[2], learnersNext: lists[3], autoLeave: autoLeave != 0)
    }

    // MARK: Primitives

    private static func writeBytes(_ bytes: [UInt8], to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(bytes.count))
        buffer.writeBytes(bytes)
    }

    private static func readBytes(_ buffer: inout ByteBuffer) throws(DecodingError) -> [UInt8] {
        let count = try readCount(&buffer, itemSize: 1)
        return buffer.readBytes(length: count)!
    }

    /// Reads a count and checks that that many items of at least `itemSize` bytes can follow,
    /// so a corrupt count can never make the reader allocate more than the frame holds.
    private static func readCount(_ buffer: inout ByteBuffer, itemSize: Int) throws(DecodingError) -> Int {
        guard let count = buffer.readInteger(as: UInt32.self) else { throw DecodingError(description: "truncated count") }
        guard Int(count) <= buffer.readableBytes / itemSize else {
            throw DecodingError(description: "count \(count) exceeds the \(buffer.readableBytes) bytes left")
        }
        return Int(count)
    }
}

/// The first frame on a peer connection: who is calling whom, in which cluster, and what
/// the connection carries.
struct PeerHello: Equatable {
    enum Stream: UInt8 {
        /// Batches of Raft messages, for as long as the connection lasts.
        case messages = 0
        /// One snapshot message, then the backend in ``SnapshotFrame/chunk`` frames, then ``SnapshotFrame/end``.
        case snapshot = 1
        /// One ``PeerRequest`` (JSON), answered by one ``PeerResponse`` (JSON).
        case request = 2
    }

    var clusterID: UInt64
    var from: NodeID
    var to: NodeID
    var stream: Stream

    func write(to buffer: inout ByteBuffer) {
        PeerWire.writeFrame(&buffer) { body in
            body.writeMultipleIntegers(PeerWire.magic, PeerWire.version, clusterID, from, to, stream.rawValue)
        }
    }

    init(clusterID: UInt64, from: NodeID, to: NodeID, stream: Stream = .messages) {
        self.clusterID = clusterID
        self.from = from
        self.to = to
        self.stream = stream
    }

    init(_ body: inout ByteBuffer) throws(PeerWire.DecodingError) {
        guard let (magic, version, clusterID, from, to, rawStream) = body.readMultipleIntegers(
            as: (UInt64, UInt8, UInt64, UInt64, UInt64, UInt8).self), magic == PeerWire.magic
        else { throw PeerWire.DecodingError(description: "not a swift-etcd peer") }
        guard version == PeerWire.version else {
            throw PeerWire.DecodingError(description: "peer protocol version \(version) is not \(PeerWire.version)")
        }
        guard let stream = Stream(rawValue: rawStream) else { throw PeerWire.DecodingError(description: "unknown stream \(rawStream)") }
        self.init(clusterID: clusterID, from: from, to: to, stream: stream)
    }
}

/// The frames after the snapshot message on a snapshot connection.
enum SnapshotFrame {
    /// The next bytes of the backend file.
    case chunk(ByteBuffer)
    /// The whole file was sent: its length, to check nothing is missing.
    case end(totalBytes: UInt64)

    func write(to buffer: inout ByteBuffer) {
        PeerWire.writeFrame(&buffer) { body in
            switch self {
            case .chunk(var bytes):
                body.writeInteger(UInt8(1))
                body.writeBuffer(&bytes)
            case .end(let total):
                body.writeInteger(UInt8(2))
                body.writeInteger(total)
            }
        }
    }

    init(_ body: inout ByteBuffer) throws(PeerWire.DecodingError) {
        switch body.readInteger(as: UInt8.self) {
        case 1: self = .chunk(body.readSlice(length: body.readableBytes)!)
        case 2:
            guard let total = body.readInteger(as: UInt64.self) else { throw PeerWire.DecodingError(description: "truncated end frame") }
            self = .end(totalBytes: total)
        default: throw PeerWire.DecodingError(description: "unknown snapshot frame")
        }
    }
}
