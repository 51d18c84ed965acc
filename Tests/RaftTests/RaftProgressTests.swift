import Testing

@testable import Raft

@Suite("Progress and inflights")
struct RaftProgressTests {
    static func progress(next: UInt64, match: UInt64 = 0, capacity: Int = 4, maxBytes: UInt64 = 0) -> Progress {
        Progress(next: next, match: match, isLearner: false, inflightCapacity: capacity, inflightMaxBytes: maxBytes)
    }

    @Test func maybeUpdateAdvancesMatchAndNext() {
        var pr = Self.progress(next: 5, match: 2)
        let r7 = pr.maybeUpdate(3)
        #expect(r7)
        #expect(pr.match == 3)
        #expect(pr.next == 5)
        let r8 = pr.maybeUpdate(7)
        #expect(r8)
        #expect(pr.next == 8)
        let r9 = pr.maybeUpdate(6)
        #expect(!r9)
        #expect(pr.match == 7)
    }

    @Test func replicateRejectionIsStaleUnlessAboveMatch() {
        var pr = Self.progress(next: 10, match: 5)
        pr.becomeReplicate()
        pr.sentEntries(count: 3, last: 8, bytes: 0)
        let r10 = pr.maybeDecrease(rejected: 5, matchHint: 5)
        #expect(!r10)
        #expect(pr.next == 9)
        let r11 = pr.maybeDecrease(rejected: 7, matchHint: 6)
        #expect(r11)
        #expect(pr.next == 6)
    }

    @Test func probeRejectionOnlyCountsForTheLatestProbe() {
        var pr = Self.progress(next: 10, match: 3)
        let r12 = pr.maybeDecrease(rejected: 5, matchHint: 4)
        #expect(!r12)
        #expect(pr.next == 10)
        let r13 = pr.maybeDecrease(rejected: 9, matchHint: 6)
        #expect(r13)
        #expect(pr.next == 7)
        let r14 = pr.maybeDecrease(rejected: 6, matchHint: 1)
        #expect(r14)
        #expect(pr.next == 4)
    }

    @Test func becomeProbeAfterSnapshotResumesPastIt() {
        var pr = Self.progress(next: 3, match: 2)
        pr.becomeSnapshot(10)
        #expect(pr.isPaused)
        pr.becomeProbe()
        #expect(pr.state == .probe)
        #expect(pr.next == 11)
        #expect(pr.pendingSnapshot == 0)
    }

    @Test func probePausesAfterSendingEntriesOnly() {
        var pr = Self.progress(next: 3, match: 2)
        pr.sentEntries(count: 0, last: 2, bytes: 0)
        #expect(!pr.isPaused)
        pr.sentEntries(count: 2, last: 4, bytes: 0)
        #expect(pr.isPaused)
        #expect(pr.next == 3)
    }

    @Test func replicateIsPausedWhenInflightsFull() {
        var pr = Self.progress(next: 3, match: 2, capacity: 2)
        pr.becomeReplicate()
        pr.sentEntries(count: 1, last: 3, bytes: 0)
        #expect(!pr.isPaused)
        pr.sentEntries(count: 1, last: 4, bytes: 0)
        #expect(pr.isPaused)
        #expect(pr.next == 5)
    }

    @Test func inflightsFreeThroughIndexAndRespectByteLimit() {
        var inflights = Inflights(capacity: 10, maxBytes: 100)
        inflights.add(index: 1, bytes: 40)
        inflights.add(index: 2, bytes: 40)
        #expect(!inflights.isFull)
        inflights.add(index: 3, bytes: 20)
        #expect(inflights.isFull)
        inflights.free(through: 2)
        #expect(inflights.indexes == [3])
        #expect(inflights.bytes == 20)
        #expect(!inflights.isFull)
    }

    @Test func inflightsWrapAroundTheRing() {
        var inflights = Inflights(capacity: 3, maxBytes: 0)
        for i: UInt64 in 1...3 { inflights.add(index: i, bytes: 1) }
        inflights.free(through: 2)
        inflights.add(index: 4, bytes: 1)
        inflights.add(index: 5, bytes: 1)
        #expect(inflights.indexes == [3, 4, 5])
        #expect(inflights.isFull)
        inflights.free(through: 4)
        #expect(inflights.indexes == [5])
        #expect(inflights.count == 1)
    }

    @Test func trackerIgnoresLearnersInQuorumActiveAndVotes() {
        let core = RaftTestNetwork(voters: [1, 2, 3], learners: [4]).core(1)
        var tracker = core.tracker
        tracker.progress[4]!.recentActive = true
        tracker.progress[1]!.recentActive = true
        #expect(!tracker.quorumActive())
        tracker.progress[2]!.recentActive = true
        #expect(tracker.quorumActive())
        tracker.recordVote(4, granted: true)
        tracker.recordVote(1, granted: true)
        tracker.recordVote(1, granted: false)
        let tally = tracker.tallyVotes()
        #expect(tally.granted == 1)
        #expect(tally.rejected == 0)
        #expect(tally.result == .pending)
    }
}
