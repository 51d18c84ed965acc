import Backend
import Dispatch

extension KeyValueStore {
    /// Rebuilds the store from the backend: every stored change, replayed into the key index.
    package init(restoringFrom backend: SQLiteBackend) throws {
        self.init()
        let stored = try backend.meta(.revision) ?? 1
        let compacted = try backend.meta(.compactedRevision) ?? -1
        // About one change per revision since the compaction: the buffers are sized once
        // instead of growing (a restart with 1M keys spent a tenth of its time having the
        // kernel zero the pages of buffers copied on the way).
        var rebuild = IndexRebuild(expectedChanges: Int(max(stored - max(compacted, 0), 0)))
        try backend.forEachIndexRecord { record, key in rebuild.add(record, key: key) }
        restore(index: rebuild.build(), revision: max(stored, rebuild.revision), compacted: compacted)
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

    private let expectedChanges: Int
    private var keyBytes: [UInt8] = []
    private var keyPlaces: [KeyPlace] = []
    private var records: [SQLiteBackend.IndexRecord] = []
    /// The newest main revision among the changes added.
    private(set) var revision: Int64 = 0

    /// A rebuild sized for about `expectedChanges` changes (more only cost growing).
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
        revision = max(revision, record.revision.main)
    }

    /// The key index of every change added. A deletion of a key that is not alive is history
    /// only (kept past its key's compaction, see ``KeyIndex/compact(atMain:kept:)``), and a key
    /// with no put left is not in the index.
    consuming func build() -> BTree<KeyIndex> {
        sortHalves()
        return keyBytes.withUnsafeBytes { keyBytes in
            func key(_ place: KeyPlace) -> UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: keyBytes[place.start..<place.end]) }
            var keys: [(place: KeyPlace, index: KeyIndex)] = []
            keys.reserveCapacity(keyPlaces.count)
            // The two sorted halves merged as they are read.
            var (left, right) = (0, keyPlaces.count / 2)
            let (leftEnd, rightEnd) = (keyPlaces.count / 2, keyPlaces.count)
            func next() -> KeyPlace? {
                let takesRight = left == leftEnd || (right < rightEnd && Self.precedes(keyPlaces[right], keyPlaces[left], in: keyBytes))
                if takesRight {
                    guard right < rightEnd else { return nil }
                    defer { right += 1 }
                    return keyPlaces[right]
                }
                defer { left += 1 }
                return keyPlaces[left]
            }
            var place = next()
            while let first = place {
                var keyIndex = KeyIndex()
                var hasPut = false
                while let change = place, BTree<KeyIndex>.compare(key(change), key(first)) == 0 {
                    let stored = records[change.record]
                    if !stored.isDeletion {
                        keyIndex.restore(stored.revision, createdMain: stored.createRevision, version: stored.version)
                        hasPut = true
                    } else if keyIndex.isLive {
                        keyIndex.tombstone(stored.revision)
                    }
                    place = next()
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

    /// Sorts each half of the key places in place, each on a thread of its own (sorting is
    /// most of a rebuild's CPU, and a member that is starting has its cores to itself).
    private mutating func sortHalves() {
        let middle = keyPlaces.count / 2
        keyBytes.withUnsafeBytes { keyBytes in
            keyPlaces.withUnsafeMutableBufferPointer { places in
                let halves = DisjointHalves(keyBytes: keyBytes, places: places, middle: middle)
                DispatchQueue.concurrentPerform(iterations: 2) { half in halves.sort(half) }
            }
        }
    }

    /// The two halves of the key places, for two threads to sort at once.
    ///
    /// Safe to send because the threads share nothing they write: thread 0 sorts the places
    /// before `middle` and thread 1 those from it on, both only read the key bytes, and
    /// `concurrentPerform` returns after both are done, before the buffers' owner goes on.
    private struct DisjointHalves: @unchecked Sendable {
        let keyBytes: UnsafeRawBufferPointer
        let places: UnsafeMutableBufferPointer<KeyPlace>
        let middle: Int

        func sort(_ half: Int) {
            var part = UnsafeMutableBufferPointer(rebasing: half == 0 ? places[..<middle] : places[middle...])
            part.sort { IndexRebuild.precedes($0, $1, in: keyBytes) }
        }
    }
}
