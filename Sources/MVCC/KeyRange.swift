/// The keys a request selects, with etcd's conventions for its `key` and `range_end` fields.
package struct KeyRange: Sendable, Hashable, CustomStringConvertible {
    package let key: [UInt8]
    /// nil selects `key` alone; `[0]` every key from `key` on; otherwise keys below `end`.
    package let end: [UInt8]?

    package init(key: [UInt8], end: [UInt8]?) {
        self.key = key
        self.end = end
    }

    /// `key` alone.
    package static func single(_ key: [UInt8]) -> KeyRange { KeyRange(key: key, end: nil) }

    /// Whether the range selects `candidate`.
    package func contains(_ candidate: [UInt8]) -> Bool {
        guard let end else { return candidate == key }
        if Self.precedes(candidate, key) { return false }
        return end == [0] || Self.precedes(candidate, end)
    }

    /// Whether the range selects nothing at all (its end is at or before its key).
    package var isEmpty: Bool {
        guard let end, end != [0] else { return false }
        return !Self.precedes(key, end)
    }

    package var description: String {
        let key = String(decoding: self.key, as: UTF8.self)
        guard let end else { return key }
        return end == [0] ? "[\(key), ∞)" : "[\(key), \(String(decoding: end, as: UTF8.self)))"
    }

    private static func precedes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.lexicographicallyPrecedes(b)
    }
}
