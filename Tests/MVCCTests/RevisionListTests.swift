import Backend
import Testing

@testable import MVCC

@Suite("RevisionList: an array's value semantics with appends that share storage")
struct RevisionListTests {
    private func revs(_ mains: ClosedRange<Int64>) -> [Revision] { mains.map { Revision(main: $0) } }

    @Test func aCopyKeepsSeeingWhatItHadWhileTheNewestCopyAppends() {
        var list = RevisionList(revs(1...3))
        let published = list
        list.append(Revision(main: 4))
        list.append(Revision(main: 5))
        #expect(Array(published) == revs(1...3))
        #expect(Array(list) == revs(1...5))
        #expect(published.count == 3)
        #expect(list.last == Revision(main: 5))
    }

    @Test func twoCopiesThatBothAppendDivergeWithoutTouchingEachOther() {
        var base = RevisionList(revs(1...2))
        base.append(Revision(main: 3))  // leaves spare capacity: the storage doubled
        var left = base
        var right = base
        left.append(Revision(main: 10))
        right.append(Revision(main: 20))
        right.append(Revision(main: 21))
        left.append(Revision(main: 11))
        #expect(Array(base) == revs(1...3))
        #expect(Array(left) == revs(1...3) + [Revision(main: 10), Revision(main: 11)])
        #expect(Array(right) == revs(1...3) + [Revision(main: 20), Revision(main: 21)])
    }

    /// A list of one keeps its revision inline (most keys are written once): copies of it
    /// still append apart, and compaction down to one keeps the right one.
    @Test func aListOfOneBehavesLikeAnyOther() {
        var one = RevisionList()
        one.append(Revision(main: 7))
        let published = one
        var other = one
        one.append(Revision(main: 8))
        other.append(Revision(main: 9))
        #expect(Array(published) == [Revision(main: 7)])
        #expect(Array(one) == revs(7...8))
        #expect(Array(other) == [Revision(main: 7), Revision(main: 9)])
        #expect(RevisionList([Revision(main: 5)]) == [Revision(main: 5)])
        var compacted = RevisionList(revs(1...4))
        compacted.removeFirst(3)
        #expect(Array(compacted) == [Revision(main: 4)])
        compacted.append(Revision(main: 5))
        #expect(Array(compacted) == revs(4...5))
        #expect(compacted.first == Revision(main: 4) && compacted.last == Revision(main: 5))
    }

    @Test func growsPastItsCapacityAndDropsItsOldest() {
        var list = RevisionList()
        #expect(list.isEmpty)
        var snapshots: [RevisionList] = []
        for main in Int64(1)...1000 {
            list.append(Revision(main: main))
            if main % 97 == 0 { snapshots.append(list) }
        }
        #expect(Array(list) == revs(1...1000))
        for (n, snapshot) in snapshots.enumerated() {
            #expect(Array(snapshot) == revs(1...Int64(97 * (n + 1))))
        }
        var compacted = list
        compacted.removeFirst(990)
        #expect(Array(compacted) == revs(991...1000))
        compacted.append(Revision(main: 1001))
        #expect(Array(list) == revs(1...1000))
        #expect(compacted == RevisionList(revs(991...1001)))
        #expect(compacted != list)
    }

    @Test func appendsFromManyThreadsToCopiesOfOneListEachKeepTheirOwn() async {
        let base = RevisionList(revs(1...8))
        let results = await withTaskGroup(of: (Int64, [Revision]).self) { group in
            for writer in Int64(1)...8 {
                group.addTask {
                    var mine = base
                    for n in Int64(0)..<500 { mine.append(Revision(main: 1000 * writer + n)) }
                    return (writer, Array(mine))
                }
            }
            return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(Array(base) == revs(1...8))
        for writer in Int64(1)...8 {
            #expect(results[writer] == revs(1...8) + (0..<500).map { Revision(main: 1000 * writer + $0) })
        }
    }
}
