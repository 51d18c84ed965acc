import Testing

@testable import Raft

@Suite("Raft snapshots (§7)")
struct RaftSnapshotTests {
    /// Node 3 misses entries 2...4, which the leader then compacts into a snapshot at 4.
    static func compactedNetwork() throws -> RaftTestNetwork {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        net.isolate(3)
        for data in ["a", "b", "c"] { try net.propose(1, data) }
        net.stabilize()
        let storage = net.storages[1]!
        try storage.createSnapshot(at: 4, confState: ConfState(voters: [1, 2, 3]), data: raftBytes("snap"))
        try storage.compact(through: 4)
        net.heal()
        return net
    }

    @Test func leaderSendsSnapshotWhenFollowerNeedsCompactedEntries() throws {
        var net = try Self.compactedNetwork()
        net.tickAndStabilize(1)
        let snapshots = net.delivered.filter { $0.type == .snapshot }
        #expect(snapshots.count == 1)
        #expect(snapshots.first?.to == 3)
        #expect(snapshots.first?.snapshot?.metadata == SnapshotMetadata(index: 4, term: 1, confState: ConfState(voters: [1, 2, 3])))
        #expect(snapshots.first?.snapshot?.data == raftBytes("snap"))
    }

    @Test func followerCatchesUpThroughSnapshot() throws {
        var net = try Self.compactedNetwork()
        net.tickAndStabilize(1)
        #expect(net.committed(3) == 4)
        #expect(try net.storages[3]!.snapshot().metadata.index == 4)
        #expect(try net.storages[3]!.firstIndex() == 5)
        #expect(net.confStates[3] == ConfState(voters: [1, 2, 3]))
        let pr = net.progress(1, 3)!
        #expect(pr.state == .replicate)
        #expect(pr.match == 4)
        #expect(pr.next == 5)
        try net.propose(1, "d")
        net.stabilize()
        #expect(net.committed(3) == 5)
        #expect(net.appliedData(3) == [raftBytes("d")])
    }

    @Test func followerInSnapshotStateIsPausedUntilReported() throws {
        var net = try Self.compactedNetwork()
        net.droppedTypes = [.snapshot]
        net.tickAndStabilize(1)
        let pr = net.progress(1, 3)!
        #expect(pr.state == .snapshot)
        #expect(pr.pendingSnapshot == 4)
        #expect(pr.isPaused)
        try net.propose(1, "d")
        #expect(net.process(1).filter { $0.to == 3 }.isEmpty)
    }

    @Test func failedSnapshotReportMovesFollowerToProbe() throws {
        var net = try Self.compactedNetwork()
        net.droppedTypes = [.snapshot]
        net.tickAndStabilize(1)
        net.nodes[1]!.reportSnapshot(3, status: .failure)
        let pr = net.progress(1, 3)!
        #expect(pr.state == .probe)
        #expect(pr.pendingSnapshot == 0)
        #expect(pr.next == 2)
        #expect(pr.probeSent)
    }

    @Test func finishedSnapshotReportProbesPastTheSnapshot() throws {
        var net = try Self.compactedNetwork()
        net.droppedTypes = [.snapshot]
        net.tickAndStabilize(1)
        net.nodes[1]!.reportSnapshot(3, status: .finished)
        let pr = net.progress(1, 3)!
        #expect(pr.state == .probe)
        #expect(pr.next == 5)
        #expect(pr.probeSent)
    }

    static let snapshot = Snapshot(
        metadata: SnapshotMetadata(index: 10, term: 3, confState: ConfState(voters: [1, 2, 3], learners: [4])),
        data: raftBytes("state"))

    @Test func followerRestoresSnapshot() throws {
        var net = RaftTestNetwork(voters: [1, 2])
        try net.nodes[2]!.step(Message(type: .snapshot, to: 2, from: 1, term: 3, snapshot: Self.snapshot))
        #expect(net.lastIndex(2) == 10)
        #expect(net.committed(2) == 10)
        #expect(net.core(2).log.lastTerm == 3)
        #expect(net.nodes[2]!.status().confState == ConfState(voters: [1, 2, 3], learners: [4]))
        net.process(2)
        let rd = net.lastReady[2]!
        #expect(rd.snapshot == Self.snapshot)
        #expect(rd.committedEntries.isEmpty)
        #expect(rd.hardState == HardState(term: 3, vote: 0, commit: 10))
        #expect(rd.messagesAfterPersist == [Message(type: .appendResponse, to: 1, from: 2, term: 3, index: 10)])
        #expect(try net.storages[2]!.firstIndex() == 11)
        #expect(try net.storages[2]!.lastIndex() == 10)
        #expect(net.nodes[2]!.status().applied == 10)
    }

    @Test func snapshotAtOrBelowCommitIsIgnored() throws {
        let storage = raftTestStorage(voters: [1, 2], terms: [1, 1, 1, 1, 1], hardState: HardState(term: 1, commit: 5))
        var net = RaftTestNetwork(storages: [2: storage])
        var old = Self.snapshot
        old.metadata.index = 3
        old.metadata.term = 1
        try net.nodes[2]!.step(Message(type: .snapshot, to: 2, from: 1, term: 1, snapshot: old))
        let out = net.process(2)
        #expect(net.lastReady[2]!.snapshot == nil)
        #expect(out == [Message(type: .appendResponse, to: 1, from: 2, term: 1, index: 5)])
    }

    @Test func snapshotMatchingTheLogOnlyAdvancesCommit() throws {
        let storage = raftTestStorage(voters: [1, 2], terms: [1, 1, 1, 1, 1], hardState: HardState(term: 1, commit: 2))
        var net = RaftTestNetwork(storages: [2: storage])
        var snap = Self.snapshot
        snap.metadata = SnapshotMetadata(index: 4, term: 1, confState: ConfState(voters: [1, 2]))
        try net.nodes[2]!.step(Message(type: .snapshot, to: 2, from: 1, term: 1, snapshot: snap))
        let out = net.process(2)
        #expect(net.lastReady[2]!.snapshot == nil)
        #expect(net.committed(2) == 4)
        #expect(net.lastIndex(2) == 5)
        #expect(out == [Message(type: .appendResponse, to: 1, from: 2, term: 1, index: 4)])
    }

    @Test func snapshotThatDoesNotListTheNodeIsIgnored() throws {
        var net = RaftTestNetwork(voters: [1, 2])
        var snap = Self.snapshot
        snap.metadata.confState = ConfState(voters: [1, 3])
        try net.nodes[2]!.step(Message(type: .snapshot, to: 2, from: 1, term: 3, snapshot: snap))
        let out = net.process(2)
        #expect(net.lastReady[2]!.snapshot == nil)
        #expect(net.lastIndex(2) == 0)
        #expect(out == [Message(type: .appendResponse, to: 1, from: 2, term: 3, index: 0)])
        #expect(net.nodes[2]!.status().confState == ConfState(voters: [1, 2]))
    }

    @Test func nodeWithPendingSnapshotDoesNotCampaign() throws {
        var net = RaftTestNetwork(voters: [1, 2])
        try net.nodes[2]!.step(Message(type: .snapshot, to: 2, from: 1, term: 3, snapshot: Self.snapshot))
        net.nodes[2]!.campaign()
        #expect(net.role(2) == .follower)
        #expect(net.term(2) == 3)
    }
}
