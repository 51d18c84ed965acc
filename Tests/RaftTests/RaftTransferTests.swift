import Testing

@testable import Raft

@Suite("Raft leadership transfer (thesis §3.10)")
struct RaftTransferTests {
    @Test func upToDateTransfereeGetsTimeoutNowAndWins() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        net.nodes[1]!.transferLeadership(to: 2)
        #expect(net.core(1).leadTransferee == 2)
        let out = net.process(1)
        #expect(out == [Message(type: .timeoutNow, to: 2, from: 1, term: 1)])
        net.deliver(out)
        net.stabilize()
        #expect(net.role(2) == .leader)
        #expect(net.term(2) == 2)
        #expect(net.role(1) == .follower)
        #expect(net.lead(1) == 2)
        #expect(net.lead(3) == 2)
    }

    @Test func transfereeCampaignsWithTransferContext() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[2]!.step(Message(type: .timeoutNow, to: 2, from: 1, term: 1))
        #expect(net.role(2) == .candidate)
        let out = net.process(2)
        #expect(out.map(\.context) == [campaignTransferContext, campaignTransferContext])
        #expect(out.map(\.to) == [1, 3])
    }

    @Test func laggingTransfereeIsCaughtUpFirst() throws {
        var net = try RaftTestNetwork.leaderWithLaggingNode3()
        net.heal()
        net.nodes[1]!.transferLeadership(to: 3)
        let out = net.process(1)
        #expect(out.map(\.type) == [.append])
        #expect(out.map(\.to) == [3])
        net.deliver(out)
        net.stabilize()
        #expect(net.role(3) == .leader)
        #expect(net.term(3) == 2)
        #expect(net.lead(1) == 3)
        #expect(net.committed(3) == 3)
    }

    @Test func transferToLearnerIsIgnored() {
        var net = RaftTestNetwork(voters: [1, 2], learners: [3])
        net.elect(1)
        net.nodes[1]!.transferLeadership(to: 3)
        #expect(net.core(1).leadTransferee == noNode)
        #expect(net.process(1) == [])
        #expect(net.role(1) == .leader)
    }

    @Test func transferToSelfIsIgnored() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        net.nodes[1]!.transferLeadership(to: 1)
        #expect(net.core(1).leadTransferee == noNode)
        #expect(net.process(1) == [])
    }

    @Test func transferIsAbortedAfterAnElectionTimeout() throws {
        var net = try RaftTestNetwork.leaderWithLaggingNode3()
        net.nodes[1]!.transferLeadership(to: 3)
        net.tick(1, times: 9)
        #expect(net.core(1).leadTransferee == 3)
        net.tick(1)
        #expect(net.core(1).leadTransferee == noNode)
        #expect(net.role(1) == .leader)
        try net.propose(1, "b")
        #expect(net.lastIndex(1) == 3)
    }

    @Test func followerForwardsTransferRequestToLeader() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        net.nodes[2]!.transferLeadership(to: 2)
        let out = net.process(2)
        #expect(out.map(\.type) == [.transferLeader])
        #expect(out.map(\.to) == [1])
        #expect(out.map(\.from) == [2])
        net.deliver(out)
        net.stabilize()
        #expect(net.role(2) == .leader)
        #expect(net.term(2) == 2)
    }

    @Test func newTransferReplacesPendingOne() throws {
        var net = try RaftTestNetwork.leaderWithLaggingNode3()
        net.nodes[1]!.transferLeadership(to: 3)
        #expect(net.core(1).leadTransferee == 3)
        net.process(1)
        net.nodes[1]!.transferLeadership(to: 2)
        #expect(net.core(1).leadTransferee == 2)
        #expect(net.process(1) == [Message(type: .timeoutNow, to: 2, from: 1, term: 1)])
    }

    @Test func transferSucceedsThroughLeaderLease() {
        var net = RaftTestNetwork(voters: [1, 2, 3]) { $0.checkQuorum = true }
        net.elect(1)
        net.nodes[1]!.transferLeadership(to: 3)
        net.stabilize()
        #expect(net.role(3) == .leader)
        #expect(net.term(3) == 2)
        #expect(net.lead(2) == 3)
    }

    @Test func removingTheTransfereeAbortsTheTransfer() throws {
        var net = try RaftTestNetwork.leaderWithLaggingNode3()
        net.nodes[1]!.transferLeadership(to: 3)
        #expect(net.core(1).leadTransferee == 3)
        let cs = try net.nodes[1]!.applyConfChange(ConfChange(changes: [ConfChangeSingle(.removeNode, 3)]))
        #expect(cs == ConfState(voters: [1, 2]))
        #expect(net.core(1).leadTransferee == noNode)
        try net.propose(1, "b")
        #expect(net.lastIndex(1) == 3)
    }
}
