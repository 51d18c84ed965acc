import Testing

@testable import Raft

/// Cases found by reviewing the library against etcd-io/raft, each pinned by a test.
@Suite("Raft hardening")
struct RaftHardeningTests {
    @Test func aReadyWithOnlyASnapshotMustBeSynced() throws {
        let storage = MemoryStorage(voters: [1, 2])
        var node = try RaftNode(config: RaftTestNetwork.config(2, storage))
        let snapshot = Snapshot(metadata: SnapshotMetadata(index: 10, term: 3, confState: ConfState(voters: [1, 2])))
        try node.step(Message(type: .snapshot, to: 2, from: 1, term: 3, snapshot: snapshot))
        let ready = node.ready()
        #expect(ready.snapshot == snapshot)
        #expect(ready.entries.isEmpty)
        #expect(ready.mustSync)
        // The acknowledgement promises the snapshot is durable, so it waits for the write.
        #expect(ready.messagesAfterPersist.map(\.type) == [.appendResponse])
        #expect(ready.messagesAfterPersist.first?.index == 10)
    }

    @Test func aHeartbeatCommitBeyondTheLogIsIgnored() throws {
        var net = RaftTestNetwork(voters: [1, 2])
        net.elect(1)
        let before = net.committed(2)
        try net.nodes[2]!.step(Message(type: .heartbeat, to: 2, from: 1, term: net.term(1), commit: 50))
        #expect(net.committed(2) == before)
        #expect(net.lastIndex(2) == 1)
    }

    @Test func aRemovedLeaderDoesNotAnswerReadsAlone() throws {
        var net = RaftTestNetwork(voters: [1, 2])
        net.elect(1)
        // Node 1 applies its own removal: node 2 is now the only voter, node 1 is not.
        let state = try net.nodes[1]!.applyConfChange(ConfChange(changes: [ConfChangeSingle(.removeNode, 1)]))
        #expect(state.voters == [2])
        #expect(net.role(1) == .leader)
        try net.nodes[1]!.readIndex(context: raftBytes("r"))
        _ = net.process(1)
        #expect(net.lastReady[1]?.readStates.isEmpty == true)
    }

    @Test func theHandOffMovesToTheNextVoterWhenTheFirstDoesNotTakeOver() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3, 4])
        net.elect(1)
        _ = try net.nodes[1]!.applyConfChange(ConfChange(changes: [ConfChangeSingle(.removeNode, 1)]))
        let first = net.core(1).leadTransferee
        #expect(first == 2)
        // Node 2 never takes over; after an election timeout the leader tries another voter.
        net.isolate(2)
        net.tickAndStabilize(1, times: 10)
        // The retry went to node 3 (next in line), which took over.
        #expect(net.role(3) == .leader)
        #expect(net.role(1) == .follower)
        #expect(net.lead(4) == 3)
    }

    @Test func networkMessagesWithoutATermOrSenderAreRefused() throws {
        var node = try RaftNode(config: RaftTestNetwork.config(1, MemoryStorage(voters: [1, 2])))
        for type in [MessageType.vote, .append, .snapshot, .timeoutNow, .heartbeat] {
            let error = raftError { () throws(RaftError) in try node.step(Message(type: type, to: 1, from: 2, term: 0)) }
            #expect(error == .invalidMessage, "\(type)")
        }
        let noSender = raftError { () throws(RaftError) in try node.step(Message(type: .append, to: 1, term: 1)) }
        #expect(noSender == .invalidMessage)
    }

    @Test func appliedBeforeTheSnapshotIsRejected() throws {
        let storage = MemoryStorage(voters: [1])
        try storage.applySnapshot(Snapshot(metadata: SnapshotMetadata(index: 5, term: 1, confState: ConfState(voters: [1]))))
        storage.setHardState(HardState(term: 1, vote: 1, commit: 5))
        var config = RaftTestNetwork.config(1, storage)
        config.applied = 3
        do {
            _ = try RaftNode(config: config)
            Issue.record("an applied index before the snapshot was accepted")
        } catch {
            #expect(error == .invalid("applied 3 is out of range [5, 5]"))
        }
    }

    @Test func anAutomaticLeaveDroppedDuringATransferIsRetriedOnTick() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        // Enter a joint configuration that leaves itself, while a transfer blocks proposals.
        net.isolate(3)
        net.nodes[1]!.transferLeadership(to: 3)
        let joint = ConfChange(transition: .jointImplicit, changes: [ConfChangeSingle(.addLearner, 4)])
        _ = try net.nodes[1]!.applyConfChange(joint)
        net.nodes[1]!.core.applied(through: net.committed(1))
        #expect(net.core(1).tracker.config.voters.isJoint)
        #expect(net.core(1).tracker.config.autoLeave)
        let lastBefore = net.lastIndex(1)
        // The transfer is abandoned after an election timeout; the leave is proposed then.
        net.tick(1, times: 10)
        #expect(net.core(1).leadTransferee == noNode)
        #expect(net.lastIndex(1) == lastBefore + 1)
    }
}
