/// One membership edit.
public struct ConfChangeSingle: Sendable, Hashable {
    public enum Kind: UInt8, Sendable, Hashable {
        case addNode = 0
        case removeNode = 1
        case addLearner = 2
    }

    public var kind: Kind
    public var node: NodeID

    public init(_ kind: Kind, _ node: NodeID) {
        self.kind = kind
        self.node = node
    }
}

/// A membership change: one or more edits applied together.
///
/// A change that edits at most one voter and asks for ``Transition/auto`` is applied in one step.
/// Anything else goes through joint consensus (Raft thesis §4.3): the group first runs with the old
/// and new voter sets both required, then leaves the joint state — by itself when `auto`/`implicit`,
/// or when the application proposes an empty change for `explicit`.
public struct ConfChange: Sendable, Hashable {
    public enum Transition: UInt8, Sendable, Hashable {
        /// One step when possible, else joint with an automatic leave.
        case auto = 0
        /// Always joint, left automatically.
        case jointImplicit = 1
        /// Always joint, left only when the application proposes an empty change.
        case jointExplicit = 2
    }

    public var transition: Transition
    public var changes: [ConfChangeSingle]
    /// Application bytes carried alongside (etcd puts the member's attributes here).
    public var context: [UInt8]

    public init(transition: Transition = .auto, changes: [ConfChangeSingle], context: [UInt8] = []) {
        self.transition = transition
        self.changes = changes
        self.context = context
    }

    /// The empty change that leaves a joint configuration.
    public static let leaveJoint = ConfChange(changes: [])

    /// Whether applying this change leaves a joint configuration.
    var leavesJoint: Bool { transition == .auto && changes.isEmpty }

    /// Whether this change must enter a joint configuration, and if so whether it leaves by itself.
    var entersJoint: (enters: Bool, autoLeave: Bool) {
        if transition != .auto || changes.count > 1 {
            switch transition {
            case .auto, .jointImplicit: return (true, true)
            case .jointExplicit: return (true, false)
            }
        }
        return (false, false)
    }

    /// The payload of a `.confChange` entry. Leaving a joint configuration encodes as no bytes at
    /// all, so the uncommitted-size limit can never refuse the entry a leader proposes by itself.
    public func encoded() -> [UInt8] {
        if self == .leaveJoint { return [] }
        var out: [UInt8] = [transition.rawValue]
        appendVarint(UInt64(changes.count), to: &out)
        for change in changes {
            out.append(change.kind.rawValue)
            appendVarint(change.node, to: &out)
        }
        appendVarint(UInt64(context.count), to: &out)
        out.append(contentsOf: context)
        return out
    }

    /// Decodes the payload of a `.confChange` entry; nil when the bytes are not one.
    public init?(encoded bytes: [UInt8]) {
        if bytes.isEmpty {
            self = .leaveJoint
            return
        }
        var reader = ByteReader(bytes)
        guard let rawTransition = reader.byte(), let transition = Transition(rawValue: rawTransition),
            let count = reader.varint(), count <= UInt64(bytes.count)
        else { return nil }
        var changes: [ConfChangeSingle] = []
        for _ in 0..<count {
            guard let rawKind = reader.byte(), let kind = ConfChangeSingle.Kind(rawValue: rawKind),
                let node = reader.varint()
            else { return nil }
            changes.append(ConfChangeSingle(kind, node))
        }
        guard let contextCount = reader.varint(), let context = reader.bytes(Int(clamping: contextCount)),
            reader.isAtEnd
        else { return nil }
        self.init(transition: transition, changes: changes, context: context)
    }
}

private func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
    var value = value
    while value >= 0x80 {
        out.append(UInt8(truncatingIfNeeded: value) | 0x80)
        value >>= 7
    }
    out.append(UInt8(value))
}

private struct ByteReader {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func byte() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func varint() -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while shift < 64 {
            guard let b = byte() else { return nil }
            result |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return result }
            shift += 7
        }
        return nil
    }

    mutating func bytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, bytes.count - offset >= count else { return nil }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }
}
