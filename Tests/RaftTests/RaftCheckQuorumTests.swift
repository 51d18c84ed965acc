import Testing

@testable import Raft

@Suite("Raft check-quorum and leader lease")
struct RaftCheckQuorumTests {
    static func checkQuorum(_ c: inout RaftConfig) { c.checkQuorum = true }

    @Test func leaderCutOffFromQuorumStepsDownAfterElectionTimeout() {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.checkQuorum)
        net.elect(1)
        net.isolate(1)
        // The first check still sees the followers' earlier acknowledgements.
        net.tick(1, times: 19)
        #expect(net.role(1) == .leader)
        net.tick(1)
        #expect(net.role(1) == .follower)
        #expect(net.term(1) == 1)
        #expect(net.lead(1) == noNode)
    }

    @Test func leaderInContactWithQuorumStaysLeader() {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.checkQuorum)
        net.elect(1)
        net.isolate(3)
        net.tickAndStabilize(1, times: 50)
        #expect(net.role(1) == .leader)
        #expect(net.term(1) == 1)
    }

    @Test func followerInLeaseIgnoresHigherTermVoteRequest() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.checkQuorum)
        net.elect(1)
        try net.nodes[3]!.step(Message(type: .vote, to: 3, from: 2, term: 2, logTerm: 1, index: 1))
        #expect(net.process(3) == [])
        #expect(net.term(3) == 1)
        #expect(net.lead(3) == 1)
        #expect(net.core(3).vote == 1)
    }

    @Test func followerInLeaseIgnoresHigherTermPreVote() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3]) {
            $0.checkQuorum = true
            $0.preVote = true
        }
        net.elect(1)
        try net.nodes[3]!.step(Message(type: .preVote, to: 3, from: 2, term: 2, logTerm: 1, index: 1))
        #expect(net.process(3) == [])
        #expect(net.term(3) == 1)
    }

    @Test func transferCampaignBypassesTheLease() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.checkQuorum)
        net.elect(1)
        try net.nodes[3]!.step(
            Message(type: .vote, to: 3, from: 2, term: 2, logTerm: 1, index: 1, context: campaignTransferContext))
        let out = net.process(3)
        #expect(out == [Message(type: .voteResponse, to: 2, from: 3, term: 2)])
        #expect(net.term(3) == 2)
        #expect(net.core(3).vote == 2)
    }

    @Test func followerWhoseLeaseExpiredGrantsVote() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.checkQuorum)
        net.elect(1)
        net.nodes[3]!.core.electionElapsed = 10
        try net.nodes[3]!.step(Message(type: .vote, to: 3, from: 2, term: 2, logTerm: 1, index: 1))
        let out = net.process(3)
        #expect(out == [Message(type: .voteResponse, to: 2, from: 3, term: 2)])
        #expect(net.term(3) == 2)
    }

    @Test func checkQuorumClearsRecentActiveOfFollowers() {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.checkQuorum)
        net.elect(1)
        #expect(net.progress(1, 2)!.recentActive)
        net.tick(1, times: 10)
        #expect(net.role(1) == .leader)
        #expect(!net.progress(1, 2)!.recentActive)
        #expect(!net.progress(1, 3)!.recentActive)
        #expect(net.progress(1, 1)!.recentActive)
    }
}
