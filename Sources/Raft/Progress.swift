/// How a leader is currently feeding one follower.
public enum ProgressState: Sendable, Hashable, CustomStringConvertible {
    /// Next index unknown: send one append per heartbeat interval and wait for the answer.
    case probe
    /// The follower keeps up: stream appends optimistically, up to the inflight window.
    case replicate
    /// The follower needs a snapshot; appends wait until it is applied.
    case snapshot

    public var description: String {
        switch self {
        case .probe: "StateProbe"
        case .replicate: "StateReplicate"
        case .snapshot: "StateSnapshot"
        }
    }
}

/// The appends sent to one follower and not yet acknowledged: a bounded ring of (last index, bytes).
struct Inflights: Hashable {
    let capacity: Int
    /// Zero means no byte limit.
    let maxBytes: UInt64
    private var buffer: [(index: UInt64, bytes: UInt64)] = []
    private var start = 0
    private(set) var count = 0
    private(set) var bytes: UInt64 = 0

    init(capacity: Int, maxBytes: UInt64) {
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    static func == (lhs: Inflights, rhs: Inflights) -> Bool {
        lhs.capacity == rhs.capacity && lhs.maxBytes == rhs.maxBytes && lhs.count == rhs.count
            && lhs.bytes == rhs.bytes && lhs.indexes == rhs.indexes
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        hasher.combine(bytes)
    }

    var indexes: [UInt64] {
        (0..<count).map { buffer[(start + $0) % capacity].index }
    }

    var isFull: Bool {
        count == capacity || (maxBytes != 0 && bytes >= maxBytes)
    }

    mutating func add(index: UInt64, bytes size: UInt64) {
        precondition(!isFull, "cannot add into a full inflights window")
        if buffer.count < capacity {
            // Grows lazily so idle followers cost nothing.
            buffer.reserveCapacity(capacity)
            while buffer.count < capacity { buffer.append((0, 0)) }
        }
        buffer[(start + count) % capacity] = (index, size)
        count += 1
        bytes += size
    }

    /// Frees every inflight append up to and including `index`.
    mutating func free(through index: UInt64) {
        while count > 0 {
            let slot = buffer[start]
            guard slot.index <= index else { break }
            bytes -= slot.bytes
            start = (start + 1) % capacity
            count -= 1
        }
        if count == 0 { start = 0 }
    }

    mutating func freeFirst() {
        guard count > 0 else { return }
        free(through: buffer[start].index)
    }

    mutating func reset() {
        start = 0
        count = 0
        bytes = 0
    }
}

/// A leader's view of one follower (or learner).
public struct Progress: Sendable, Hashable {
    /// The highest index known to be replicated on the follower.
    public internal(set) var match: UInt64
    /// The next index to send.
    public internal(set) var next: UInt64
    public internal(set) var state: ProgressState = .probe
    /// In `.snapshot`, the index of the snapshot being sent.
    public internal(set) var pendingSnapshot: UInt64 = 0
    /// Heard from since the last check-quorum round.
    public internal(set) var recentActive = false
    /// In `.probe`: an append is out and the next waits for its answer or a heartbeat response.
    public internal(set) var probeSent = false
    public internal(set) var isLearner: Bool
    var inflights: Inflights

    init(next: UInt64, match: UInt64 = 0, isLearner: Bool, inflightCapacity: Int, inflightMaxBytes: UInt64) {
        self.next = next
        self.match = match
        self.isLearner = isLearner
        inflights = Inflights(capacity: inflightCapacity, maxBytes: inflightMaxBytes)
    }

    /// The number of appends in flight.
    public var inflightCount: Int { inflights.count }

    private mutating func reset(to state: ProgressState) {
        probeSent = false
        pendingSnapshot = 0
        self.state = state
        inflights.reset()
    }

    mutating func becomeProbe() {
        // After a snapshot, resume just past it (or past the match if that is further).
        if state == .snapshot {
            let pending = pendingSnapshot
            reset(to: .probe)
            next = max(match + 1, pending + 1)
        } else {
            reset(to: .probe)
            next = match + 1
        }
    }

    mutating func becomeReplicate() {
        reset(to: .replicate)
        next = match + 1
    }

    mutating func becomeSnapshot(_ index: UInt64) {
        reset(to: .snapshot)
        pendingSnapshot = index
    }

    /// Records that entries through `last` (totalling `bytes`) were sent.
    mutating func sentEntries(count: Int, last: UInt64, bytes: UInt64) {
        switch state {
        case .replicate:
            if count > 0 {
                next = last + 1
                inflights.add(index: last, bytes: bytes)
            }
        case .probe:
            if count > 0 { probeSent = true }
        case .snapshot:
            preconditionFailure("sending entries to a follower in StateSnapshot")
        }
    }

    /// Records an acknowledgement of `index`; false when it tells nothing new.
    mutating func maybeUpdate(_ index: UInt64) -> Bool {
        var updated = false
        if match < index {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index + 1)
        return updated
    }

    /// Handles a rejected append of `rejected`; `matchHint` is where the follower suggests trying.
    /// False when the rejection is stale.
    mutating func maybeDecrease(rejected: UInt64, matchHint: UInt64) -> Bool {
        if state == .replicate {
            // Stale unless it rejects exactly what we believe is the next unmatched entry.
            guard rejected > match else { return false }
            next = match + 1
            return true
        }
        // In probe, only the latest probe (at next - 1) counts.
        guard next - 1 == rejected else { return false }
        next = max(min(rejected, matchHint + 1), match + 1)
        probeSent = false
        return true
    }

    /// A probe answered at exactly our match: the follower is caught up and replication can stream.
    func isProbeMatching(_ index: UInt64) -> Bool {
        state == .probe && match == index
    }

    /// Moves on after an acknowledgement through `index`: a probe turns into replication, a
    /// finished snapshot (or the entries after it, when the log still has them) back into
    /// replication, and replication frees its window.
    mutating func acknowledged(through index: UInt64, logFirstIndex: UInt64) {
        switch state {
        case .probe:
            becomeReplicate()
        case .snapshot where match + 1 >= logFirstIndex:
            becomeProbe()
            becomeReplicate()
        case .replicate:
            inflights.free(through: index)
        case .snapshot:
            break
        }
    }

    /// A heartbeat answer: the follower is alive. Probing may resume, and a full window lets one
    /// more append through so that a lost message cannot stall it.
    mutating func heardFromOnHeartbeat() {
        recentActive = true
        probeSent = false
        if state == .replicate && inflights.isFull {
            inflights.freeFirst()
        }
    }

    /// Whether sending must wait: a probe is out, a snapshot is pending, or the window is full.
    var isPaused: Bool {
        switch state {
        case .probe: probeSent
        case .replicate: inflights.isFull
        case .snapshot: true
        }
    }
}
