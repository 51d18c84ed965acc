import TestSupport
import Testing

/// The checker itself: it accepts what is linearizable and, above all, rejects what is not.
@Suite("Linearizability checker")
struct LinearizabilityCheckerTests {
    private func event(
        _ client: Int, _ operation: KVOperation, _ outcome: KVOutcome, _ call: Int, _ end: Int?
    ) -> KVEvent {
        KVEvent(client: client, operation: operation, outcome: outcome, call: .milliseconds(call), end: end.map { .milliseconds($0) })
    }

    @Test func sequentialReadsSeeTheLastWrite() {
        let history = [
            event(0, .put(key: "x", value: "1"), .written, 0, 10),
            event(1, .get(key: "x"), .value("1"), 20, 30),
            event(0, .put(key: "x", value: "2"), .written, 40, 50),
            event(1, .get(key: "x"), .value("2"), 60, 70),
        ]
        #expect(LinearizabilityChecker.check(history) == .linearizable)
    }

    @Test func aStaleReadAfterAWriteReturnedIsAViolation() {
        let history = [
            event(0, .put(key: "x", value: "1"), .written, 0, 10),
            event(0, .put(key: "x", value: "2"), .written, 20, 30),
            // Called after "2" was acknowledged, yet it reads "1": what a partitioned member's
            // serializable read can return.
            event(1, .get(key: "x"), .value("1"), 40, 50),
        ]
        guard case .violation(let key, let events) = LinearizabilityChecker.check(history) else {
            Issue.record("a stale read passed")
            return
        }
        #expect(key == "x")
        #expect(events.count == 3)
    }

    @Test func concurrentOperationsMayTakeEffectInEitherOrder() {
        let history = [
            event(0, .put(key: "x", value: "1"), .written, 0, 100),
            event(1, .get(key: "x"), .value("1"), 10, 20),
            event(2, .get(key: "x"), .value(nil), 5, 15),
        ]
        #expect(LinearizabilityChecker.check(history) == .linearizable)
    }

    @Test func readsMustNotGoBackInTime() {
        // Two sequential reads during one long write: once the new value is seen, the old may not be.
        let history = [
            event(0, .put(key: "x", value: "1"), .written, 0, 100),
            event(1, .get(key: "x"), .value("1"), 10, 20),
            event(1, .get(key: "x"), .value(nil), 30, 40),
        ]
        #expect(LinearizabilityChecker.check(history) != .linearizable)
    }

    @Test func aLostAcknowledgedWriteIsAViolation() {
        let history = [
            event(0, .put(key: "x", value: "1"), .written, 0, 10),
            event(1, .get(key: "x"), .value(nil), 20, 30),
        ]
        #expect(LinearizabilityChecker.check(history) != .linearizable)
    }

    @Test func anUnknownWriteMayOrMayNotHaveHappened() {
        let tookEffect = [
            event(0, .put(key: "x", value: "1"), .unknown, 0, nil),
            event(1, .get(key: "x"), .value("1"), 50, 60),
        ]
        let didNot = [
            event(0, .put(key: "x", value: "1"), .unknown, 0, nil),
            event(1, .get(key: "x"), .value(nil), 50, 60),
        ]
        #expect(LinearizabilityChecker.check(tookEffect) == .linearizable)
        #expect(LinearizabilityChecker.check(didNot) == .linearizable)
        // But it cannot take effect before it was called.
        let tooEarly = [
            event(1, .get(key: "x"), .value("1"), 0, 10),
            event(0, .put(key: "x", value: "1"), .unknown, 20, nil),
        ]
        #expect(LinearizabilityChecker.check(tooEarly) != .linearizable)
    }

    @Test func compareAndSetOutcomesMustMatchTheState() {
        let valid = [
            event(0, .put(key: "x", value: "a"), .written, 0, 10),
            event(1, .compareAndSet(key: "x", expected: "a", new: "b"), .swapped(true), 20, 30),
            event(2, .compareAndSet(key: "x", expected: "a", new: "c"), .swapped(false), 40, 50),
            event(0, .get(key: "x"), .value("b"), 60, 70),
        ]
        #expect(LinearizabilityChecker.check(valid) == .linearizable)
        // Two clients both winning the same compare-and-set cannot happen.
        let doubleWin = [
            event(0, .put(key: "x", value: "a"), .written, 0, 10),
            event(1, .compareAndSet(key: "x", expected: "a", new: "b"), .swapped(true), 20, 40),
            event(2, .compareAndSet(key: "x", expected: "a", new: "c"), .swapped(true), 25, 45),
        ]
        #expect(LinearizabilityChecker.check(doubleWin) != .linearizable)
    }

    @Test func keysAreCheckedIndependently() {
        let history = [
            event(0, .put(key: "x", value: "1"), .written, 0, 10),
            event(0, .put(key: "y", value: "1"), .written, 0, 10),
            event(1, .get(key: "x"), .value("1"), 20, 30),
            event(1, .get(key: "y"), .value(nil), 20, 30),
        ]
        guard case .violation(let key, _) = LinearizabilityChecker.check(history) else {
            Issue.record("the lost write on y passed")
            return
        }
        #expect(key == "y")
    }

    @Test func aLargeConcurrentValidHistoryIsDecided() {
        // 8 clients × 200 operations on one key, each write observed by the next read: memoization
        // keeps the search linear-ish instead of factorial.
        var history: [KVEvent] = []
        var time = 0
        for round in 0..<200 {
            for client in 0..<8 {
                history.append(event(client, .put(key: "x", value: "\(round)-\(client)"), .written, time, time + 50))
            }
            time += 60
            history.append(event(8, .get(key: "x"), .value("\(round)-7"), time, time + 1))
            time += 2
        }
        // The last writer of each round is not forced; any of the 8 may come last, and the read pins it.
        #expect(LinearizabilityChecker.check(history) == .linearizable)
    }
}
