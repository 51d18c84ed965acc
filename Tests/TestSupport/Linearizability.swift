import Foundation
import Locking
import Synchronization

/// An operation on one key of a key-value store, as a client saw it.
public enum KVOperation: Sendable, Hashable, CustomStringConvertible {
    case get(key: String)
    case put(key: String, value: String)
    /// Compare-and-set: put `new` only if the value is `expected` (nil: the key is absent).
    case compareAndSet(key: String, expected: String?, new: String)

    public var key: String {
        switch self {
        case .get(let key), .put(let key, _), .compareAndSet(let key, _, _): key
        }
    }

    public var description: String {
        switch self {
        case .get(let key): "get(\(key))"
        case .put(let key, let value): "put(\(key), \(value))"
        case .compareAndSet(let key, let expected, let new): "cas(\(key), \(expected ?? "∅") → \(new))"
        }
    }
}

/// What the client learned: a read's value, whether a compare-and-set succeeded, or nothing
/// (the request timed out or failed: it may or may not have taken effect).
public enum KVOutcome: Sendable, Hashable, CustomStringConvertible {
    case value(String?)
    case written
    case swapped(Bool)
    case unknown

    public var description: String {
        switch self {
        case .value(let value): "→ \(value ?? "∅")"
        case .written: "→ ok"
        case .swapped(let succeeded): "→ \(succeeded ? "swapped" : "not swapped")"
        case .unknown: "→ ?"
        }
    }
}

/// One completed (or abandoned) operation: when it was called and when its answer came, in
/// one process-wide clock. An unknown outcome has no end: it may take effect at any later time.
public struct KVEvent: Sendable, Hashable, CustomStringConvertible {
    public var client: Int
    public var operation: KVOperation
    public var outcome: KVOutcome
    public var call: Duration
    public var end: Duration?

    public init(client: Int, operation: KVOperation, outcome: KVOutcome, call: Duration, end: Duration?) {
        self.client = client
        self.operation = operation
        self.outcome = outcome
        self.call = call
        self.end = end
    }

    public var description: String {
        "client \(client): \(operation) \(outcome) [\(call) … \(end.map { "\($0)" } ?? "∞")]"
    }
}

/// Records operations from concurrent clients against one clock.
public final class HistoryRecorder: Sendable {
    private let start = ContinuousClock.now
    private let events = Locked<[KVEvent]>([])

    public init() {}

    /// Time since the recorder was made.
    public func now() -> Duration { ContinuousClock.now - start }

    public func record(_ event: KVEvent) {
        events.withLock { $0.append(event) }
    }

    public var history: [KVEvent] { events.withLock { $0 } }
}

/// Checks histories of single-key registers for linearizability: the Wing–Gong algorithm with
/// Lowe's memoization of (operations linearized, state) pairs, as in Knossos and porcupine.
/// Keys are independent objects, so each key's sub-history is checked alone (linearizability
/// is compositional), which keeps the search small.
public enum LinearizabilityChecker {
    public enum Verdict: Sendable, Equatable {
        case linearizable
        /// The key whose history admits no linearization, and its events.
        case violation(key: String, events: [KVEvent])
        /// The search for that key exceeded its step budget (neither proven nor refuted).
        case undecided(key: String)
    }

    public static func check(_ history: [KVEvent], stepBudget: Int = 50_000_000) -> Verdict {
        // A read that failed tells nothing and changes nothing.
        let relevant = history.filter { event in
            if case .get = event.operation, event.outcome == .unknown { return false }
            return true
        }
        let byKey = Dictionary(grouping: relevant, by: \.operation.key)
        for key in byKey.keys.sorted() {
            switch checkRegister(byKey[key]!, budget: stepBudget) {
            case .some(true): continue
            case .some(false): return .violation(key: key, events: byKey[key]!.sorted { $0.call < $1.call })
            case .none: return .undecided(key: key)
            }
        }
        return .linearizable
    }

