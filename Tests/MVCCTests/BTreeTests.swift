import TestSupport
import Testing

@testable import MVCC

@Suite("BTree")
struct BTreeTests {
    private func key(_ value: Int) -> [UInt8] {
        // Big-endian so byte order equals numeric order.
        withUnsafeBytes(of: UInt32(value).bigEndian) { Array($0) }
    }

    private func keys(_ tree: BTree<Int>, from lower: [UInt8] = [], below upper: [UInt8]? = nil) -> [Int] {
        var out: [Int] = []
        tree.forEach(from: lower, below: upper) { _, value in
            out.append(value)
            return true
        }
        return out
    }

    @Test(arguments: [1, 63, 64, 65, 1_000, 20_000])
    func insertsInAnyOrderAndScansInKeyOrder(_ n: Int) {
        var generator = SeededRandom(seed: UInt64(n))
        var tree = BTree<Int>()
        for value in (0..<n).shuffled(using: &generator) {
            tree.update(key(value), default: { value }) { _ in }
        }
        #expect(tree.count == n)
        #expect(keys(tree) == Array(0..<n))
        #expect(tree[key(n / 2)] == n / 2)
        #expect(tree[key(n)] == nil)
    }

    /// Keys in order split nodes just before their last entry (full nodes stay behind), then
    /// keys before them land in those full nodes: every key is found, in order.
    @Test func keysInOrderThenBeforeThemAllStayFindable() {
        var tree = BTree<Int>()
        for value in stride(from: 1_000, to: 21_000, by: 2) { tree.update(key(value), default: { value }) { _ in } }
        for value in stride(from: 20_999, to: 0, by: -2) { tree.update(key(value), default: { value }) { _ in } }
        #expect(tree.count == 20_500)
        #expect(keys(tree) == Array(stride(from: 1, to: 1_000, by: 2)) + Array(1_000..<21_000))
        #expect(tree[key(1_000)] == 1_000)
        #expect(tree[key(20_999)] == 20_999)
        #expect(tree[key(2)] == nil)
    }

    @Test func rangesHonourBothBounds() {
        var tree = BTree<Int>()
        for value in stride(from: 0, to: 1_000, by: 2) { tree.update(key(value), default: { value }) { _ in } }
        #expect(keys(tree, from: key(101), below: key(111)) == [102, 104, 106, 108, 110])
        #expect(keys(tree, from: key(100), below: key(100)) == [])
        #expect(keys(tree, from: key(995)) == [996, 998])
        var firstThree: [Int] = []
        tree.forEach(from: key(0), below: nil) { _, value in
            firstThree.append(value)
            return firstThree.count < 3
        }
        #expect(firstThree == [0, 2, 4])
    }

    @Test func byteOrderIsLexicographicWithPrefixesFirst() {
        var tree = BTree<String>()
        for text in ["b", "a", "ab", "", "a\u{0}", "\u{FF}"] {
            tree.update(Array(text.utf8), default: { text }) { _ in }
        }
        var ordered: [String] = []
        tree.forEach(from: [], below: nil) { _, value in
            ordered.append(value)
            return true
        }
        #expect(ordered == ["", "a", "a\u{0}", "ab", "b", "\u{FF}"])
    }

    /// A node keeps its keys back to back: keys of every length (empty, one byte, hundreds),
    /// inserted at random, come back byte for byte in order through splits and copies.
    @Test func keysOfEveryLengthComeBackExactly() {
        var generator = SeededRandom(seed: 20261204)
        var inserted = Set<[UInt8]>()
        var tree = BTree<Int>()
        var snapshots: [(BTree<Int>, [[UInt8]])] = []
        for step in 0..<3_000 {
            let length = [0, 1, 2, 5, 64, 300][Int.random(in: 0..<6, using: &generator)]
            let key = (0..<length).map { _ in UInt8.random(in: 0...3, using: &generator) }
            tree.update(key, default: { step }) { _ in }
            inserted.insert(key)
            if step % 1_000 == 999 { snapshots.append((tree, inserted.sorted { $0.lexicographicallyPrecedes($1) })) }
        }
        for (snapshot, expected) in snapshots {
            var scanned: [[UInt8]] = []
            snapshot.forEach(from: [], below: nil) { key, _ in
                scanned.append(Array(key))
                return true
            }
            #expect(scanned == expected)
            #expect(snapshot.count == expected.count)
            #expect(expected.allSatisfy { snapshot[$0] != nil })
        }
        #expect(tree[[4]] == nil)
        let lower: [UInt8] = [1]
        let upper: [UInt8] = [2]
        var inRange: [[UInt8]] = []
        tree.forEach(from: lower, below: upper) { key, _ in
            inRange.append(Array(key))
            return true
        }
        #expect(inRange == inserted.filter { $0.first == 1 }.sorted { $0.lexicographicallyPrecedes($1) })
    }

