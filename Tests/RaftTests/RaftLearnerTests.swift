import Testing

@testable import Raft

@Suite("Raft learners")
struct RaftLearnerTests {
    @Test func learnerNeverCampaigns() {
        var net = RaftTestNetwork(voters: [1, 2], learners: [3])
        net.tick(3, times: 100)
        net.nodes[3]!.campaign()
        #expect(net.role(3) == .follower)
        #expect(net.term(3) == 0)
        #expect(net.process(3) == [])
    }

    @Test func learnersAreNotAskedForVotes() {
        var net = RaftTestNetwork(voters: [1, 2], learners: [3])
        net.nodes[1]!.campaign()
        let out = net.process(1)
        #expect(out.map(\.to) == [2])
        #expect(out.map(\.type) == [.vote])
    }

    @Test func learnerReceivesAndAppliesEntries() throws {
        var net = RaftTestNetwork(voters: [1, 2], learners: [3])
        net.elect(1)
        try net.propose(1, "x")
        net.stabilize()
        #expect(net.committed(3) == 2)
        #expect(net.appliedData(3) == [raftBytes("x")])
        #expect(net.lead(3) == 1)
    }

    @Test func learnerDoesNotCountTowardCommit() throws {
        var net = RaftTestNetwork(voters: [1, 2], learners: [3])
        net.elect(1)
        net.cut(1, 2)
        try net.propose(1, "x")
        net.stabilize()
        #expect(net.progress(1, 3)!.match == 2)
        #expect(net.committed(1) == 1)
    }

    @Test func learnerIsPromotedByAddNode() throws {
        var net = RaftTestNetwork(voters: [1, 2], learners: [3])
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(ConfChange(changes: [ConfChangeSingle(.addNode, 3)]))
        net.stabilize()
        for id: NodeID in [1, 2, 3] {
            #expect(net.confStates[id] == ConfState(voters: [1, 2, 3]))
        }
        #expect(net.progress(1, 3)!.isLearner == false)
        #expect(net.core(3).isLearner == false)
        // Now 3 counts: 1 and 3 commit without 2.
        net.cut(1, 2)
        try net.propose(1, "y")
        net.stabilize()
        #expect(net.committed(1) == 3)
    }
}