    /// The model: a register holding a value or nothing. Returns the next state if `event` may
    /// take effect in `state` with the outcome it had.
    private static func step(_ state: String?, _ event: KVEvent) -> String?? {
        switch (event.operation, event.outcome) {
        case (.get, .value(let seen)):
            return seen == state ? .some(state) : nil
        case (.put(_, let value), .written), (.put(_, let value), .unknown):
            return .some(value)
        case (.compareAndSet(_, let expected, let new), .swapped(let succeeded)):
            guard succeeded == (state == expected) else { return nil }
            return .some(succeeded ? new : state)
        case (.compareAndSet(_, let expected, let new), .unknown):
            return .some(state == expected ? new : state)
        default:
            return nil
        }
    }

    /// A node of the doubly linked list of call and return entries.
    private struct Node {
        var operation: Int
        var isCall: Bool
        /// For a call: the index of its return node.
        var match: Int
        var previous: Int
        var next: Int
    }

    /// Wing–Gong–Lowe over one register; nil when the budget ran out.
    private static func checkRegister(_ events: [KVEvent], budget: Int) -> Bool? {
        // Entries sorted by time; at equal times returns go first (an operation that returned
        // at t precedes one called at t). Unknown outcomes return after everything.
        struct Point { var time: Duration; var isCall: Bool; var operation: Int }
        var points: [Point] = []
        for (index, event) in events.enumerated() {
            points.append(Point(time: event.call, isCall: true, operation: index))
            points.append(Point(time: event.end ?? .seconds(Int64.max / 2), isCall: false, operation: index))
        }
        points.sort { a, b in a.time != b.time ? a.time < b.time : (!a.isCall && b.isCall) }
        // Node 0 is the head sentinel.
        var nodes = [Node(operation: -1, isCall: false, match: -1, previous: -1, next: 1)]
        var returnNode = [Int](repeating: -1, count: events.count)
        for (position, point) in points.enumerated() {
            let index = position + 1
            nodes.append(Node(operation: point.operation, isCall: point.isCall, match: -1, previous: index - 1,
                              next: position + 1 < points.count ? index + 1 : -1))
            if !point.isCall { returnNode[point.operation] = index }
        }
        for index in 1..<nodes.count where nodes[index].isCall {
            nodes[index].match = returnNode[nodes[index].operation]
        }

        func lift(_ call: Int) {
            let ret = nodes[call].match
            nodes[nodes[call].previous].next = nodes[call].next
            if nodes[call].next >= 0 { nodes[nodes[call].next].previous = nodes[call].previous }
            nodes[nodes[ret].previous].next = nodes[ret].next
            if nodes[ret].next >= 0 { nodes[nodes[ret].next].previous = nodes[ret].previous }
        }
        func unlift(_ call: Int) {
            let ret = nodes[call].match
            nodes[nodes[ret].previous].next = ret
            if nodes[ret].next >= 0 { nodes[nodes[ret].next].previous = ret }
            nodes[nodes[call].previous].next = call
            if nodes[call].next >= 0 { nodes[nodes[call].next].previous = call }
        }

        struct Memo: Hashable { var linearized: [UInt64]; var state: String? }
        var linearized = [UInt64](repeating: 0, count: (events.count + 63) / 64)
        var seen: Set<Memo> = []
        var stack: [(call: Int, state: String?)] = []
        var state: String? = nil
        var entry = nodes[0].next
        var steps = 0
        while nodes[0].next >= 0 {
            steps += 1
            if steps > budget { return nil }
            let node = nodes[entry]
            if node.isCall {
                if let next = step(state, events[node.operation]) {
                    var candidate = linearized
                    candidate[node.operation / 64] |= 1 << UInt64(node.operation % 64)
                    if seen.insert(Memo(linearized: candidate, state: next)).inserted {
                        stack.append((entry, state))
                        state = next
                        linearized = candidate
                        lift(entry)
                        entry = nodes[0].next
                        continue
                    }
                }
                entry = node.next
            } else {
                // A return whose call could not be placed before it: undo the last choice.
                guard let (call, previousState) = stack.popLast() else { return false }
                state = previousState
                let operation = nodes[call].operation
                linearized[operation / 64] &= ~(1 << UInt64(operation % 64))
                unlift(call)
                entry = nodes[call].next
            }
        }
        return true
    }
}
