/// Entries (and possibly a snapshot) that Raft has accepted but the application has not yet persisted.
struct UnstableLog {
    /// A snapshot received from the leader and not yet persisted.
    var snapshot: Snapshot?
    var entries: [Entry] = []
    /// The index of `entries[0]`, or of the next entry when `entries` is empty.
    var offset: UInt64

    /// The first index the unstable part knows of, only when it holds a snapshot.
    var firstIndexIfSnapshot: UInt64? {
        snapshot.map { $0.metadata.index + 1 }
    }

    var lastIndex: UInt64? {
        if !entries.isEmpty { return offset + UInt64(entries.count) - 1 }
        return snapshot?.metadata.index
    }

    func term(at index: UInt64) -> UInt64? {
        if index < offset {
            guard let snapshot, snapshot.metadata.index == index else { return nil }
            return snapshot.metadata.term
        }
        let position = index - offset
        guard position < UInt64(entries.count) else { return nil }
        return entries[Int(position)].term
    }

    /// The application persisted entries up to `index` (of term `term`).
    mutating func stable(to index: UInt64, term: UInt64) {
        // A newer leader may have replaced the entry since it was handed out: only matching terms count.
        guard let t = self.term(at: index), t == term, index >= offset else { return }
        let count = Int(index - offset + 1)
        entries.removeFirst(min(count, entries.count))
        offset = index + 1
    }

    mutating func stableSnapshot(to index: UInt64) {
        if snapshot?.metadata.index == index { snapshot = nil }
    }

    mutating func restore(_ snapshot: Snapshot) {
        offset = snapshot.metadata.index + 1
        entries.removeAll()
        self.snapshot = snapshot
    }

    /// Appends `new`, first dropping any unstable entries at or after its first index.
    mutating func truncateAndAppend(_ new: [Entry]) {
        guard let first = new.first?.index else { return }
        if first == offset + UInt64(entries.count) {
            entries.append(contentsOf: new)
        } else if first <= offset {
            // Replaces everything unstable; the persisted log after `first` is overridden too.
            offset = first
            entries = new
        } else {
            entries.removeSubrange(Int(first - offset)...)
            entries.append(contentsOf: new)
        }
    }

    func slice(_ lo: UInt64, _ hi: UInt64) -> ArraySlice<Entry> {
        precondition(lo >= offset && hi <= offset + UInt64(entries.count) && lo <= hi, "unstable slice out of range")
        return entries[Int(lo - offset)..<Int(hi - offset)]
    }
}

/// The log as one node sees it: persisted entries in storage, then unstable ones, plus the commit
/// and apply positions.
struct RaftLog {
    let storage: any RaftStorage
    var unstable: UnstableLog
    /// The highest index known to be stored on a quorum.
    var committed: UInt64
    /// The highest index handed to the application for applying (`applied <= applying <= committed`).
    var applying: UInt64
    /// The highest index the application has applied.
    var applied: UInt64
    /// Most payload bytes handed out in one batch of committed entries.
    let maxApplyingSize: UInt64

    init(storage: any RaftStorage, maxApplyingSize: UInt64) {
        self.storage = storage
        self.maxApplyingSize = maxApplyingSize
        let first = Self.unwrap { () throws(StorageError) in try storage.firstIndex() }
        let last = Self.unwrap { () throws(StorageError) in try storage.lastIndex() }
        unstable = UnstableLog(offset: last + 1)
        committed = first - 1
        applying = first - 1
        applied = first - 1
    }

    /// Storage errors other than the ones callers handle mean the application broke its contract.
    static func unwrap<T>(_ body: () throws(StorageError) -> T) -> T {
        do {
            return try body()
        } catch {
            preconditionFailure("raft storage failed unexpectedly: \(error)")
        }
    }

    var firstIndex: UInt64 {
        if let index = unstable.firstIndexIfSnapshot { return index }
        return Self.unwrap { () throws(StorageError) in try storage.firstIndex() }
    }

    var lastIndex: UInt64 {
        if let index = unstable.lastIndex { return index }
        return Self.unwrap { () throws(StorageError) in try storage.lastIndex() }
    }

    var lastTerm: UInt64 {
        (try? term(at: lastIndex)) ?? 0
    }

    func term(at index: UInt64) throws(StorageError) -> UInt64 {
        if let t = unstable.term(at: index) { return t }
        let dummy = firstIndex - 1
        if index < dummy { throw .compacted }
        if index > lastIndex { throw .unavailable }
        return try storage.term(at: index)
    }

    /// The term at `index`, or 0 when it is compacted or not there.
    func zeroTermOnError(_ index: UInt64) -> UInt64 {
        (try? term(at: index)) ?? 0
    }

    func matchTerm(index: UInt64, term: UInt64) -> Bool {
        guard let t = try? self.term(at: index) else { return false }
        return t == term
    }

    /// Whether a candidate whose log ends at (`index`, `term`) is at least as up to date as this one (§5.4.1).
    func isUpToDate(index: UInt64, term: UInt64) -> Bool {
        let ownTerm = lastTerm
        return term > ownTerm || (term == ownTerm && index >= lastIndex)
    }

