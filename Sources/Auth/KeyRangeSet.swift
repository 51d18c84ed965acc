/// A union of key ranges, merged into disjoint, ordered intervals: what one user may read, or
/// write. Keys compare as bytes (`memcmp`), as etcd's keys do.
///
/// etcd's forms of a range map onto half-open intervals `[start, end)`: a single key (empty
/// range end) is `[key, key + "\0")`; a range end of `"\0"` means every key from `key` on (no
/// end); any other range end is the exclusive end.
package struct KeyRangeSet: Sendable, Equatable {
    /// A half-open interval; `end == nil` is unbounded.
    package struct Interval: Sendable, Equatable {
        package var start: [UInt8]
        package var end: [UInt8]?
    }

    /// Disjoint, ordered by start, no two touching.
    package private(set) var intervals: [Interval] = []

    package init() {}

    /// The union of the given ranges in etcd's `(key, rangeEnd)` form.
    package init(_ ranges: some Sequence<(key: [UInt8], rangeEnd: [UInt8])>) {
        let sorted = ranges.compactMap(Self.interval).sorted { $0.start.lexicographicallyPrecedes($1.start) }
        for next in sorted {
            guard var last = intervals.last, Self.reaches(last.end, next.start) else {
                intervals.append(next)
                continue
            }
            last.end = Self.later(last.end, next.end)
            intervals[intervals.count - 1] = last
        }
    }

    /// Whether every key of the request's range is in the set. `rangeEnd` follows etcd's
    /// request forms: empty for one key, `"\0"` for every key from `key` on.
    package func contains(key: [UInt8], rangeEnd: [UInt8]) -> Bool {
        guard let wanted = Self.interval(key: key, rangeEnd: rangeEnd) else { return contains(key: key, rangeEnd: []) }
        // The last interval starting at or before the wanted start is the only candidate.
        var low = 0
        var high = intervals.count
        while low < high {
            let middle = (low + high) / 2
            if wanted.start.lexicographicallyPrecedes(intervals[middle].start) { high = middle } else { low = middle + 1 }
        }
        guard low > 0 else { return false }
        let candidate = intervals[low - 1]
        guard let candidateEnd = candidate.end else { return true }
        guard let wantedEnd = wanted.end else { return false }
        return !candidateEnd.lexicographicallyPrecedes(wantedEnd)
    }

    /// The interval a `(key, rangeEnd)` pair names; nil when it names no key (an end at or
    /// before its start).
    private static func interval(key: [UInt8], rangeEnd: [UInt8]) -> Interval? {
        if rangeEnd.isEmpty { return Interval(start: key, end: key + [0]) }
        if rangeEnd == [0] { return Interval(start: key, end: nil) }
        guard key.lexicographicallyPrecedes(rangeEnd) else { return nil }
        return Interval(start: key, end: rangeEnd)
    }

    private static func interval(_ range: (key: [UInt8], rangeEnd: [UInt8])) -> Interval? {
        interval(key: range.key, rangeEnd: range.rangeEnd)
    }

    /// Whether an interval ending at `end` touches or overlaps one starting at `start`.
    private static func reaches(_ end: [UInt8]?, _ start: [UInt8]) -> Bool {
        guard let end else { return true }
        return !end.lexicographicallyPrecedes(start)
    }

    private static func later(_ a: [UInt8]?, _ b: [UInt8]?) -> [UInt8]? {
        guard let a, let b else { return nil }
        return a.lexicographicallyPrecedes(b) ? b : a
    }
}
