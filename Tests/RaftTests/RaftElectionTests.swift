import Testing

@testable import Raft

@Suite("Raft elections (§5.2, §5.4.1)")
struct RaftElectionTests {
    @Test func followerCampaignsExactlyAtItsRandomizedTimeout() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        let timeout = net.core(1).randomizedElectionTimeout
        #expect(timeout >= 10)
        #expect(timeout < 20)
        net.tick(1, times: timeout - 1)
        #expect(net.role(1) == .follower)
        #expect(net.term(1) == 0)
        net.tick(1)
        #expect(net.role(1) == .candidate)
        #expect(net.term(1) == 1)
        let out = net.process(1)
        #expect(out.map(\.type) == [.vote, .vote])
        #expect(out.map(\.to) == [2, 3])
        #expect(out.map(\.term) == [1, 1])
    }

    @Test func randomizedTimeoutStaysWithinOneToTwoElectionTimeouts() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        var seen = Set<Int>()
        for t in 1...200 {
            net.nodes[1]!.core.becomeFollower(term: UInt64(t), leader: noNode)
            seen.insert(net.core(1).randomizedElectionTimeout)
        }
        #expect(seen.min() == 10)
        #expect(seen.max() == 19)
    }

    @Test func ownVoteCountsOnlyAfterPersistence() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.nodes[1]!.campaign()
        #expect(net.core(1).tracker.votes == [:])
        _ = net.process(1)
        #expect(net.lastReady[1]!.hardState == HardState(term: 1, vote: 1, commit: 0))
        #expect(net.lastReady[1]!.mustSync)
        #expect(net.core(1).tracker.votes == [1: true])
        #expect(net.role(1) == .candidate)
    }

    @Test func candidateWinsWithAMajority() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.isolate(3)
        net.elect(1)
        #expect(net.role(1) == .leader)
        #expect(net.term(1) == 1)
        #expect(net.role(2) == .follower)
        #expect(net.lead(2) == 1)
        #expect(net.term(3) == 0)
        #expect(net.lead(3) == noNode)
    }

    @Test func candidateLosesOnMajorityRejection() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.nodes[1]!.campaign()
        net.process(1)
        try net.nodes[1]!.step(Message(type: .voteResponse, to: 1, from: 2, term: 1, reject: true))
        #expect(net.role(1) == .candidate)
        try net.nodes[1]!.step(Message(type: .voteResponse, to: 1, from: 3, term: 1, reject: true))
        #expect(net.role(1) == .follower)
        #expect(net.term(1) == 1)
        #expect(net.lead(1) == noNode)
    }

    @Test func grantedVoteIsPersistedBeforeTheResponseGoesOut() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        try net.nodes[2]!.step(Message(type: .vote, to: 2, from: 1, term: 1, logTerm: 0, index: 0))
        _ = net.process(2)
        let rd = net.lastReady[2]!
        #expect(rd.hardState == HardState(term: 1, vote: 1, commit: 0))
        #expect(rd.mustSync)
        #expect(rd.messages.isEmpty)
        #expect(rd.messagesAfterPersist == [Message(type: .voteResponse, to: 1, from: 2, term: 1)])
        #expect(net.storages[2]!.hardState == HardState(term: 1, vote: 1, commit: 0))
    }

    @Test func persistedVoteSurvivesRestart() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [], hardState: HardState(term: 1, vote: 1, commit: 0))
        var node = try RaftNode(config: RaftTestNetwork.config(2, storage))
        #expect(node.core.vote == 1)
        #expect(node.core.term == 1)
        try node.step(Message(type: .vote, to: 2, from: 3, term: 1, logTerm: 0, index: 0))
        let rd = node.ready()
        #expect(rd.messagesAfterPersist == [Message(type: .voteResponse, to: 3, from: 2, term: 1, reject: true)])
    }

    @Test func grantsOneVotePerTerm() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        try net.nodes[3]!.step(Message(type: .vote, to: 3, from: 1, term: 1, logTerm: 0, index: 0))
        let first = net.process(3)
        #expect(first == [Message(type: .voteResponse, to: 1, from: 3, term: 1)])
        try net.nodes[3]!.step(Message(type: .vote, to: 3, from: 2, term: 1, logTerm: 0, index: 0))
        let second = net.process(3)
        #expect(second == [Message(type: .voteResponse, to: 2, from: 3, term: 1, reject: true)])
        #expect(net.core(3).vote == 1)
    }

    @Test func repeatedRequestFromTheSameCandidateIsGrantedAgain() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        try net.nodes[3]!.step(Message(type: .vote, to: 3, from: 1, term: 1, logTerm: 0, index: 0))
        net.process(3)
        try net.nodes[3]!.step(Message(type: .vote, to: 3, from: 1, term: 1, logTerm: 0, index: 0))
        let again = net.process(3)
        #expect(again == [Message(type: .voteResponse, to: 1, from: 3, term: 1)])
    }

    @Test func refusesCandidateWithShorterLogOfSameLastTerm() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [1, 1], hardState: HardState(term: 1))
        var node = try RaftNode(config: RaftTestNetwork.config(2, storage))
        try node.step(Message(type: .vote, to: 2, from: 3, term: 2, logTerm: 1, index: 1))
        let rd = node.ready()
        #expect(rd.messagesAfterPersist == [Message(type: .voteResponse, to: 3, from: 2, term: 2, reject: true)])
        #expect(node.core.term == 2)
        #expect(node.core.vote == noNode)
    }

    @Test func refusesCandidateWithOlderLastTermEvenIfLonger() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [1, 3], hardState: HardState(term: 3))
        var node = try RaftNode(config: RaftTestNetwork.config(2, storage))
        try node.step(Message(type: .vote, to: 2, from: 3, term: 4, logTerm: 2, index: 5))
        let rd = node.ready()
        #expect(rd.messagesAfterPersist == [Message(type: .voteResponse, to: 3, from: 2, term: 4, reject: true)])
    }

    @Test func grantsCandidateWithNewerLastTermEvenIfShorter() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [1, 1, 1], hardState: HardState(term: 2))
        var node = try RaftNode(config: RaftTestNetwork.config(2, storage))
        try node.step(Message(type: .vote, to: 2, from: 3, term: 3, logTerm: 2, index: 1))
        let rd = node.ready()
        #expect(rd.messagesAfterPersist == [Message(type: .voteResponse, to: 3, from: 2, term: 3)])
        #expect(rd.hardState == HardState(term: 3, vote: 3, commit: 0))
    }

    @Test func singleNodeClusterElectsItselfAndCommits() throws {
        var net = RaftTestNetwork(voters: [1])
        net.elect(1)
        #expect(net.role(1) == .leader)
        #expect(net.term(1) == 1)
        #expect(net.committed(1) == 1)
        try net.propose(1, "x")
        net.stabilize()
        #expect(net.committed(1) == 2)
        #expect(net.appliedData(1) == [raftBytes("x")])
    }

    @Test func newLeaderAppendsAnEmptyEntryOfItsTerm() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        let first = try net.storages[1]!.entries(from: 1, to: 2, maxSize: .max)
        #expect(first == [Entry(term: 1, index: 1, kind: .normal, data: [])])
        net.elect(2)
        #expect(net.role(2) == .leader)
        #expect(net.term(2) == 2)
        for id: NodeID in [1, 2, 3] {
            let second = try net.storages[id]!.entries(from: 2, to: 3, maxSize: .max)
            #expect(second == [Entry(term: 2, index: 2, kind: .normal, data: [])])
            #expect(net.committed(id) == 2)
        }
    }

    @Test func candidateBecomesFollowerOnAppendFromLeaderOfSameTerm() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.nodes[2]!.campaign()
        #expect(net.role(2) == .candidate)
        try net.nodes[2]!.step(Message(type: .append, to: 2, from: 1, term: 1, logTerm: 0, index: 0))
        #expect(net.role(2) == .follower)
        #expect(net.term(2) == 1)
        #expect(net.lead(2) == 1)
    }

    @Test func leaderStepsDownOnHigherTermMessage() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.step(Message(type: .heartbeatResponse, to: 1, from: 2, term: 5))
        #expect(net.role(1) == .follower)
        #expect(net.term(1) == 5)
        #expect(net.lead(1) == noNode)
    }

    @Test func staleTermAppendIsIgnoredWithoutCheckQuorumOrPreVote() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [], hardState: HardState(term: 2))
        var net = RaftTestNetwork(storages: [2: storage])
        try net.nodes[2]!.step(Message(type: .append, to: 2, from: 1, term: 1, logTerm: 0, index: 0))
        #expect(net.process(2) == [])
        #expect(net.term(2) == 2)
        #expect(net.lead(2) == noNode)
    }

    @Test func staleTermAppendIsAnsweredWithOurTermUnderCheckQuorum() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [], hardState: HardState(term: 2))
        var net = RaftTestNetwork(storages: [2: storage]) { $0.checkQuorum = true }
        try net.nodes[2]!.step(Message(type: .heartbeat, to: 2, from: 1, term: 1))
        _ = net.process(2)
        #expect(net.lastReady[2]!.messagesAfterPersist == [Message(type: .appendResponse, to: 1, from: 2, term: 2)])
    }

    @Test func leaderRejectsVoteRequestInItsOwnTerm() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.step(Message(type: .vote, to: 1, from: 2, term: 1, logTerm: 1, index: 1))
        let out = net.process(1)
        #expect(out == [Message(type: .voteResponse, to: 2, from: 1, term: 1, reject: true)])
        #expect(net.role(1) == .leader)
    }

    @Test func nodeWithCommittedButUnappliedConfChangeDoesNotCampaign() throws {
        let storage = MemoryStorage(voters: [1])
        let change = ConfChange(changes: [ConfChangeSingle(.addNode, 2)])
        storage.append([Entry(term: 1, index: 1, kind: .confChange, data: change.encoded())])
        storage.setHardState(HardState(term: 1, vote: 0, commit: 1))
        var net = RaftTestNetwork(storages: [1: storage])
        net.nodes[1]!.campaign()
        #expect(net.role(1) == .follower)
        #expect(net.term(1) == 1)
        net.process(1)
        #expect(net.confStates[1] == ConfState(voters: [1, 2]))
        net.nodes[1]!.campaign()
        #expect(net.role(1) == .candidate)
        #expect(net.term(1) == 2)
    }
}
