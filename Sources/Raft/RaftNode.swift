/// Everything a node needs its application to do: persist, send, apply. Handed out by
/// ``RaftNode/ready()``; the application acknowledges it with ``RaftNode/advance()``.
///
/// The order that keeps Raft safe:
/// 1. `messages` may be sent at once (a leader replicates while it writes its own disk, thesis §10.2.1);
/// 2. persist `snapshot`, `entries` and `hardState` (one `fsync` when `mustSync`);
/// 3. then send `messagesAfterPersist` (acknowledgements and votes that promise durable state);
/// 4. apply `snapshot`, then `committedEntries` in order (a `.confChange` entry through ``RaftNode/applyConfChange(_:)``);
/// 5. call ``RaftNode/advance()``.
public struct Ready: Sendable {
    /// Set when the leader or this node's role changed.
    public var softState: SoftState?
    /// Set when term, vote or commit changed.
    public var hardState: HardState?
    /// Answers to read-index requests made on this node.
    public var readStates: [ReadState] = []
    /// Entries to append to stable storage (they may replace a conflicting tail).
    public var entries: [Entry] = []
    /// A snapshot from the leader to persist and apply.
    public var snapshot: Snapshot?
    /// Entries known to be committed and not yet handed out; apply them in order.
    public var committedEntries: [Entry] = []
    public var messages: [Message] = []
    public var messagesAfterPersist: [Message] = []
    /// Whether persisting this ready needs an `fsync` (new entries, or a new term or vote).
    public var mustSync = false

    public init() {}
}

/// One Raft node, driven by its application: feed it ticks, messages and requests; collect
/// ``Ready`` batches; persist, send and apply them; call ``advance()``.
///
/// A node never does I/O, reads a clock or starts a thread, so a test can run many nodes
/// deterministically in one process.
public struct RaftNode {
    var core: RaftCore
    private var previousSoftState: SoftState
    private var previousHardState: HardState
    /// What the last ``ready()`` handed out, to be acknowledged by ``advance()``.
    private var handedOut: HandedOut?

    private struct HandedOut {
        var lastEntry: (index: UInt64, term: UInt64)?
        var snapshotIndex: UInt64?
        var lastCommitted: UInt64?
        var selfMessages: [Message]
    }

    /// Builds a node from its configuration and the state its storage holds.
    public init(config: RaftConfig) throws(RaftConfigError) {
        core = try RaftCore(config: config)
        previousSoftState = core.softState
        previousHardState = core.hardState
    }

    public var id: NodeID { core.id }

    /// Advances logical time by one tick: followers count toward an election, leaders toward a heartbeat.
    public mutating func tick() {
        core.tick()
    }

    /// Starts an election now (with a pre-vote first when enabled).
    public mutating func campaign() {
        try? core.step(Message(type: .hup, from: core.id))
    }

    /// Proposes application data to be appended to the log.
    public mutating func propose(_ data: [UInt8]) throws(RaftError) {
        try core.step(Message(type: .propose, from: core.id, entries: [Entry(term: 0, index: 0, data: data)]))
    }

    /// Proposes several commands at once; they land in consecutive log entries.
    public mutating func propose(batch: [[UInt8]]) throws(RaftError) {
        guard !batch.isEmpty else { return }
        let entries = batch.map { Entry(term: 0, index: 0, data: $0) }
        try core.step(Message(type: .propose, from: core.id, entries: entries))
    }

    /// Proposes a membership change. It takes effect when the application applies its entry and
    /// calls ``applyConfChange(_:)``. A change proposed while another is pending becomes a no-op entry.
    public mutating func proposeConfChange(_ change: ConfChange) throws(RaftError) {
        let entry = Entry(term: 0, index: 0, kind: .confChange, data: change.encoded())
        try core.step(Message(type: .propose, from: core.id, entries: [entry]))
    }

    /// Applies a committed membership change and returns the membership now in force.
    public mutating func applyConfChange(_ change: ConfChange) throws(ConfChangeError) -> ConfState {
        try core.applyConfChange(change)
    }

    /// Handles a message from another node.
    public mutating func step(_ message: Message) throws(RaftError) {
        guard !message.type.isLocal else { throw .stepLocalMessage }
        // Only requests a follower forwards travel without a term; any other would bypass every term check.
        guard message.term != 0 || message.type == .propose || message.type == .readIndex, message.from != noNode
        else { throw .invalidMessage }
        if message.type.isResponse && core.tracker.progress[message.from] == nil {
            throw .stepPeerNotFound
        }
        try core.step(message)
    }

