import Testing

@testable import Raft

@Suite("MemoryStorage")
struct MemoryStorageTests {
    static func storage(_ count: Int, term: UInt64 = 1) -> MemoryStorage {
        let s = MemoryStorage()
        s.append((1...count).map { Entry(term: term, index: UInt64($0), data: [UInt8](repeating: 0, count: 4)) })
        return s
    }

    static func error(_ body: () throws(StorageError) -> Void) -> StorageError? {
        do {
            try body()
            return nil
        } catch {
            return error
        }
    }

    @Test func emptyStorageHasDummyEntryAtZero() throws {
        let s = MemoryStorage()
        #expect(try s.firstIndex() == 1)
        #expect(try s.lastIndex() == 0)
        #expect(try s.term(at: 0) == 0)
        #expect(try s.entries(from: 1, to: 1, maxSize: .max) == [])
        #expect(try s.snapshot() == Snapshot())
    }

    @Test func initialStateCarriesMembershipAndHardState() throws {
        let s = MemoryStorage(voters: [1, 2], learners: [3])
        s.setHardState(HardState(term: 2, vote: 1, commit: 0))
        let (hs, cs) = try s.initialState()
        #expect(hs == HardState(term: 2, vote: 1, commit: 0))
        #expect(cs == ConfState(voters: [1, 2], learners: [3]))
    }

    @Test func entriesAreLimitedBySizeButNeverEmpty() throws {
        let s = Self.storage(5)
        #expect(try s.entries(from: 2, to: 6, maxSize: .max).map(\.index) == [2, 3, 4, 5])
        #expect(try s.entries(from: 2, to: 6, maxSize: 8).map(\.index) == [2, 3])
        #expect(try s.entries(from: 2, to: 6, maxSize: 0).map(\.index) == [2])
    }

    @Test func entriesOutOfRangeThrow() throws {
        let s = Self.storage(5)
        try s.compact(through: 2)
        #expect(Self.error { () throws(StorageError) in _ = try s.entries(from: 2, to: 4, maxSize: .max) } == .compacted)
        #expect(Self.error { () throws(StorageError) in _ = try s.entries(from: 3, to: 7, maxSize: .max) } == .unavailable)
        #expect(try s.entries(from: 3, to: 6, maxSize: .max).map(\.index) == [3, 4, 5])
    }

    @Test func termErrorsOutsideTheLog() throws {
        let s = Self.storage(5)
        try s.compact(through: 3)
        #expect(try s.term(at: 3) == 1)
        #expect(Self.error { () throws(StorageError) in _ = try s.term(at: 2) } == .compacted)
        #expect(Self.error { () throws(StorageError) in _ = try s.term(at: 6) } == .unavailable)
    }

    @Test func appendReplacesOverlappingTail() throws {
        let s = Self.storage(5)
        s.append([Entry(term: 2, index: 3), Entry(term: 2, index: 4)])
        #expect(try s.lastIndex() == 4)
        #expect(try s.term(at: 2) == 1)
        #expect(try s.term(at: 3) == 2)
        #expect(try s.term(at: 4) == 2)
    }

    @Test func appendIgnoresEntriesAlreadyCompacted() throws {
        let s = Self.storage(5)
        try s.compact(through: 4)
        s.append([Entry(term: 1, index: 2), Entry(term: 1, index: 3)])
        #expect(try s.firstIndex() == 5)
        #expect(try s.lastIndex() == 5)
        s.append([Entry(term: 2, index: 4), Entry(term: 2, index: 5), Entry(term: 2, index: 6)])
        #expect(try s.lastIndex() == 6)
        #expect(try s.term(at: 5) == 2)
        #expect(try s.term(at: 4) == 1)
    }

    @Test func compactMovesFirstIndexAndRejectsBadIndexes() throws {
        let s = Self.storage(5)
        try s.compact(through: 3)
        #expect(try s.firstIndex() == 4)
        #expect(try s.lastIndex() == 5)
        #expect(Self.error { () throws(StorageError) in try s.compact(through: 3) } == .compacted)
        #expect(Self.error { () throws(StorageError) in try s.compact(through: 6) } == .unavailable)
    }

    @Test func createSnapshotTakesTermFromTheLog() throws {
        let s = MemoryStorage()
        s.append([Entry(term: 1, index: 1), Entry(term: 2, index: 2), Entry(term: 3, index: 3)])
        let snap = try s.createSnapshot(at: 2, confState: ConfState(voters: [1]), data: [9])
        #expect(snap == Snapshot(metadata: SnapshotMetadata(index: 2, term: 2, confState: ConfState(voters: [1])), data: [9]))
        #expect(try s.snapshot() == snap)
        #expect(Self.error { () throws(StorageError) in _ = try s.createSnapshot(at: 2, confState: nil, data: []) } == .snapshotOutOfDate)
        #expect(Self.error { () throws(StorageError) in _ = try s.createSnapshot(at: 4, confState: nil, data: []) } == .unavailable)
    }

    @Test func applySnapshotReplacesTheLog() throws {
        let s = Self.storage(5)
        let snap = Snapshot(metadata: SnapshotMetadata(index: 8, term: 4, confState: ConfState(voters: [1, 2])), data: [])
        try s.applySnapshot(snap)
        #expect(try s.firstIndex() == 9)
        #expect(try s.lastIndex() == 8)
        #expect(try s.term(at: 8) == 4)
        #expect(try s.initialState().1 == ConfState(voters: [1, 2]))
        var older = snap
        older.metadata.index = 8
        #expect(Self.error { () throws(StorageError) in try s.applySnapshot(older) } == .snapshotOutOfDate)
        older.metadata.index = 6
        #expect(Self.error { () throws(StorageError) in try s.applySnapshot(older) } == .snapshotOutOfDate)
    }
}
