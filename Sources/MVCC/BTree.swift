/// An ordered map from byte-string keys to values: a B-tree with copy-on-write nodes.
///
/// Copying the tree is O(1) and the copy is an immutable snapshot: a writer that mutates a
/// shared tree copies only the nodes on the path it changes. This is how readers on the event
/// loops read the key index while the apply loop keeps writing, without holding a lock.
package struct BTree<Value> {
    /// Entries per node, at most. A write after a snapshot was taken copies each node on its
    /// path, retaining every key and value in it (and the snapshot's release frees the old
    /// ones): narrow nodes keep that cheap. 16 measured best for puts at 256 clients (64 cost
    /// 6 % more server CPU per put; 8 was no better).
    static var maximumEntries: Int { 16 }

    /// Its arrays are exempt from run-time exclusivity checks, which cost 5 % of a restart's
    /// CPU (rebuilding the index) and part of the 2 % a put spends on them: a node is only
    /// written by the tree's one writer after `isKnownUniquelyReferenced` showed the writer
    /// owns it, and no access to one of its arrays stays open across code that could reach
    /// the same node.
    final class Node {
        @exclusivity(unchecked) var keys: [[UInt8]]
        @exclusivity(unchecked) var values: [Value]
        /// Empty for a leaf; otherwise `keys.count + 1` children.
        @exclusivity(unchecked) var children: [Node]

        init(keys: [[UInt8]] = [], values: [Value] = [], children: [Node] = []) {
            self.keys = keys
            self.values = values
            self.children = children
        }

        var isLeaf: Bool { children.isEmpty }

        func copy() -> Node { Node(keys: keys, values: values, children: children) }
    }

    private var root: Node
    package private(set) var count: Int

    package init() {
        root = Node()
        count = 0
    }

    /// The value stored for `key`.
    package subscript(key: [UInt8]) -> Value? {
        var node = root
        while true {
            let (index, found) = Self.search(node.keys, key)
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
        if root.keys.count == Self.maximumEntries {
            let newRoot = Node(children: [root])
            Self.splitChild(newRoot, at: 0, appending: Self.compare(key, root.keys[root.keys.count - 1]) > 0)
            root = newRoot
        }
        var node = root
        while true {
            let (index, found) = Self.search(node.keys, key)
            if found { return try body(&node.values[index]) }
            if node.isLeaf {
                var value = makeDefault()
                let result = try body(&value)
                node.keys.insert(key, at: index)
                node.values.insert(value, at: index)
                count += 1
                return result
            }
            var childIndex = index
            if !isKnownUniquelyReferenced(&node.children[childIndex]) {
                node.children[childIndex] = node.children[childIndex].copy()
            }
            let child = node.children[childIndex]
            if child.keys.count == Self.maximumEntries {
                Self.splitChild(node, at: childIndex, appending: Self.compare(key, child.keys[child.keys.count - 1]) > 0)
                let order = Self.compare(key, node.keys[childIndex])
                if order == 0 { return try body(&node.values[childIndex]) }
                if order > 0 { childIndex += 1 }
            }
            node = node.children[childIndex]
        }
    }

    /// Visits entries with `lower <= key < upper` (no upper bound when `upper` is nil) in key
    /// order until `body` returns false.
    package func forEach(from lower: [UInt8], below upper: [UInt8]?, _ body: ([UInt8], Value) throws -> Bool) rethrows {
        _ = try Self.visit(root, lower, upper, body)
    }

    /// A tree of the entries `transform` keeps (returning their new value) or drops (nil); built in
    /// one ordered pass (used by compaction, which rewrites many keys at once).
    package func compactMap(_ transform: ([UInt8], Value) throws -> Value?) rethrows -> BTree<Value> {
        var result = BTree()
        try forEach(from: [], below: nil) { key, value in
            if let kept = try transform(key, value) { result.append(key, kept) }
            return true
        }
        return result
    }

    /// Adds an entry whose key is greater than every key in the tree.
    private mutating func append(_ key: [UInt8], _ value: Value) {
        update(key, default: { value }) { _ in }
    }

    private static func visit(
        _ node: Node, _ lower: [UInt8], _ upper: [UInt8]?, _ body: ([UInt8], Value) throws -> Bool
    ) rethrows -> Bool {
        var index = search(node.keys, lower).index
        while true {
            if !node.isLeaf, !(try visit(node.children[index], lower, upper, body)) { return false }
            guard index < node.keys.count else { return true }
            let key = node.keys[index]
            if let upper, compare(key, upper) >= 0 { return false }
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
        let middle = appending ? child.keys.count - 2 : child.keys.count / 2
        let right = Node(
            keys: Array(child.keys[(middle + 1)...]), values: Array(child.values[(middle + 1)...]),
            children: child.isLeaf ? [] : Array(child.children[(middle + 1)...]))
        parent.keys.insert(child.keys[middle], at: index)
        parent.values.insert(child.values[middle], at: index)
        parent.children.insert(right, at: index + 1)
        child.keys.removeSubrange(middle...)
        child.values.removeSubrange(middle...)
        if !child.isLeaf { child.children.removeSubrange((middle + 1)...) }
    }

    /// The first index whose key is >= `key`, and whether it is equal.
    private static func search(_ keys: [[UInt8]], _ key: [UInt8]) -> (index: Int, found: Bool) {
        var low = 0
        var high = keys.count
        while low < high {
            let middle = (low + high) / 2
            let order = compare(keys[middle], key)
            if order == 0 { return (middle, true) }
            if order < 0 { low = middle + 1 } else { high = middle }
        }
        return (low, false)
    }

    /// Byte-wise order of two keys: negative, zero or positive.
    static func compare(_ a: [UInt8], _ b: [UInt8]) -> Int {
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                let shared = min(pa.count, pb.count)
                if shared > 0, let baseA = pa.baseAddress, let baseB = pb.baseAddress {
                    let order = memcmp(baseA, baseB, shared)
                    if order != 0 { return Int(order) }
                }
                return pa.count - pb.count
            }
        }
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
