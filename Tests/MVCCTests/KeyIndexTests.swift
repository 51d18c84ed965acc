import Backend
import Testing

@testable import MVCC

@Suite("KeyIndex: generations, reads at a revision, compaction")
struct KeyIndexTests {
    private func rev(_ main: Int64, _ sub: Int64 = 0) -> Revision { Revision(main: main, sub: sub) }

    /// put@5, put@7, delete@9, put@11, put@13.1 (the second change of a txn).
    private func history() -> KeyIndex {
        var index = KeyIndex()
        index.put(rev(5))
        index.put(rev(7))
        index.tombstone(rev(9))
        index.put(rev(11))
        index.put(rev(13, 1))
        return index
    }

    @Test func revisionsOrderByMainThenSub() {
        #expect(rev(1, 9) < rev(2, 0))
        #expect(rev(2, 0) < rev(2, 1))
        #expect(!(rev(3, 0) < rev(3, 0)))
    }

    @Test(arguments: [
        (Int64(4), nil),
        (5, KeyIndex.Snapshot(modified: Revision(main: 5), created: Revision(main: 5), version: 1)),
        (6, KeyIndex.Snapshot(modified: Revision(main: 5), created: Revision(main: 5), version: 1)),
        (7, KeyIndex.Snapshot(modified: Revision(main: 7), created: Revision(main: 5), version: 2)),
        (8, KeyIndex.Snapshot(modified: Revision(main: 7), created: Revision(main: 5), version: 2)),
        (9, nil),
        (10, nil),
        (11, KeyIndex.Snapshot(modified: Revision(main: 11), created: Revision(main: 11), version: 1)),
        (13, KeyIndex.Snapshot(modified: Revision(main: 13, sub: 1), created: Revision(main: 11), version: 2)),
        (100, KeyIndex.Snapshot(modified: Revision(main: 13, sub: 1), created: Revision(main: 11), version: 2)),
    ] as [(Int64, KeyIndex.Snapshot?)])
    func readsAtEveryRevision(_ at: Int64, _ expected: KeyIndex.Snapshot?) {
        #expect(history().snapshot(atMain: at) == expected)
    }

    @Test func liveAndModified() {
        var index = history()
        #expect(index.isLive)
        #expect(index.modified == rev(13, 1))
        index.tombstone(rev(14))
        #expect(!index.isLive)
        #expect(index.modified == rev(14))
        #expect(index.snapshot(atMain: 14) == nil)
        #expect(index.generations.count == 3)
        #expect(index.generations[2].revisions.isEmpty)
    }

    @Test(arguments: [
        // compact at: revisions left per generation, revisions kept in the backend
        (Int64(4), [[Revision(main: 5), Revision(main: 7), Revision(main: 9)], [Revision(main: 11), Revision(main: 13, sub: 1)]], Set<Revision>()),
        (5, [[Revision(main: 5), Revision(main: 7), Revision(main: 9)], [Revision(main: 11), Revision(main: 13, sub: 1)]], [Revision(main: 5)]),
        (7, [[Revision(main: 7), Revision(main: 9)], [Revision(main: 11), Revision(main: 13, sub: 1)]], [Revision(main: 7)]),
        (8, [[Revision(main: 7), Revision(main: 9)], [Revision(main: 11), Revision(main: 13, sub: 1)]], [Revision(main: 7)]),
        // The tombstone at 9 is at the compaction point: its whole generation leaves the
        // index, but the backend keeps the deletion for watchers starting at 9.
        (9, [[Revision(main: 11), Revision(main: 13, sub: 1)]], [Revision(main: 9)]),
        (11, [[Revision(main: 11), Revision(main: 13, sub: 1)]], [Revision(main: 11)]),
        (13, [[Revision(main: 13, sub: 1)]], [Revision(main: 13, sub: 1)]),
        (50, [[Revision(main: 13, sub: 1)]], [Revision(main: 13, sub: 1)]),
    ] as [(Int64, [[Revision]], Set<Revision>)])
    func compactionKeepsTheNewestRevisionAtOrBeforeIt(_ at: Int64, _ left: [[Revision]], _ kept: Set<Revision>) {
        var index = history()
        var available = Set<Revision>()
        #expect(index.compact(atMain: at, kept: &available))
        #expect(index.generations.map { Array($0.revisions) } == left)
        #expect(available == kept)
        // Reads at or after the compaction point see exactly what they saw before.
        for read in at...max(at, 15) {
            #expect(index.snapshot(atMain: read) == history().snapshot(atMain: read), "read at \(read)")
        }
    }

    @Test func compactingPastADeletionDropsTheKey() {
        var index = KeyIndex()
        index.put(rev(2))
        index.tombstone(rev(4))
        var kept = Set<Revision>()
        var copy = index
        #expect(copy.compact(atMain: 3, kept: &kept))
        #expect(kept == [rev(2)])
        #expect(copy.generations.map { Array($0.revisions) } == [[rev(2), rev(4)], []])
        kept = []
        var later = index
        #expect(!index.compact(atMain: 4, kept: &kept))
        #expect(kept == [rev(4)])
        kept = []
        #expect(!later.compact(atMain: 5, kept: &kept))
        #expect(kept.isEmpty)
    }

    @Test func versionCountsPutsSinceCreationEvenAfterCompaction() {
        var index = KeyIndex()
        for main in 1...10 { index.put(rev(Int64(main))) }
        var kept = Set<Revision>()
        _ = index.compact(atMain: 8, kept: &kept)
        #expect(index.snapshot(atMain: 10)?.version == 10)
        #expect(index.snapshot(atMain: 8)?.version == 8)
        #expect(index.snapshot(atMain: 9) == KeyIndex.Snapshot(modified: rev(9), created: rev(1), version: 9))
    }
}