    /// Asks for a linearizable read point. The answer comes as a ``ReadState`` with the same
    /// context in a later ``Ready``; the read may be served once `applied >= index`.
    public mutating func readIndex(context: [UInt8]) throws(RaftError) {
        try core.step(Message(type: .readIndex, context: context))
    }

    /// Asks the leader to hand leadership to `transferee` (thesis §3.10).
    public mutating func transferLeadership(to transferee: NodeID) {
        try? core.step(Message(type: .transferLeader, from: transferee))
    }

    /// Tells the leader the last message to `peer` could not be delivered.
    public mutating func reportUnreachable(_ peer: NodeID) {
        try? core.step(Message(type: .unreachable, from: peer))
    }

    /// Tells the leader how sending a snapshot to `peer` ended.
    public mutating func reportSnapshot(_ peer: NodeID, status: SnapshotStatus) {
        try? core.step(Message(type: .snapshotStatus, from: peer, reject: status == .failure))
    }

    /// Whether ``ready()`` has anything to hand out.
    public var hasReady: Bool {
        if core.softState != previousSoftState { return true }
        let hard = core.hardState
        if !hard.isEmpty && hard != previousHardState { return true }
        if core.log.unstable.snapshot != nil || !core.log.unstable.entries.isEmpty { return true }
        if !core.messages.isEmpty || !core.messagesAfterPersist.isEmpty || !core.selfMessagesAfterPersist.isEmpty {
            return true
        }
        if !core.readStates.isEmpty { return true }
        return core.log.hasNextCommittedEntries
    }

    /// Hands out what must be persisted, sent and applied. Call ``advance()`` once that is done,
    /// before calling `ready()` again.
    public mutating func ready() -> Ready {
        precondition(handedOut == nil, "ready() called again before advance()")
        var ready = Ready()
        ready.entries = Array(core.log.unstableEntries)
        ready.snapshot = core.log.unstable.snapshot
        if core.log.hasNextCommittedEntries {
            ready.committedEntries = core.log.nextCommittedEntries()
        }
        let soft = core.softState
        if soft != previousSoftState {
            ready.softState = soft
        }
        let hard = core.hardState
        if hard != previousHardState {
            ready.hardState = hard
        }
        // A snapshot is acknowledged like entries are, so it must be durable first too.
        ready.mustSync = !ready.entries.isEmpty || ready.snapshot != nil || hard.term != previousHardState.term
            || hard.vote != previousHardState.vote
        previousSoftState = soft
        previousHardState = hard
        ready.readStates = core.readStates
        ready.messages = core.messages
        ready.messagesAfterPersist = core.messagesAfterPersist
        core.readStates.removeAll(keepingCapacity: true)
        core.messages.removeAll(keepingCapacity: true)
        core.messagesAfterPersist.removeAll(keepingCapacity: true)

        if let last = ready.committedEntries.last {
            core.log.accepted(applying: last.index)
            core.reduceUncommittedSize(ready.committedEntries)
        }
        handedOut = HandedOut(
            lastEntry: ready.entries.last.map { ($0.index, $0.term) },
            snapshotIndex: ready.snapshot?.metadata.index,
            lastCommitted: ready.committedEntries.last?.index,
            selfMessages: core.selfMessagesAfterPersist
        )
        core.selfMessagesAfterPersist.removeAll(keepingCapacity: true)
        return ready
    }

    /// Acknowledges the last ``Ready``: its entries and hard state are durable, its snapshot and
    /// committed entries applied, its messages sent.
    public mutating func advance() {
        guard let done = handedOut else { return }
        handedOut = nil
        if let index = done.snapshotIndex {
            core.log.stableSnapshot(to: index)
            core.applied(through: index)
        }
        if let (index, term) = done.lastEntry {
            core.log.stable(to: index, term: term)
            core.persisted(through: index, term: term)
        }
        if let index = done.lastCommitted {
            core.applied(through: index)
        }
        for message in done.selfMessages {
            try? core.step(message)
        }
    }

    /// A snapshot of the node's state, with per-follower progress when it leads.
    public func status() -> RaftStatus {
        RaftStatus(
            id: core.id,
            hardState: core.hardState,
            softState: core.softState,
            applied: core.log.applied,
            leadTransferee: core.leadTransferee,
            progress: core.role == .leader ? core.tracker.progress : [:],
            confState: core.tracker.config.confState
        )
    }
}

/// What ``RaftNode/status()`` reports.
public struct RaftStatus: Sendable, Hashable {
    public var id: NodeID
    public var hardState: HardState
    public var softState: SoftState
    public var applied: UInt64
    public var leadTransferee: NodeID
    /// Each member's replication progress; empty unless this node leads.
    public var progress: [NodeID: Progress]
    public var confState: ConfState
}
