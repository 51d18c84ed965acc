/// An ordered map from byte-string keys to values: a B-tree with copy-on-write nodes.
///
/// Copying the tree is O(1) and the copy is an immutable snapshot: a writer that mutates a
/// shared tree copies only the nodes on the path it changes. This is how readers on the event
/// loops read the key index while the apply loop keeps writing, without holding a lock.
package struct BTree<Value> {
    /// Entries per node, at most. A write after a snapshot was taken copies each node on its
    /// path, retaining every value and child in it (and the snapshot's release frees the old
    /// ones): narrow nodes keep that cheap. 16 measured best for puts at 256 clients (64 cost
    /// 6 % more server CPU per put; 8 was no better).
    static var maximumEntries: Int { 16 }

    /// Its arrays are exempt from run-time exclusivity checks, which cost 5 % of a restart's
    /// CPU (rebuilding the index) and part of the 2 % a put spends on them: a node is only
    /// written by the tree's one writer after `isKnownUniquelyReferenced` showed the writer
    /// owns it, and no access to one of its arrays stays open across code that could reach
    /// the same node.
    ///
    /// A node's keys are stored back to back in one array: a key costs its bytes and an offset
    /// instead of an array of its own (a 64-byte key took 112 bytes of heap and a pointer),
    /// and a copy-on-write copy of the node copies them with one `memcpy` instead of retaining
    /// each one.
    final class Node {
        /// Every key, in order, back to back.
        @exclusivity(unchecked) var keyBytes: [UInt8]
        /// Where each key ends in `keyBytes` (it starts where the one before it ends).
        @exclusivity(unchecked) var keyEnds: [Int]
        @exclusivity(unchecked) var values: [Value]
        /// Empty for a leaf; otherwise `keyCount + 1` children.
        @exclusivity(unchecked) var children: [Node]

        init(keyBytes: [UInt8] = [], keyEnds: [Int] = [], values: [Value] = [], children: [Node] = []) {
            self.keyBytes = keyBytes
            self.keyEnds = keyEnds
            self.values = values
            self.children = children
        }

        var isLeaf: Bool { children.isEmpty }
        var keyCount: Int { keyEnds.count }

        func copy() -> Node { Node(keyBytes: keyBytes, keyEnds: keyEnds, values: values, children: children) }

        func keyStart(_ index: Int) -> Int { index == 0 ? 0 : keyEnds[index - 1] }

        func key(at index: Int) -> ArraySlice<UInt8> { keyBytes[keyStart(index)..<keyEnds[index]] }

        /// Inserts an entry at `index`. A node's arrays grow by a quarter of a full node at a
        /// time (the key bytes by a quarter node of keys of their average length): keys arrive
        /// in any order and leave nodes about two-thirds full, so room for a full node at once
        /// left a third of every array empty (1M keys of 64 bytes took 243 bytes each), and
        /// doubling did worse (396).
        func insert(_ key: some Collection<UInt8>, _ value: Value, at index: Int) {
            let step = BTree.maximumEntries / 4
            if values.count == values.capacity { values.reserveCapacity(Swift.min(values.count + step, BTree.maximumEntries)) }
            if keyEnds.count == keyEnds.capacity { keyEnds.reserveCapacity(Swift.min(keyEnds.count + step, BTree.maximumEntries)) }
            let bytes = keyBytes.count + key.count
            if keyBytes.capacity < bytes { keyBytes.reserveCapacity(bytes + bytes / (keyCount + 1) * step) }
            let start = keyStart(index)
            keyBytes.insert(contentsOf: key, at: start)
            keyEnds.insert(start + key.count, at: index)
            for later in (index + 1)..<keyEnds.count { keyEnds[later] += key.count }
            values.insert(value, at: index)
        }

        /// Removes the keys from `index` on.
        /// Keeps only the entries before `index` (and the children up to it), in arrays of
        /// their size: the node was full, and the room it had for a full node would stay empty.
        func keepEntries(before index: Int) {
            keyBytes = Array(keyBytes[..<keyStart(index)])
            keyEnds = Array(keyEnds[..<index])
            values = Array(values[..<index])
            if !isLeaf { children = Array(children[...index]) }
        }

        /// The keys from `index` on, as a new node's key storage.
        func keys(from index: Int) -> (bytes: [UInt8], ends: [Int]) {
            let start = keyStart(index)
            return (Array(keyBytes[start...]), keyEnds[index...].map { $0 - start })
        }

        /// The first index whose key is >= `key`, and whether it is equal.
        func search(_ key: [UInt8]) -> (index: Int, found: Bool) {
            keyBytes.withUnsafeBytes { bytes in
                key.withUnsafeBytes { target in
                    var low = 0
                    var high = keyEnds.count
                    while low < high {
                        let middle = (low + high) / 2
                        let start = middle == 0 ? 0 : keyEnds[middle - 1]
                        let order = BTree.compare(UnsafeRawBufferPointer(rebasing: bytes[start..<keyEnds[middle]]), target)
                        if order == 0 { return (middle, true) }
                        if order < 0 { low = middle + 1 } else { high = middle }
                    }
                    return (low, false)
                }
            }
        }

        /// Whether `key` sorts after every key of this (non-empty) node.
        func isPastLastKey(_ key: [UInt8]) -> Bool {
            let last = self.key(at: keyCount - 1)
            return last.withUnsafeBytes { last in key.withUnsafeBytes { BTree.compare($0, last) > 0 } }
        }
    }

    /// Internal for tests, which check the shape of built trees.
    private(set) var root: Node
    package private(set) var count: Int

    package init() {
        root = Node()
        count = 0
    }

    /// The value stored for `key`.
    package subscript(key: [UInt8]) -> Value? {
        var node = root
        while true {
            let (index, found) = node.search(key)
            if found { return node.values[index] }
            if node.isLeaf { return nil }
            node = node.children[index]
        }
    }

    /// Changes the value for `key` in place, inserting `makeDefault()` first when absent.
    @discardableResult
    package mutating func update<Result>(
        _ key: [UInt8], default makeDefault: () -> Value, _ body: (inout Value) throws -> Result
    ) rethrows -> Result {
        if !isKnownUniquelyReferenced(&root) { root = root.copy() }
        if root.keyCount == Self.maximumEntries {
            let newRoot = Node(children: [root])
            Self.splitChild(newRoot, at: 0, appending: root.isPastLastKey(key))
            root = newRoot
        }
        var node = root
        while true {
            let (index, found) = node.search(key)
            if found { return try body(&node.values[index]) }
            if node.isLeaf {
                var value = makeDefault()
                let result = try body(&value)
                node.insert(key, value, at: index)
                count += 1
                return result
            }
            var childIndex = index
            if !isKnownUniquelyReferenced(&node.children[childIndex]) {
                node.children[childIndex] = node.children[childIndex].copy()
            }
            let child = node.children[childIndex]
            if child.keyCount == Self.maximumEntries {
                Self.splitChild(node, at: childIndex, appending: child.isPastLastKey(key))
                let order = key.withUnsafeBytes { key in node.key(at: childIndex).withUnsafeBytes { Self.compare(key, $0) } }
                if order == 0 { return try body(&node.values[childIndex]) }
                if order > 0 { childIndex += 1 }
            }
            node = node.children[childIndex]
        }
    }

    /// Visits entries with `lower <= key < upper` (no upper bound when `upper` is nil) in key
    /// order until `body` returns false.
    package func forEach(from lower: [UInt8], below upper: [UInt8]?, _ body: (ArraySlice<UInt8>, Value) throws -> Bool) rethrows {
        _ = try Self.visit(root, lower, upper, body)
    }

    /// A tree of `count` entries whose keys strictly increase with their position, built
    /// bottom-up in one pass with nodes as full as the count allows: what rebuilding the index
    /// at start and compaction use instead of inserting one key at a time (a descent from the
    /// root, a search per level, and arrays that grow).
    package init<Key: Collection<UInt8>>(orderedCount count: Int, key: (Int) -> Key, value: (Int) -> Value) {
        var height = 0
        while Self.capacity(height: height) < count { height += 1 }
        root = Self.build(0..<count, height: height, key: key, value: value)
        self.count = count
    }

    /// The most entries a tree of `height` levels below its root holds: (M + 1)^(height + 1) - 1.
    private static func capacity(height: Int) -> Int {
        var capacity = maximumEntries
        for _ in 0..<height { capacity = capacity * (maximumEntries + 1) + maximumEntries }
        return capacity
    }

    /// The node of `height` holding the entries at `positions`. An inner node gets the fewest
    /// children that can hold them, each as large as the others give or take one; every child
    /// then holds more than its own children could (at least half of its capacity), so no node
    /// below is left without keys.
    private static func build<Key: Collection<UInt8>>(
        _ positions: Range<Int>, height: Int, key: (Int) -> Key, value: (Int) -> Value
    ) -> Node {
        guard height > 0 else {
            var keyBytes: [UInt8] = []
            var keyEnds: [Int] = []
            keyBytes.reserveCapacity(positions.reduce(0) { $0 + key($1).count })
            keyEnds.reserveCapacity(positions.count)
            for position in positions {
                keyBytes.append(contentsOf: key(position))
                keyEnds.append(keyBytes.count)
            }
            return Node(keyBytes: keyBytes, keyEnds: keyEnds, values: positions.map(value))
        }
        let childCapacity = capacity(height: height - 1)
        let childCount = (positions.count + childCapacity + 1) / (childCapacity + 1)
        let inChildren = positions.count - (childCount - 1)
        var separators: [Int] = []
        var children: [Node] = []
        separators.reserveCapacity(childCount - 1)
        children.reserveCapacity(childCount)
        var start = positions.lowerBound
        for child in 0..<childCount {
            let size = inChildren / childCount + (child < inChildren % childCount ? 1 : 0)
            children.append(build(start..<(start + size), height: height - 1, key: key, value: value))
            start += size
            if child < childCount - 1 {
                separators.append(start)
                start += 1
            }
        }
        let node = build(separators.indices, height: 0, key: { key(separators[$0]) }, value: { value(separators[$0]) })
        node.children = children
        return node
    }

    /// A tree of the entries `transform` keeps (returning their new value) or drops (nil); built in
    /// one ordered pass (used by compaction, which rewrites many keys at once).
    package func compactMap(_ transform: (ArraySlice<UInt8>, Value) throws -> Value?) rethrows -> BTree<Value> {
        var kept: [(key: ArraySlice<UInt8>, value: Value)] = []
        try forEach(from: [], below: nil) { key, value in
            if let value = try transform(key, value) { kept.append((key, value)) }
            return true
        }
        return BTree(orderedCount: kept.count, key: { kept[$0].key }, value: { kept[$0].value })
    }

    private static func visit(
        _ node: Node, _ lower: [UInt8], _ upper: [UInt8]?, _ body: (ArraySlice<UInt8>, Value) throws -> Bool
    ) rethrows -> Bool {
        var index = node.search(lower).index
        while true {
            if !node.isLeaf, !(try visit(node.children[index], lower, upper, body)) { return false }
            guard index < node.keyCount else { return true }
            let key = node.key(at: index)
            if let upper, key.withUnsafeBytes({ key in upper.withUnsafeBytes { compare(key, $0) } }) >= 0 { return false }
            if !(try body(key, node.values[index])) { return false }
            index += 1
        }
    }

    /// Splits the full child at `index` of `parent` (which has room) around its median, or,
    /// when `appending` a key past all of its own, just before its last entry: keys that come
    /// in order (sequential loads, compaction's rebuild) then leave full nodes behind, not
    /// half-empty ones.
    private static func splitChild(_ parent: Node, at index: Int, appending: Bool) {
        let child = parent.children[index]
        let middle = appending ? child.keyCount - 2 : child.keyCount / 2
        let rightKeys = child.keys(from: middle + 1)
        let right = Node(
            keyBytes: rightKeys.bytes, keyEnds: rightKeys.ends, values: Array(child.values[(middle + 1)...]),
            children: child.isLeaf ? [] : Array(child.children[(middle + 1)...]))
        parent.insert(child.key(at: middle), child.values[middle], at: index)
        if parent.children.capacity < maximumEntries + 1 { parent.children.reserveCapacity(maximumEntries + 1) }
        parent.children.insert(right, at: index + 1)
        child.keepEntries(before: middle)
    }

    /// Byte-wise order of two keys: negative, zero or positive.
    static func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
        let shared = min(a.count, b.count)
        if shared > 0, let baseA = a.baseAddress, let baseB = b.baseAddress {
            let order = memcmp(baseA, baseB, shared)
            if order != 0 { return Int(order) }
        }
        return a.count - b.count
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension BTree: Sendable where Value: Sendable {}

// Safe because a node is never mutated while another tree can reach it: every mutation goes
// through `update`, which checks `isKnownUniquelyReferenced` on the root and on each node of
// the path it descends, and copies any node that is shared. So once a copy of the tree (a
// snapshot on another thread) references a node, that node is read-only for everyone.
// Reference counts are atomic, so the uniqueness checks are sound across threads, as for the
// standard library's copy-on-write collections.
extension BTree.Node: @unchecked Sendable where Value: Sendable {}
