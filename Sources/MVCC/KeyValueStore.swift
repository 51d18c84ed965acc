import Backend

/// The revisioned keyspace: the key index and the store's revision counters, with etcd's rules
/// for reading at a revision, writing one main revision at a time, and compacting.
///
/// A value type: copying it is O(1) and gives a consistent snapshot for readers while the
/// single writer goes on. Record values are not held here; reads fetch them by revision from
/// a ``RevisionReader`` and writes return their ``Change``s for the caller to store.
package struct KeyValueStore: Sendable {
    /// The key index. Internal so tests can inspect it.
    private(set) var index = BTree<KeyIndex>()
    /// The newest main revision (etcd starts an empty store at 1).
    package private(set) var revision: Int64 = 1
    /// History before this main revision is gone; -1 until the first compaction (so, as in
    /// etcd, a fresh store accepts compaction at revision 0 once).
    package private(set) var compactedRevision: Int64 = -1

    package init() {}

    /// The keys alive now (etcd's `etcd_debugging_mvcc_keys_total`): kept as writes make keys
    /// live or dead, so a metrics scrape reads it without walking the index.
    package private(set) var liveKeyCount = 0

    /// What a range request selects.
    package struct RangeOptions: Sendable {
        /// Keep at most this many records (0: all); ``RangeResult/count`` still counts every key.
        package var limit = 0
        /// Read as of this main revision; 0 or less reads the newest.
        package var revision: Int64 = 0
        /// Count the keys without fetching any record.
        package var countOnly = false

        package init(limit: Int = 0, revision: Int64 = 0, countOnly: Bool = false) {
            self.limit = limit
            self.revision = revision
            self.countOnly = countOnly
        }
    }

    package struct RangeResult: Sendable, Equatable {
        /// Records in key order (at most the limit).
        package var kvs: [KeyValue]
        /// Keys in the range that existed at the revision read.
        package var count: Int
        /// The store's newest revision when the range was read (what etcd's header reports,
        /// also for reads of older revisions).
        package var revision: Int64
    }

    /// The keys in `[key, end)` as of a revision. `end` nil selects `key` alone; `end == [0]`
    /// selects every key from `key` on (etcd's conventions).
    package func range(
        _ key: [UInt8], end: [UInt8]?, options: RangeOptions = .init(), reader: some RevisionReader
    ) throws -> RangeResult {
        let atRevision = options.revision <= 0 ? revision : options.revision
        guard atRevision <= revision else { throw MVCCError.futureRevision }
        guard atRevision >= compactedRevision else { throw MVCCError.compacted }
        var revisions: [Revision] = []
        let count = revisionsInRange(key, end: end, atMain: atRevision, limit: options.countOnly ? 0 : options.limit) {
            if !options.countOnly { revisions.append($0) }
        }
        let found = try reader.keyValues(at: revisions)
        // Only compaction removes records: one missing here was compacted away after this
        // snapshot was taken (the reader may retry with a newer snapshot).
        let kvs = try found.map { kv in
            guard let kv else { throw MVCCError.compacted }
            return kv
        }
        return RangeResult(kvs: kvs, count: count, revision: revision)
    }

    /// Counts the keys alive at `atMain` in the range, passing the revisions of the first
    /// `limit` of them (all when `limit` is 0) to `collect`.
    private func revisionsInRange(
        _ key: [UInt8], end: [UInt8]?, atMain: Int64, limit: Int, _ collect: (Revision) -> Void
    ) -> Int {
        guard let end else {
            guard let snapshot = index[key]?.snapshot(atMain: atMain) else { return 0 }
            collect(snapshot.modified)
            return 1
        }
        var count = 0
        index.forEach(from: key, below: end == [0] ? nil : end) { _, keyIndex in
            if let snapshot = keyIndex.snapshot(atMain: atMain) {
                if limit == 0 || count < limit { collect(snapshot.modified) }
                count += 1
            }
            return true
        }
        return count
    }

    /// Runs one write transaction: everything `body` changes gets the next main revision, with
    /// sub revisions in call order. The revision advances only if something changed.
    ///
    /// When `body` throws, the store is left as it was: the writer puts back what it changed in
    /// the index (a key it added stays as an empty entry, which reads as absent and the next
    /// compaction drops). So a caller need not write to a copy, whose shared nodes would make
    /// every write copy its whole path in the index.
    package mutating func write<Result>(
        reader: some RevisionReader, _ body: (inout Writer) throws -> Result
    ) rethrows -> (result: Result, changes: [Change]) {
        var writer = Writer(store: self, main: revision + 1, reader: reader)
        // The writer holds the only reference to the index now: only nodes a published
        // snapshot shares get copied.
        index = Self.placeholderIndex
        var completed = false
        defer {
            if !completed { writer.undoIndexChanges() }
            self = writer.store
        }
        let result = try body(&writer)
        completed = true
        if !writer.changes.isEmpty { writer.store.revision += 1 }
        return (result, writer.changes)
    }

    /// What the store's index is while a writer has taken it over.
    private static let placeholderIndex = BTree<KeyIndex>()

    /// Writes inside one main revision; reads through it see its own earlier changes.
    package struct Writer {
        fileprivate var store: KeyValueStore
        package let main: Int64
        private let reader: any RevisionReader
        package private(set) var changes: [Change] = []
        private var pending: [Revision: KeyValue] = [:]
        /// Each key this write changed in the index and what it held before, in order.
        private var replaced: [(key: [UInt8], previous: KeyIndex)] = []
        /// The store's live keys before this write, put back if it fails.
        private let liveKeysBefore: Int

        fileprivate init(store: KeyValueStore, main: Int64, reader: any RevisionReader) {
            self.store = store
            self.main = main
            self.reader = reader
            liveKeysBefore = store.liveKeyCount
        }

        private var nextRevision: Revision { Revision(main: main, sub: Int64(changes.count)) }

        /// The key's current record (including this write's changes), if it exists.
        package func current(_ key: [UInt8]) throws -> KeyValue? {
            guard let snapshot = store.index[key]?.snapshot(atMain: main) else { return nil }
            return try keyValues(at: [snapshot.modified])[0]
        }

        /// Reads a range as it stands within this write (or at an older revision, if asked).
        package func range(_ key: [UInt8], end: [UInt8]?, options: RangeOptions = .init()) throws -> RangeResult {
            var view = store
            view.revision = changes.isEmpty ? main - 1 : main
            return try view.range(key, end: end, options: options, reader: PendingReader(writer: self))
        }

        /// Puts `value` at `key`, returning the record written.
        @discardableResult
        package mutating func put(_ key: [UInt8], value: [UInt8], lease: Int64) -> KeyValue {
            let revision = nextRevision
            let main = self.main
            var record = KeyValue(key: key, value: value, createRevision: main, modRevision: main, version: 1, lease: lease)
            var previous = KeyIndex()
            store.index.update(key, default: { KeyIndex() }) { keyIndex in
                previous = keyIndex
                if keyIndex.isLive, let snapshot = keyIndex.snapshot(atMain: main) {
                    record.createRevision = snapshot.created.main
                    record.version = snapshot.version + 1
                }
                keyIndex.put(revision)
            }
            if !previous.isLive { store.liveKeyCount += 1 }
            replaced.append((key, previous))
            pending[revision] = record
            changes.append(Change(kind: .put, revision: revision, kv: record))
            return record
        }

        /// Deletes the live keys of `[key, end)` (see ``KeyValueStore/range(_:end:options:reader:)``
        /// for `end`), returning their records as they were before.
        @discardableResult
        package mutating func delete(_ key: [UInt8], end: [UInt8]?) throws -> [KeyValue] {
            let doomed = try range(key, end: end).kvs
            for record in doomed {
                let revision = nextRevision
                var previous = KeyIndex()
                store.index.update(record.key, default: { KeyIndex() }) { keyIndex in
                    previous = keyIndex
                    keyIndex.tombstone(revision)
                }
                store.liveKeyCount -= 1
                replaced.append((record.key, previous))
                let tombstone = KeyValue(key: record.key, value: [], createRevision: 0, modRevision: main, version: 0, lease: 0)
                changes.append(Change(kind: .delete, revision: revision, kv: tombstone))
            }
            return doomed
        }

        /// Puts back, newest first, what this write changed in the index.
        fileprivate mutating func undoIndexChanges() {
            for (key, previous) in replaced.reversed() {
                store.index.update(key, default: { previous }) { $0 = previous }
            }
            replaced.removeAll()
            store.liveKeyCount = liveKeysBefore
        }

        fileprivate func keyValues(at revisions: [Revision]) throws -> [KeyValue?] {
            try OverlayReader(pending: pending, base: reader).keyValues(at: revisions)
        }
    }

    private struct PendingReader: RevisionReader {
        let writer: Writer
        func keyValues(at revisions: [Revision]) throws -> [KeyValue?] { try writer.keyValues(at: revisions) }
    }

    /// The revision of `key`'s current record, nil when it does not exist now.
    package func currentRevision(of key: [UInt8]) -> Revision? {
        index[key]?.snapshot(atMain: revision)?.modified
    }

    /// Takes a rebuilt key index, its count of live keys and the counters stored with it
    /// (rebuilding at start).
    mutating func restore(index: BTree<KeyIndex>, liveKeys: Int, revision: Int64, compacted: Int64) {
        self.index = index
        liveKeyCount = liveKeys
        self.revision = revision
        compactedRevision = compacted
    }

    /// Drops history before main revision `atMain`. Returns the revisions at or before it that
    /// must stay in the backend; the backend removes every other revision at or before it.
    package mutating func compact(atMain: Int64) throws -> Set<Revision> {
        guard atMain > compactedRevision else { throw MVCCError.compacted }
        guard atMain <= revision else { throw MVCCError.futureRevision }
        var kept = Set<Revision>()
        index = index.compactMap { _, keyIndex in
            var keyIndex = keyIndex
            return keyIndex.compact(atMain: atMain, kept: &kept) ? keyIndex : nil
        }
        compactedRevision = atMain
        return kept
    }
}
