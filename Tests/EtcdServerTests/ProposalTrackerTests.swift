import Locking
import Raft
import Synchronization
import Testing

@testable import EtcdServer

/// Records what completions were called with, in order.
final class CompletionLog: Sendable {
    private let entries = Locked<[String]>([])
    var all: [String] { entries.withLock { $0 } }

    func write(_ name: String) -> ProposalTracker.WriteCompletion {
        { result in self.entries.withLock { $0.append("\(name): \(Self.describe(result))") } }
    }

    func membership(_ name: String) -> ProposalTracker.MembershipCompletion {
        { result in self.entries.withLock { $0.append("\(name): \(Self.describe(result.map { _ in () }))") } }
    }

    func read(_ name: String, deadline: ContinuousClock.Instant) -> EtcdServer.ReadWaiter {
        EtcdServer.ReadWaiter(completion: { result in self.entries.withLock { $0.append("\(name): \(Self.describe(result))") } }, deadline: deadline)
    }

    private static func describe<T>(_ result: Result<T, EtcdError>) -> String {
        switch result {
        case .success: "ok"
        case .failure(let error): "\(error)"
        }
    }
}

@Suite("ProposalTracker: request IDs, waiters, retries")
struct ProposalTrackerTests {
    let start = ContinuousClock.now

    @Test func everyRequestIDComesFromOneCounter() {
        var tracker = ProposalTracker(firstRequestID: 100)
        let log = CompletionLog()
        let write = tracker.waitForWrite(log.write("w"), deadline: start + .seconds(1))
        let internalEntry = tracker.nextRequestID()
        let change = tracker.waitForMembershipChange(log.membership("m"), deadline: start + .seconds(1))
        #expect([write, internalEntry, change] == [100, 101, 102])
    }

    @Test func theCounterWrapsInsteadOfTrapping() {
        var tracker = ProposalTracker(firstRequestID: .max)
        #expect(tracker.nextRequestID() == .max)
        #expect(tracker.nextRequestID() == 0)
    }

    @Test func anAppliedWriteHandsBackItsWaiterOnce() {
        var tracker = ProposalTracker(firstRequestID: 1)
        let log = CompletionLog()
        let id = tracker.waitForWrite(log.write("w"), deadline: start + .seconds(1))
        tracker.appliedWrite(id)?.completion(.failure(.keyNotFound))
        #expect(tracker.appliedWrite(id) == nil)
        #expect(tracker.appliedWrite(id + 1) == nil)
        #expect(log.all == ["w: etcdserver: key not found"])
    }

    @Test func refusedForWantOfALeaderWaitsAndIsOfferedAgain() {
        var tracker = ProposalTracker(firstRequestID: 1)
        let log = CompletionLog()
        let a = tracker.waitForWrite(log.write("a"), deadline: start + .seconds(1))
        let b = tracker.waitForWrite(log.write("b"), deadline: start + .seconds(1))
        #expect(tracker.refused([(a, [1]), (b, [2])], because: .proposalDropped(.noLeader)).isEmpty)
        #expect(tracker.refused([], because: .proposalDropped(.leadershipTransferInProgress)).isEmpty)
        let again = tracker.takeUnproposed()
        #expect(again.map(\.id) == [a, b])
        #expect(again.map(\.data) == [[1], [2]])
        #expect(tracker.takeUnproposed().isEmpty)
    }

    @Test(arguments: [
        (RaftError.proposalDropped(.uncommittedSizeLimit), EtcdError.tooManyRequests),
        (RaftError.proposalDropped(.notMember), EtcdError.stopped),
    ])
    func otherRefusalsFailTheirWaiters(_ raftError: RaftError, _ expected: EtcdError) {
        var tracker = ProposalTracker(firstRequestID: 1)
        let log = CompletionLog()
        let a = tracker.waitForWrite(log.write("a"), deadline: start + .seconds(1))
        let failed = tracker.refused([(a, [1])], because: raftError)
        #expect(failed.map(\.1) == [expected])
        #expect(tracker.takeUnproposed().isEmpty)
        #expect(tracker.appliedWrite(a) == nil)
    }

    @Test func expiryRemovesWaitersAtTheirDeadlineAndTheirUnproposedEntries() {
        var tracker = ProposalTracker(firstRequestID: 1)
        let log = CompletionLog()
        let early = tracker.waitForWrite(log.write("early"), deadline: start + .seconds(1))
        let late = tracker.waitForWrite(log.write("late"), deadline: start + .seconds(5))
        _ = tracker.waitForMembershipChange(log.membership("change"), deadline: start + .seconds(1))
        _ = tracker.refused([(early, [1]), (late, [2])], because: .proposalDropped(.noLeader))
        let expired = tracker.expire(now: start + .seconds(1))
        #expect(expired.writes.count == 1)
        #expect(expired.membershipChanges.count == 1)
        #expect(!tracker.hasMembershipChangeInFlight)
        #expect(tracker.takeUnproposed().map(\.id) == [late])
        #expect(tracker.appliedWrite(early) == nil)
        #expect(tracker.appliedWrite(late) != nil)
    }

    @Test func forwardedProposalsAreKeptUntilTheyExpire() {
        var tracker = ProposalTracker(firstRequestID: 1)
        let message = Message(type: .propose, to: 1, from: 2)
        tracker.deferForwarded(message, expires: start + .seconds(1))
        tracker.deferForwarded(message, expires: start + .seconds(3))
        #expect(tracker.hasDeferredForwards)
        let live = tracker.takeDeferredForwards(now: start + .seconds(2))
        #expect(live.map(\.expires) == [start + .seconds(3)])
        #expect(!tracker.hasDeferredForwards)
    }

    @Test func stoppingHandsBackEveryWaiter() {
        var tracker = ProposalTracker(firstRequestID: 1)
        let log = CompletionLog()
        _ = tracker.waitForWrite(log.write("a"), deadline: start + .seconds(1))
        _ = tracker.waitForWrite(log.write("b"), deadline: start + .seconds(1))
        _ = tracker.waitForMembershipChange(log.membership("c"), deadline: start + .seconds(1))
        let all = tracker.removeAll()
        #expect(all.writes.count == 2)
        #expect(all.membershipChanges.count == 1)
        #expect(tracker.removeAll().writes.isEmpty)
    }
}
