/// Why storage could not answer.
public enum StorageError: Error, Sendable, Hashable {
    /// The requested index is before the first entry still kept: a snapshot covers it.
    case compacted
    /// The requested index is after the last entry.
    case unavailable
    /// A snapshot older than the one already held was offered.
    case snapshotOutOfDate
    /// A snapshot is being made; ask again later.
    case snapshotTemporarilyUnavailable
}

/// The durable part of a node as Raft reads it: what the application has persisted.
///
/// The application writes to it (after making the data durable) and Raft only reads. Entries
/// are numbered consecutively from `firstIndex()` to `lastIndex()`; everything before
/// `firstIndex()` is represented by `snapshot()`.
public protocol RaftStorage: AnyObject {
    /// The persisted hard state and the membership the node restarts with.
    func initialState() throws(StorageError) -> (HardState, ConfState)
    /// Entries in `lo..<hi`, cut after `maxSize` payload bytes but never empty when the range is not.
    func entries(from lo: UInt64, to hi: UInt64, maxSize: UInt64) throws(StorageError) -> [Entry]
    /// The term of the entry at `index`; `index` may be the snapshot's own index.
    func term(at index: UInt64) throws(StorageError) -> UInt64
    func firstIndex() throws(StorageError) -> UInt64
    func lastIndex() throws(StorageError) -> UInt64
    /// The most recent snapshot.
    func snapshot() throws(StorageError) -> Snapshot
}

/// Storage in memory, for tests, simulations and as the cache a persistent shell keeps in front of its WAL.
public final class MemoryStorage: RaftStorage {
    public private(set) var hardState = HardState()
    private var currentSnapshot = Snapshot()
    /// `log[0]` is a dummy standing for the snapshot: its index and term are the snapshot's.
    private var log: [Entry] = [Entry(term: 0, index: 0)]

    public init() {}

    /// Storage already holding a membership, as a brand-new group's members start.
    public convenience init(voters: [NodeID], learners: [NodeID] = []) {
        self.init()
        currentSnapshot.metadata.confState = ConfState(voters: voters, learners: learners)
    }

    /// Storage restarting from a snapshot: the log continues after it.
    public convenience init(snapshot: SnapshotMetadata) {
        self.init()
        currentSnapshot.metadata = snapshot
        log = [Entry(term: snapshot.term, index: snapshot.index)]
    }

    public func initialState() throws(StorageError) -> (HardState, ConfState) {
        (hardState, currentSnapshot.metadata.confState)
    }

    public func setHardState(_ state: HardState) {
        hardState = state
    }

    private var offset: UInt64 { log[0].index }

    public func entries(from lo: UInt64, to hi: UInt64, maxSize: UInt64) throws(StorageError) -> [Entry] {
        guard lo > offset else { throw .compacted }
        guard hi <= lastIndexValue + 1 else { throw .unavailable }
        guard lo < hi else { return [] }
        let start = Int(lo - offset)
        let end = Int(hi - offset)
        var size: UInt64 = log[start].payloadSize
        var cut = start + 1
        while cut < end {
            size += log[cut].payloadSize
            if size > maxSize { break }
            cut += 1
        }
        return Array(log[start..<cut])
    }

    public func term(at index: UInt64) throws(StorageError) -> UInt64 {
        guard index >= offset else { throw .compacted }
        guard index <= lastIndexValue else { throw .unavailable }
        return log[Int(index - offset)].term
    }

    public func firstIndex() throws(StorageError) -> UInt64 { offset + 1 }

    public func lastIndex() throws(StorageError) -> UInt64 { lastIndexValue }

    private var lastIndexValue: UInt64 { offset + UInt64(log.count) - 1 }

    public func snapshot() throws(StorageError) -> Snapshot { currentSnapshot }

    /// Replaces everything with `snapshot`, as a follower does when it receives one.
    public func applySnapshot(_ snapshot: Snapshot) throws(StorageError) {
        guard snapshot.metadata.index > currentSnapshot.metadata.index else { throw .snapshotOutOfDate }
        currentSnapshot = snapshot
        log = [Entry(term: snapshot.metadata.term, index: snapshot.metadata.index)]
    }

    /// Records a snapshot of the application state at `index` (which must be applied already),
    /// so the log before it can later be compacted.
    @discardableResult
    public func createSnapshot(at index: UInt64, confState: ConfState?, data: [UInt8]) throws(StorageError)
        -> Snapshot
    {
        guard index > currentSnapshot.metadata.index else { throw .snapshotOutOfDate }
        guard index <= lastIndexValue else { throw .unavailable }
        currentSnapshot.metadata.index = index
        currentSnapshot.metadata.term = log[Int(index - offset)].term
        if let confState { currentSnapshot.metadata.confState = confState }
        currentSnapshot.data = data
        return currentSnapshot
    }

    /// Drops entries up to and including `index`; they must be covered by a snapshot the application keeps.
    public func compact(through index: UInt64) throws(StorageError) {
        guard index > offset else { throw .compacted }
        guard index <= lastIndexValue else { throw .unavailable }
        let cut = Int(index - offset)
        var kept = [Entry(term: log[cut].term, index: index)]
        kept.append(contentsOf: log[(cut + 1)...])
        log = kept
    }

    /// Appends persisted entries; entries overlapping the tail replace it (a new leader's log wins).
    public func append(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        precondition(first.index <= lastIndexValue + 1, "MemoryStorage: gap before index \(first.index)")
        let start = max(first.index, offset + 1)
        guard start <= entries[entries.count - 1].index else { return }
        let skip = Int(start - first.index)
        let keep = Int(start - offset)
        if keep < log.count { log.removeSubrange(keep...) }
        log.append(contentsOf: entries[skip...])
    }
}
