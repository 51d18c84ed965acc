import Foundation
import Raft
import Testing
import WAL

@testable import EtcdServer

/// `--force-new-cluster` on a member's log: uncommitted entries go, committed removals of every
/// other member (as of the commit index) follow, in memory and on disk alike.
@Suite("Force new cluster")
struct ForceNewClusterTests {
    @Test func uncommittedEntriesGoAndEveryOtherMemberIsRemoved() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("force-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try WriteAheadLog.create(directory: directory, metadata: WALMetadata(memberID: 1, clusterID: 9))
        // Entries 1...6, committed through 5; entry 4 adds member 4 (after the applied configuration).
        var entries = (1...6).map { Entry(term: 2, index: UInt64($0), kind: .normal, data: [UInt8($0)]) }
        entries[3] = Entry(term: 2, index: 4, kind: .confChange, data: ConfChange(changes: [ConfChangeSingle(.addNode, 4)]).encoded())
        try log.save(hardState: WALHardState(term: 2, vote: 1, commit: 5), entries: entries.map(EntryEnvelope.logEntry))
        let storage = MemoryStorage()
        storage.append(entries)
        storage.setHardState(HardState(term: 2, vote: 1, commit: 5))

        try EtcdServer.forceNewCluster(
            storage: storage, log: log, localID: 1, confState: ConfState(voters: [1, 2, 3]), membership: Membership(), applied: 3)

        let expected = [2, 3, 4].map { ConfChange(encoded: ConfChange(changes: [ConfChangeSingle(.removeNode, $0)]).encoded())!.changes }
        let added = try storage.entries(from: 6, to: 9, maxSize: .max)
        #expect(added.map(\.index) == [6, 7, 8])
        #expect(added.map { ConfChange(encoded: $0.data)?.changes } == expected)
        #expect(storage.hardState == HardState(term: 2, vote: 1, commit: 8))
        log.close()

        let (reopened, contents) = try WriteAheadLog.open(directory: directory, from: WALSnapshot(index: 0, term: 0))
        defer { reopened.close() }
        #expect(contents.hardState == WALHardState(term: 2, vote: 1, commit: 8))
        #expect(contents.entries.map(\.index) == Array(1...8))
        // The uncommitted entry 6 was replaced by the first removal.
        #expect(ConfChange(encoded: EntryEnvelope.raftEntry(contents.entries[5]).data)?.changes == expected[0])

        // Alone already: nothing changes.
        let alone = MemoryStorage()
        alone.append(Array(entries.prefix(5)))
        alone.setHardState(HardState(term: 2, vote: 1, commit: 5))
        try EtcdServer.forceNewCluster(
            storage: alone, log: reopened, localID: 1, confState: ConfState(voters: [1]), membership: Membership(), applied: 5)
        #expect(try alone.lastIndex() == 5)
    }
}
