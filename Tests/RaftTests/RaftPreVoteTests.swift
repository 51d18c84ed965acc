import Testing

@testable import Raft

@Suite("Raft pre-vote, check-quorum and leader lease")
struct RaftPreVoteTests {
    static func preVote(_ c: inout RaftConfig) { c.preVote = true }

    @Test func preCandidateKeepsItsTermAndAsksForTheNextOne() {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.preVote)
        net.nodes[1]!.campaign()
        #expect(net.role(1) == .preCandidate)
        #expect(net.term(1) == 0)
        let out = net.process(1)
        #expect(out.map(\.type) == [.preVote, .preVote])
        #expect(out.map(\.to) == [2, 3])
        #expect(out.map(\.term) == [1, 1])
        #expect(net.lastReady[1]!.hardState == nil)
        #expect(!net.lastReady[1]!.mustSync)
    }

    @Test func grantingAPreVoteChangesNeitherTermNorVote() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.preVote)
        try net.nodes[2]!.step(Message(type: .preVote, to: 2, from: 1, term: 1, logTerm: 0, index: 0))
        let out = net.process(2)
        #expect(out == [Message(type: .preVoteResponse, to: 1, from: 2, term: 1)])
        #expect(net.term(2) == 0)
        #expect(net.core(2).vote == noNode)
    }

    @Test func preVoteElectionUsesExactlyOneTerm() {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.preVote)
        net.elect(1)
        #expect(net.role(1) == .leader)
        #expect(net.term(1) == 1)
        #expect(net.term(2) == 1)
        #expect(net.lead(3) == 1)
    }

    @Test func partitionedPreVoteNodeDoesNotBumpItsTerm() {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.preVote)
        net.elect(1)
        net.isolate(3)
        net.tickAndStabilize(3, times: 100)
        #expect(net.term(3) == 1)
        #expect(net.role(3) == .preCandidate)
    }

    @Test func rejoiningPreVoteNodeDoesNotDisruptTheLeader() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.preVote)
        net.elect(1)
        net.isolate(3)
        try net.propose(1, "x")
        net.stabilize()
        net.tickAndStabilize(3, times: 30)
        net.heal()
        net.nodes[3]!.campaign()
        net.stabilize()
        #expect(net.role(1) == .leader)
        #expect(net.term(1) == 1)
        #expect(net.role(3) == .follower)
        #expect(net.term(3) == 1)
        net.tickAndStabilize(1)
        #expect(net.lead(3) == 1)
        #expect(net.committed(3) == 2)
    }

    @Test func withoutPreVoteARejoiningNodeDeposesTheLeader() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        net.isolate(3)
        try net.propose(1, "x")
        net.stabilize()
        net.nodes[3]!.campaign()
        net.stabilize()
        #expect(net.term(3) == 2)
        net.heal()
        net.nodes[3]!.campaign()
        net.stabilize()
        #expect(net.term(3) == 3)
        #expect(net.term(1) == 3)
        #expect(net.role(1) == .follower)
        #expect(net.lead(1) == noNode)
        #expect(net.role(3) == .follower)
    }

    @Test func rejectedPreVoteFromHigherTermMakesFollowerOfThatTerm() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3], configure: Self.preVote)
        net.nodes[1]!.campaign()
        net.process(1)
        try net.nodes[1]!.step(Message(type: .preVoteResponse, to: 1, from: 2, term: 5, reject: true))
        #expect(net.role(1) == .follower)
        #expect(net.term(1) == 5)
        #expect(net.lead(1) == noNode)
    }

    @Test func stalePreVoteIsRejectedWithOurTerm() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [], hardState: HardState(term: 4))
        var net = RaftTestNetwork(storages: [2: storage], configure: Self.preVote)
        try net.nodes[2]!.step(Message(type: .preVote, to: 2, from: 1, term: 3, logTerm: 0, index: 0))
        let out = net.process(2)
        #expect(out == [Message(type: .preVoteResponse, to: 1, from: 2, term: 4, reject: true)])
    }
}
