import Testing

@testable import Raft

@Suite("RaftLog")
struct RaftLogTests {
    /// A log whose storage holds entries with `stored` terms and whose unstable part holds `unstable` terms after them.
    static func log(stored: [UInt64], unstable: [UInt64] = []) -> RaftLog {
        let storage = MemoryStorage()
        storage.append(stored.enumerated().map { Entry(term: $0.element, index: UInt64($0.offset + 1)) })
        var log = RaftLog(storage: storage, maxApplyingSize: .max)
        let base = UInt64(stored.count)
        log.append(unstable.enumerated().map { Entry(term: $0.element, index: base + UInt64($0.offset + 1)) })
        return log
    }

    @Test func lastIndexAndTermSpanStorageAndUnstable() throws {
        let log = Self.log(stored: [1, 1], unstable: [2, 3])
        #expect(log.firstIndex == 1)
        #expect(log.lastIndex == 4)
        #expect(log.lastTerm == 3)
        #expect(try log.term(at: 2) == 1)
        #expect(try log.term(at: 3) == 2)
        #expect(log.zeroTermOnError(9) == 0)
    }

    @Test func findConflictReportsFirstMismatchOrFirstNewEntry() {
        let log = Self.log(stored: [1, 2, 3])
        #expect(log.findConflict([]) == 0)
        #expect(log.findConflict([Entry(term: 1, index: 1), Entry(term: 2, index: 2)]) == 0)
        #expect(log.findConflict([Entry(term: 2, index: 2), Entry(term: 3, index: 3), Entry(term: 4, index: 4)]) == 4)
        #expect(log.findConflict([Entry(term: 1, index: 1), Entry(term: 4, index: 2)]) == 2)
    }

    @Test func findConflictByTermSkipsNewerTerms() {
        let log = Self.log(stored: [1, 1, 1, 4, 4, 5, 5])
        #expect(log.findConflictByTerm(index: 7, term: 5) == (7, 5))
        #expect(log.findConflictByTerm(index: 7, term: 4) == (5, 4))
        #expect(log.findConflictByTerm(index: 7, term: 3) == (3, 1))
        #expect(log.findConflictByTerm(index: 7, term: 0) == (0, 0))
    }

    @Test func isUpToDateComparesLastTermThenIndex() {
        let log = Self.log(stored: [1, 2, 2])
        #expect(log.isUpToDate(index: 3, term: 2))
        #expect(log.isUpToDate(index: 4, term: 2))
        #expect(!log.isUpToDate(index: 2, term: 2))
        #expect(log.isUpToDate(index: 1, term: 3))
        #expect(!log.isUpToDate(index: 9, term: 1))
    }

    @Test func maybeAppendRejectsMismatchAndCapsCommit() {
        var log = Self.log(stored: [1, 1, 1])
        let r1 = log.maybeAppend(index: 3, logTerm: 2, committed: 3, entries: [])
        #expect(r1 == nil)
        let r2 = log.maybeAppend(index: 4, logTerm: 1, committed: 3, entries: [])
        #expect(r2 == nil)
        #expect(log.committed == 0)
        let r3 = log.maybeAppend(index: 3, logTerm: 1, committed: 10, entries: [Entry(term: 2, index: 4)])
        #expect(r3 == 4)
        #expect(log.committed == 4)
        #expect(log.lastIndex == 4)
    }

    @Test func maybeCommitOnlyCommitsEntriesOfTheGivenTerm() {
        var log = Self.log(stored: [1, 2])
        let r4 = log.maybeCommit(index: 2, term: 1)
        #expect(!r4)
        #expect(log.committed == 0)
        let r5 = log.maybeCommit(index: 2, term: 2)
        #expect(r5)
        #expect(log.committed == 2)
        let r6 = log.maybeCommit(index: 1, term: 1)
        #expect(!r6)
        #expect(log.committed == 2)
    }

    @Test func stableToIgnoresEntriesReplacedSinceHandedOut() {
        var log = Self.log(stored: [1], unstable: [1, 1])
        log.append([Entry(term: 2, index: 3)])
        log.stable(to: 3, term: 1)
        #expect(log.unstable.offset == 2)
        #expect(log.unstable.entries.map(\.index) == [2, 3])
        log.stable(to: 2, term: 1)
        #expect(log.unstable.offset == 3)
        #expect(log.unstable.entries == [Entry(term: 2, index: 3)])
    }

    @Test func sliceSpansStorageAndUnstableWithinSizeLimit() throws {
        let storage = MemoryStorage()
        storage.append((1...3).map { Entry(term: 1, index: UInt64($0), data: [1, 2, 3, 4]) })
        var log = RaftLog(storage: storage, maxApplyingSize: .max)
        log.append((4...5).map { Entry(term: 1, index: UInt64($0), data: [1, 2, 3, 4]) })
        #expect(try log.slice(2, 6, maxSize: .max).map(\.index) == [2, 3, 4, 5])
        #expect(try log.slice(2, 6, maxSize: 12).map(\.index) == [2, 3, 4])
        #expect(try log.slice(4, 6, maxSize: 1).map(\.index) == [4])
    }

    @Test func compactedIndexesThrow() throws {
        let storage = MemoryStorage()
        storage.append((1...5).map { Entry(term: 1, index: UInt64($0)) })
        try storage.compact(through: 3)
        let log = RaftLog(storage: storage, maxApplyingSize: .max)
        #expect(log.firstIndex == 4)
        #expect(try log.term(at: 3) == 1)
        var caught: StorageError?
        do { _ = try log.term(at: 2) } catch { caught = error }
        #expect(caught == .compacted)
        caught = nil
        do { _ = try log.entries(from: 2, maxSize: .max) } catch { caught = error }
        #expect(caught == .compacted)
    }

    @Test func committedEntriesAreHandedOutInSizeLimitedBatches() throws {
        var config = RaftTestNetwork.config(1, MemoryStorage(voters: [1]))
        config.maxCommittedSizePerReady = 10
        var net = RaftTestNetwork(voters: [])
        net.nodes[1] = try RaftNode(config: config)
        net.storages[1] = config.storage as? MemoryStorage
        net.elect(1)
        try net.nodes[1]!.propose(batch: [raftBytes("aaaaaaaa"), raftBytes("bbbbbbbb"), raftBytes("cccccccc")])
        var batches: [[UInt64]] = []
        for _ in 0..<10 {
            net.process(1)
            if let rd = net.lastReady[1], !rd.committedEntries.isEmpty { batches.append(rd.committedEntries.map(\.index)) }
            net.lastReady[1] = nil
        }
        #expect(batches == [[2], [3], [4]])
    }
}