    @Test func updatesChangeValuesInPlace() {
        var tree = BTree<Int>()
        for round in 0..<3 {
            for value in 0..<500 { tree.update(key(value), default: { 0 }) { $0 += round + 1 } }
        }
        #expect(tree.count == 500)
        #expect(tree[key(499)] == 6)
    }

    @Test func copiesAreSnapshotsUnaffectedByLaterWrites() {
        var tree = BTree<Int>()
        for value in 0..<5_000 { tree.update(key(value), default: { value }) { _ in } }
        let snapshot = tree
        for value in 0..<5_000 { tree.update(key(value), default: { 0 }) { $0 = -1 } }
        for value in 5_000..<6_000 { tree.update(key(value), default: { value }) { _ in } }
        #expect(snapshot.count == 5_000)
        #expect(keys(snapshot) == Array(0..<5_000))
        #expect(tree.count == 6_000)
        #expect(keys(tree, below: key(3)) == [-1, -1, -1])
    }

    @Test func compactMapDropsAndRewritesInOrder() {
        var tree = BTree<Int>()
        for value in 0..<1_000 { tree.update(key(value), default: { value }) { _ in } }
        let evens = tree.compactMap { _, value in value % 2 == 0 ? value * 10 : nil }
        #expect(evens.count == 500)
        #expect(keys(evens).prefix(3) == [0, 20, 40])
        #expect(evens[key(998)] == 9_980)
        #expect(tree.count == 1_000)
    }

    /// The depth of every leaf and the key count of every node below the root, checking on the
    /// way that inner nodes have one child more than keys.
    private func shape(_ node: BTree<Int>.Node, depth: Int = 0, into shape: inout (leafDepths: Set<Int>, sizes: [Int])) {
        if depth > 0 { shape.sizes.append(node.keyCount) }
        if node.isLeaf {
            shape.leafDepths.insert(depth)
            return
        }
        #expect(node.children.count == node.keyCount + 1)
        for child in node.children { self.shape(child, depth: depth + 1, into: &shape) }
    }

    /// Trees built from ordered entries (what a restart's rebuild and compaction make) hold
    /// every key, keep every leaf at one depth and every node at least half full, and take
    /// inserts between and around their keys afterwards.
    @Test(arguments: [0, 1, 16, 17, 33, 288, 289, 4_912, 4_913, 20_000])
    func treesBuiltFromOrderedEntriesAreBalancedAndFull(_ n: Int) {
        var tree = BTree<Int>(orderedCount: n, key: { key($0 * 2) }, value: { $0 * 2 })
        #expect(tree.count == n)
        #expect(keys(tree) == Array(stride(from: 0, to: 2 * n, by: 2)))
        for value in [0, n / 2, n - 1] where n > 0 { #expect(tree[key(value * 2)] == value * 2) }
        #expect(tree[key(1)] == nil)

        var found: (leafDepths: Set<Int>, sizes: [Int]) = ([], [])
        shape(tree.root, into: &found)
        #expect(found.leafDepths.count == 1)
        #expect(found.sizes.allSatisfy { $0 >= BTree<Int>.maximumEntries / 2 - 1 && $0 <= BTree<Int>.maximumEntries })
        #expect(tree.root.keyCount <= BTree<Int>.maximumEntries)
        #expect(found.sizes.reduce(tree.root.keyCount, +) == n)

        var generator = SeededRandom(seed: UInt64(n) + 1)
        for value in Array(stride(from: 1, through: 2 * n + 1, by: 2)).shuffled(using: &generator) {
            tree.update(key(value), default: { value }) { _ in }
        }
        #expect(tree.count == 2 * n + 1)
        // Odd keys land between the built ones, and the last one after them all.
        #expect(keys(tree) == Array(0..<(2 * n)) + [2 * n + 1])
    }
}
