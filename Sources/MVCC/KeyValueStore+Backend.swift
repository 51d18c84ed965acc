import Backend
import Locking

extension KeyValueStore {
    /// Rebuilds the store from the backend: every stored change, replayed into the key index.
    package init(restoringFrom backend: SQLiteBackend) throws {
        self.init()
        let stored = try backend.meta(.revision) ?? 1
        let compacted = try backend.meta(.compactedRevision) ?? -1
        let rebuilt = try IndexRebuild.read(backend, revision: stored, compacted: compacted)
        restore(index: rebuilt.index, liveKeys: rebuilt.liveKeys, revision: max(stored, rebuilt.revision), compacted: compacted)
    }
}

/// The key index rebuilt from every stored change at once, instead of one insertion per change
/// in revision order (random key order: a descent from the root and a search per level each,
/// two-thirds of a restart with 1M keys).
///
/// Two threads each read half of the revisions, their keys back to back in one buffer, and sort
/// their changes by key (revision order kept within a key); the two halves are merged as
/// they are replayed key by key into each ``KeyIndex``, and the tree is built bottom-up from
/// the sorted keys. It runs when a member starts or installs a snapshot, when the second core
/// has little else to do.
enum IndexRebuild {
    /// Where a change's key lies in its half's `keyBytes`, and its position in `records`: what
    /// the sort moves and compares, so it reads no record.
    private struct KeyPlace {
        var start: Int
        var end: Int
        var record: Int
    }

    /// The changes of one range of revisions, sorted by key once read.
    private struct Half {
        private(set) var keyBytes: [UInt8] = []
        private(set) var keyPlaces: [KeyPlace] = []
        private(set) var records: [SQLiteBackend.IndexRecord] = []
        private let expectedChanges: Int

        /// A half sized for about `expectedChanges` changes (more only cost growing).
        init(expectedChanges: Int) {
            self.expectedChanges = expectedChanges
            keyPlaces.reserveCapacity(expectedChanges)
            records.reserveCapacity(expectedChanges)
        }

        /// Adds the next stored change; changes come in revision order.
        mutating func add(_ record: SQLiteBackend.IndexRecord, key: UnsafeRawBufferPointer) {
            // Keys of the first one's length, a guess: room not written costs no memory.
            if keyBytes.capacity == 0 { keyBytes.reserveCapacity(expectedChanges * max(key.count, 1)) }
            let start = keyBytes.count
            keyBytes.append(contentsOf: key)
            keyPlaces.append(KeyPlace(start: start, end: keyBytes.count, record: records.count))
            records.append(record)
        }

        /// Sorts the changes by key, then in revision order (the order they were added).
        mutating func sort() {
            keyBytes.withUnsafeBytes { keyBytes in
                keyPlaces.sort { first, second in
                    let order = BTree<KeyIndex>.compare(key(first, keyBytes), key(second, keyBytes))
                    return order != 0 ? order < 0 : first.record < second.record
                }
            }
        }
    }

    private static func key(_ place: KeyPlace, _ keyBytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: keyBytes[place.start..<place.end])
    }

    /// The key index of every change in `backend`, and the newest main revision among them.
    /// The buffers are sized for about one change per revision since the compaction instead of
    /// growing (a restart with 1M keys spent a tenth of its time having the kernel zero the
    /// pages of buffers copied on the way).
    static func read(_ backend: SQLiteBackend, revision: Int64, compacted: Int64) throws
        -> (index: BTree<KeyIndex>, liveKeys: Int, revision: Int64)
    {
        let oldest = max(compacted, 0)
        let middle = oldest + max(revision - oldest, 0) / 2 + 1
        let ranges = [Int64.min..<middle, middle..<Int64.max]
        let expected = Int(max(revision - oldest, 0) / 2 + 1)
        @Sendable func readHalf(_ half: Int) -> Result<Half, any Error> {
            Result {
                var part = Half(expectedChanges: expected)
                try backend.forEachIndexRecord(mains: ranges[half]) { record, key in part.add(record, key: key) }
                part.sort()
                return part
            }
        }
        let newerHalf = BackgroundResult { try readHalf(1).get() }
        let olderHalf = readHalf(0)
        let newer = try newerHalf.wait()
        let older = try olderHalf.get()
        let newest = (newer.records.last ?? older.records.last)?.revision.main ?? 0
        let (index, liveKeys) = build(older, newer)
        return (index, liveKeys, newest)
    }

    /// The key index of the changes of both halves, `older` holding the older revisions. A
    /// deletion of a key that is not alive is history only (kept past its key's compaction,
    /// see ``KeyIndex/compact(atMain:kept:)``), and a key with no put left is not in the index.
    /// Also counts the keys alive at the end.
    private static func build(_ older: Half, _ newer: Half) -> (index: BTree<KeyIndex>, liveKeys: Int) {
        older.keyBytes.withUnsafeBytes { olderKeys in
            newer.keyBytes.withUnsafeBytes { newerKeys in
                /// A change of either half: which half, and where.
                typealias Change = (isNewer: Bool, place: KeyPlace)
                func key(_ change: Change) -> UnsafeRawBufferPointer { Self.key(change.place, change.isNewer ? newerKeys : olderKeys) }
                // The halves merged as they are read; a key's older changes come first.
                var (nextOlder, nextNewer) = (0, 0)
                func next() -> Change? {
                    let olderChange = nextOlder < older.keyPlaces.count ? (false, older.keyPlaces[nextOlder]) : nil
                    let newerChange = nextNewer < newer.keyPlaces.count ? (true, newer.keyPlaces[nextNewer]) : nil
                    if let olderChange, newerChange.map({ BTree<KeyIndex>.compare(key(olderChange), key($0)) <= 0 }) ?? true {
                        nextOlder += 1
                        return olderChange
                    }
                    nextNewer += newerChange == nil ? 0 : 1
                    return newerChange
                }
                var keys: [(change: Change, index: KeyIndex)] = []
                keys.reserveCapacity(older.keyPlaces.count + newer.keyPlaces.count)
                var liveKeys = 0
                var change = next()
                while let first = change {
                    var keyIndex = KeyIndex()
                    var hasPut = false
                    while let current = change, BTree<KeyIndex>.compare(key(current), key(first)) == 0 {
                        let stored = current.isNewer ? newer.records[current.place.record] : older.records[current.place.record]
                        if !stored.isDeletion {
                            keyIndex.restore(stored.revision, createdMain: stored.createRevision, version: stored.version)
                            hasPut = true
                        } else if keyIndex.isLive {
                            keyIndex.tombstone(stored.revision)
                        }
                        change = next()
                    }
                    if hasPut { keys.append((first, keyIndex)) }
                    if keyIndex.isLive { liveKeys += 1 }
                }
                return (BTree(orderedCount: keys.count, key: { key(keys[$0].change) }, value: { keys[$0].index }), liveKeys)
            }
        }
    }
}
