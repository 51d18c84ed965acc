import Testing

@testable import Raft

@Suite("Raft proposals")
struct RaftProposalTests {
    @Test func proposalWithoutLeaderIsDropped() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        let error = raftError { () throws(RaftError) in try net.propose(2, "x") }
        #expect(error == .proposalDropped(.noLeader))
    }

    @Test func candidateDropsProposals() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.nodes[1]!.campaign()
        let error = raftError { () throws(RaftError) in try net.propose(1, "x") }
        #expect(error == .proposalDropped(.noLeader))
        #expect(net.lastIndex(1) == 0)
    }

    @Test func followerForwardsProposalToLeader() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.propose(2, "x")
        let out = net.process(2)
        #expect(out == [Message(type: .propose, to: 1, from: 2, term: 0, entries: [Entry(term: 0, index: 0, data: raftBytes("x"))])])
        net.deliver(out)
        net.stabilize()
        for id: NodeID in [1, 2, 3] {
            #expect(net.appliedData(id) == [raftBytes("x")])
            #expect(net.committed(id) == 2)
        }
    }

    @Test func followerDropsProposalWhenForwardingIsDisabled() {
        var net = RaftTestNetwork(voters: [1, 2, 3]) { $0.disableProposalForwarding = true }
        net.elect(1)
        let error = raftError { () throws(RaftError) in try net.propose(2, "x") }
        #expect(error == .proposalDropped(.forwardingDisabled))
        #expect(net.process(2) == [])
    }

    @Test func proposalOverUncommittedSizeLimitIsDropped() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3]) { $0.maxUncommittedEntriesSize = 10 }
        net.elect(1)
        net.isolate(1)
        try net.propose(1, "12345678")
        let error = raftError { () throws(RaftError) in try net.propose(1, "abcd") }
        #expect(error == .proposalDropped(.uncommittedSizeLimit))
        #expect(net.lastIndex(1) == 2)
        #expect(net.core(1).uncommittedSize == 8)
    }

    @Test func committingFreesUncommittedSizeQuota() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3]) { $0.maxUncommittedEntriesSize = 10 }
        net.elect(1)
        net.isolate(1)
        try net.propose(1, "12345678")
        net.stabilize()
        net.heal()
        net.tickAndStabilize(1)
        #expect(net.committed(1) == 2)
        #expect(net.core(1).uncommittedSize == 0)
        try net.propose(1, "abcd")
        #expect(net.lastIndex(1) == 3)
    }

    @Test func oversizedProposalIsAcceptedWhenNothingIsUncommitted() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3]) { $0.maxUncommittedEntriesSize = 10 }
        net.elect(1)
        try net.propose(1, "this is twenty bytes")
        #expect(net.lastIndex(1) == 2)
        #expect(net.core(1).uncommittedSize == 20)
    }

    @Test func proposalDuringLeadershipTransferIsDropped() throws {
        var net = try RaftTestNetwork.leaderWithLaggingNode3()
        net.nodes[1]!.transferLeadership(to: 3)
        #expect(net.core(1).leadTransferee == 3)
        let error = raftError { () throws(RaftError) in try net.propose(1, "b") }
        #expect(error == .proposalDropped(.leadershipTransferInProgress))
        #expect(net.lastIndex(1) == 2)
    }

    @Test func batchProposalLandsInConsecutiveEntries() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.propose(batch: [raftBytes("a"), raftBytes("b"), raftBytes("c")])
        net.stabilize()
        let entries = try net.storages[3]!.entries(from: 2, to: 5, maxSize: .max)
        #expect(entries == [
            Entry(term: 1, index: 2, data: raftBytes("a")),
            Entry(term: 1, index: 3, data: raftBytes("b")),
            Entry(term: 1, index: 4, data: raftBytes("c")),
        ])
        #expect(net.committed(3) == 4)
    }
}
