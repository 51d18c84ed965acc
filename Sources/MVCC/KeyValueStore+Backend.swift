import Backend
import Dispatch
import Synchronization

extension KeyValueStore {
    /// Rebuilds the store from the backend: every stored change, replayed into the key index.
    package init(restoringFrom backend: SQLiteBackend) throws {
        self.init()
        var rebuild = IndexRebuild()
        try backend.forEachIndexRecord { record, key in rebuild.add(record, key: key) }
        let stored = try backend.meta(.revision) ?? 1
        restore(index: rebuild.build(), revision: max(stored, rebuild.revision), compacted: try backend.meta(.compactedRevision) ?? -1)
    }
}

/// The key index rebuilt from every stored change at once, instead of one insertion per change
/// in revision order (random key order: a descent from the root and a search per level each,
/// two-thirds of a restart with 1M keys).
///
/// The changes are gathered in revision order, their keys back to back in one buffer, then
/// sorted by key (revision order kept within a key), replayed key by key into each
/// ``KeyIndex``, and the tree is built bottom-up from the sorted keys.
struct IndexRebuild {
    /// Where a change's key lies in `keyBytes`, and the change's position in `records`: what
    /// the sort moves and compares, so it reads no record.
    private struct KeyPlace {
        var start: Int
        var end: Int
        var record: Int
    }

    private var keyBytes: [UInt8] = []
    private var keyPlaces: [KeyPlace] = []
    private var records: [SQLiteBackend.IndexRecord] = []
    /// The newest main revision among the changes added.
    private(set) var revision: Int64 = 0

    /// Adds the next stored change; changes come in revision order.
    mutating func add(_ record: SQLiteBackend.IndexRecord, key: UnsafeRawBufferPointer) {
        let start = keyBytes.count
        keyBytes.append(contentsOf: key)
        keyPlaces.append(KeyPlace(start: start, end: keyBytes.count, record: records.count))
        records.append(record)
        revision = max(revision, record.revision.main)
    }

    /// The key index of every change added. A deletion of a key that is not alive is history
    /// only (kept past its key's compaction, see ``KeyIndex/compact(atMain:kept:)``), and a key
    /// with no put left is not in the index.
    func build() -> BTree<KeyIndex> {
        let sorted = sortedByKey()
        return keyBytes.withUnsafeBytes { keyBytes in
            func key(_ place: KeyPlace) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: keyBytes[place.start..<place.end]) }
            var keys: [(place: KeyPlace, index: KeyIndex)] = []
            keys.reserveCapacity(sorted.count)
            var next = 0
            while next < sorted.count {
                let first = sorted[next]
                var keyIndex = KeyIndex()
                var hasPut = false
                while next < sorted.count, BTree<KeyIndex>.compare(key(sorted[next]), key(first)) == 0 {
                    let stored = records[sorted[next].record]
                    if !stored.isDeletion {
                        keyIndex.restore(stored.revision, createdMain: stored.createRevision, version: stored.version)
                        hasPut = true
                    } else if keyIndex.isLive {
                        keyIndex.tombstone(stored.revision)
                    }
                    next += 1
                }
                if hasPut { keys.append((first, keyIndex)) }
            }
            return BTree(orderedCount: keys.count, key: { key(keys[$0].place) }, value: { keys[$0].index })
        }
    }

    /// Whether the change at `first` sorts before the one at `second`: by key, then in
    /// revision order (the order they were added).
    private static func precedes(_ first: KeyPlace, _ second: KeyPlace, in keyBytes: UnsafeRawBufferPointer) -> Bool {
        let order = BTree<KeyIndex>.compare(
            UnsafeRawBufferPointer(rebasing: keyBytes[first.start..<first.end]),
            UnsafeRawBufferPointer(rebasing: keyBytes[second.start..<second.end]))
        return order != 0 ? order < 0 : first.record < second.record
    }

    /// The changes' key places sorted by key, revision order kept within a key: each half
    /// sorted on a thread of its own (sorting is most of a rebuild's CPU, and a member that is
    /// starting has its cores to itself), then merged.
    private func sortedByKey() -> [KeyPlace] {
        let middle = keyPlaces.count / 2
        let halves = Mutex<[[KeyPlace]]>([[], []])
        DispatchQueue.concurrentPerform(iterations: 2) { half in
            var places = Array(half == 0 ? keyPlaces[..<middle] : keyPlaces[middle...])
            keyBytes.withUnsafeBytes { keyBytes in places.sort { Self.precedes($0, $1, in: keyBytes) } }
            halves.withLock { $0[half] = places }
        }
        let (left, right) = halves.withLock { ($0[0], $0[1]) }
        return keyBytes.withUnsafeBytes { keyBytes in
            var merged: [KeyPlace] = []
            merged.reserveCapacity(keyPlaces.count)
            var (first, second) = (0, 0)
            while first < left.count, second < right.count {
                if Self.precedes(right[second], left[first], in: keyBytes) {
                    merged.append(right[second])
                    second += 1
                } else {
                    merged.append(left[first])
                    first += 1
                }
            }
            merged.append(contentsOf: left[first...])
            merged.append(contentsOf: right[second...])
            return merged
        }
    }
}