    /// A follower's acceptance of an append: the new last index, or nil when `index`/`logTerm` does not match.
    mutating func maybeAppend(index: UInt64, logTerm: UInt64, committed leaderCommit: UInt64, entries: [Entry])
        -> UInt64?
    {
        guard matchTerm(index: index, term: logTerm) else { return nil }
        let lastNew = index + UInt64(entries.count)
        let conflict = findConflict(entries)
        if conflict != 0 {
            precondition(conflict > committed, "entry \(conflict) conflicts with committed entry \(committed)")
            let start = Int(conflict - (index + 1))
            append(Array(entries[start...]))
        }
        commit(to: min(leaderCommit, lastNew))
        return lastNew
    }

    /// Appends entries; returns the new last index.
    @discardableResult
    mutating func append(_ entries: [Entry]) -> UInt64 {
        guard let first = entries.first?.index else { return lastIndex }
        precondition(first - 1 >= committed, "appending after \(first - 1) would overwrite committed \(committed)")
        unstable.truncateAndAppend(entries)
        return lastIndex
    }

    /// The index of the first entry whose term differs from the log's, or of the first new entry; 0 when all match.
    func findConflict(_ entries: [Entry]) -> UInt64 {
        for entry in entries where !matchTerm(index: entry.index, term: entry.term) {
            return entry.index
        }
        return 0
    }

    /// The largest index at or before `index` whose term is at most `term`, with that term: where a
    /// leader's probe can jump to after a rejection, skipping whole terms at a time.
    func findConflictByTerm(index: UInt64, term: UInt64) -> (index: UInt64, term: UInt64) {
        var index = index
        while true {
            guard let t = try? self.term(at: index) else { return (index, 0) }
            if t <= term { return (index, t) }
            if index == 0 { return (0, t) }
            index -= 1
        }
    }

    var unstableEntries: ArraySlice<Entry> { unstable.entries[...] }

    /// Committed entries not yet handed out for applying, limited in size.
    func nextCommittedEntries() -> [Entry] {
        let lo = applying + 1
        let hi = committed + 1
        guard lo < hi else { return [] }
        do {
            return try slice(lo, hi, maxSize: maxApplyingSize)
        } catch {
            preconditionFailure("committed entries \(lo)..<\(hi) unavailable: \(error)")
        }
    }

    var hasNextCommittedEntries: Bool {
        // Entries covered by a pending snapshot are applied through the snapshot instead.
        applying < committed && unstable.snapshot == nil
    }

    var snapshot: Snapshot {
        if let snapshot = unstable.snapshot { return snapshot }
        return Self.unwrap { () throws(StorageError) in try storage.snapshot() }
    }

    mutating func commit(to index: UInt64) {
        guard index > committed else { return }
        precondition(index <= lastIndex, "commit \(index) is out of range [last index \(lastIndex)]")
        committed = index
    }

    /// Advances the commit index when the entry at `index` is of `term` (a leader commits only its own term's entries, §5.4.2).
    mutating func maybeCommit(index: UInt64, term: UInt64) -> Bool {
        guard index > committed, zeroTermOnError(index) == term else { return false }
        commit(to: index)
        return true
    }

    mutating func accepted(applying index: UInt64) {
        precondition(index <= committed && index >= applying, "applying \(index) out of order")
        applying = index
    }

    mutating func applied(to index: UInt64) {
        guard index != 0 else { return }
        precondition(index <= committed && index >= applied, "applied(\(index)) is out of range [\(applied), \(committed)]")
        applied = index
        applying = max(applying, index)
    }

    mutating func stable(to index: UInt64, term: UInt64) {
        unstable.stable(to: index, term: term)
    }

    mutating func stableSnapshot(to index: UInt64) {
        unstable.stableSnapshot(to: index)
    }

    mutating func restore(_ snapshot: Snapshot) {
        committed = snapshot.metadata.index
        unstable.restore(snapshot)
    }

    /// Entries from `index` on, at most `maxSize` bytes (at least one entry when any exists).
    func entries(from index: UInt64, maxSize: UInt64) throws(StorageError) -> [Entry] {
        guard index <= lastIndex else { return [] }
        return try slice(index, lastIndex + 1, maxSize: maxSize)
    }

    /// Entries in `lo..<hi`, at most `maxSize` bytes but never empty when the range is not.
    func slice(_ lo: UInt64, _ hi: UInt64, maxSize: UInt64) throws(StorageError) -> [Entry] {
        guard lo < hi else { return [] }
        if lo < firstIndex { throw .compacted }
        precondition(hi <= lastIndex + 1, "slice[\(lo),\(hi)) out of bound [\(firstIndex),\(lastIndex)]")
        var result: [Entry] = []
        var size: UInt64 = 0
        if lo < unstable.offset {
            result = try storage.entries(from: lo, to: min(hi, unstable.offset), maxSize: maxSize)
            // Storage cut the batch short: the size limit is reached.
            if UInt64(result.count) < min(hi, unstable.offset) - lo { return result }
            for entry in result { size += entry.payloadSize }
        }
        if hi > unstable.offset {
            // Count what fits before copying, so a long unstable tail is never copied whole.
            let part = unstable.slice(max(lo, unstable.offset), hi)
            var count = 0
            for entry in part {
                let next = size + entry.payloadSize
                if next > maxSize && (count > 0 || !result.isEmpty) { break }
                size = next
                count += 1
            }
            result.append(contentsOf: part.prefix(count))
        }
        return result
    }
}
