import Raft
import Testing

@testable import EtcdServer

@Suite("ReadIndexQueue: linearizable reads waiting for their read index")
struct ReadIndexQueueTests {
    let start = ContinuousClock.now

    @Test func readsOfOneTurnShareOneContext() {
        var queue = ReadIndexQueue(firstContext: 7)
        let log = CompletionLog()
        #expect(queue.enqueue([], atTick: 0) == nil)
        let context = queue.enqueue([log.read("a", deadline: start + .seconds(5)), log.read("b", deadline: start + .seconds(5))], atTick: 0)
        #expect(context == [0, 0, 0, 0, 0, 0, 0, 7])
        #expect(queue.enqueue([log.read("c", deadline: start + .seconds(5))], atTick: 0) == [0, 0, 0, 0, 0, 0, 0, 8])
    }

    @Test func anAnswerAtOrBelowTheAppliedIndexServesAtOnce() {
        var queue = ReadIndexQueue(firstContext: 1)
        let log = CompletionLog()
        let context = queue.enqueue([log.read("a", deadline: start + .seconds(5)), log.read("b", deadline: start + .seconds(5))], atTick: 0)!
        let ready = queue.answered([ReadState(index: 10, context: context)], appliedIndex: 10)
        for read in ready { read.completion(.success(())) }
        #expect(log.all == ["a: ok", "b: ok"])
        // The same answer again (a duplicate message) matches nothing.
        #expect(queue.answered([ReadState(index: 10, context: context)], appliedIndex: 10).isEmpty)
    }

    @Test func anAnswerAheadOfTheAppliedIndexWaitsForTheApply() {
        var queue = ReadIndexQueue(firstContext: 1)
        let log = CompletionLog()
        let first = queue.enqueue([log.read("a", deadline: start + .seconds(5))], atTick: 0)!
        let second = queue.enqueue([log.read("b", deadline: start + .seconds(5))], atTick: 0)!
        #expect(queue.answered([ReadState(index: 12, context: first), ReadState(index: 15, context: second)], appliedIndex: 10).isEmpty)
        #expect(queue.applied(through: 11).isEmpty)
        for read in queue.applied(through: 12) { read.completion(.success(())) }
        #expect(log.all == ["a: ok"])
        for read in queue.applied(through: 20) { read.completion(.success(())) }
        #expect(log.all == ["a: ok", "b: ok"])
    }

    @Test func answersForOtherContextsAreIgnored() {
        var queue = ReadIndexQueue(firstContext: 1)
        let log = CompletionLog()
        _ = queue.enqueue([log.read("a", deadline: start + .seconds(5))], atTick: 0)
        let foreign = ReadState(index: 1, context: [0, 0, 0, 0, 0, 0, 0, 99])
        let short = ReadState(index: 1, context: [1])
        #expect(queue.answered([foreign, short], appliedIndex: 5).isEmpty)
    }

    @Test func onlyBatchesOldEnoughAreAskedAgain() {
        var queue = ReadIndexQueue(firstContext: 1)
        let log = CompletionLog()
        let old = queue.enqueue([log.read("a", deadline: start + .seconds(5))], atTick: 0)!
        let recent = queue.enqueue([log.read("b", deadline: start + .seconds(5))], atTick: 8)!
        #expect(queue.contextsToRetry(atTick: 10, olderThan: 10) == [old])
        // Asked again at tick 10: not old enough at tick 15.
        #expect(queue.contextsToRetry(atTick: 15, olderThan: 10).isEmpty)
        #expect(Set(queue.contextsToRetry(atTick: 15)) == [old, recent])
    }

    @Test func expiryTellsUnansweredFromUnappliedReads() {
        var queue = ReadIndexQueue(firstContext: 1)
        let log = CompletionLog()
        _ = queue.enqueue([log.read("unanswered", deadline: start + .seconds(1)), log.read("live", deadline: start + .seconds(9))], atTick: 0)
        let answered = queue.enqueue([log.read("unapplied", deadline: start + .seconds(1))], atTick: 0)!
        _ = queue.answered([ReadState(index: 50, context: answered)], appliedIndex: 10)
        let (unanswered, unapplied) = queue.expire(now: start + .seconds(1))
        for read in unanswered { read.completion(.failure(.noLeader)) }
        for read in unapplied { read.completion(.failure(.timeout)) }
        #expect(log.all == ["unanswered: etcdserver: no leader", "unapplied: etcdserver: request timed out"])
        #expect(queue.applied(through: 50).isEmpty)
        for read in queue.removeAll() { read.completion(.failure(.stopped)) }
        #expect(log.all.last == "live: etcdserver: server stopped")
    }
}
