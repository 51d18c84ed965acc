import Testing

@testable import Raft

@Suite("Raft read index (thesis §6.4)")
struct RaftReadIndexTests {
    @Test func safeReadWaitsForAHeartbeatQuorum() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.readIndex(context: raftBytes("r1"))
        let out = net.process(1)
        #expect(out == [
            Message(type: .heartbeat, to: 2, from: 1, term: 1, commit: 1, context: raftBytes("r1")),
            Message(type: .heartbeat, to: 3, from: 1, term: 1, commit: 1, context: raftBytes("r1")),
        ])
        #expect(net.lastReady[1]!.readStates.isEmpty)
        net.deliver([out[0]])
        let ack = net.process(2)
        #expect(ack == [Message(type: .heartbeatResponse, to: 1, from: 2, term: 1, context: raftBytes("r1"))])
        net.deliver(ack)
        net.process(1)
        #expect(net.lastReady[1]!.readStates == [ReadState(index: 1, context: raftBytes("r1"))])
    }

    @Test func oneHeartbeatRoundConfirmsAllEarlierRequests() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.readIndex(context: raftBytes("a"))
        try net.proposeAndCommit("x")
        try net.nodes[1]!.readIndex(context: raftBytes("b"))
        let out = net.process(1)
        let heartbeatB = out.first { $0.type == .heartbeat && $0.to == 2 && $0.context == raftBytes("b") }!
        net.deliver([heartbeatB])
        net.deliver(net.process(2))
        net.process(1)
        #expect(net.readStates[1] == [ReadState(index: 1, context: raftBytes("a")), ReadState(index: 2, context: raftBytes("b"))])
    }

    @Test func newLeaderDefersReadsUntilItCommitsInItsTerm() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.nodes[1]!.campaign()
        net.deliver(net.process(1))
        net.deliver(net.process(2) + net.process(3))
        #expect(net.role(1) == .leader)
        try net.nodes[1]!.readIndex(context: raftBytes("x"))
        #expect(net.core(1).pendingReadIndexMessages.count == 1)
        let out = net.process(1)
        #expect(out.map(\.type) == [.append, .append])
        net.deliver(out)
        net.stabilize()
        #expect(net.readStates[1] == [ReadState(index: 1, context: raftBytes("x"))])
        #expect(net.core(1).pendingReadIndexMessages.isEmpty)
    }

    @Test func followerForwardsReadIndexAndReceivesReadState() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[2]!.readIndex(context: raftBytes("f"))
        let out = net.process(2)
        #expect(out == [Message(type: .readIndex, to: 1, from: 2, context: raftBytes("f"))])
        net.deliver(out)
        net.stabilize()
        #expect(net.readStates[2] == [ReadState(index: 1, context: raftBytes("f"))])
        #expect((net.readStates[1] ?? []).isEmpty)
    }

    @Test func followerWithoutLeaderCannotRead() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        let error = raftError { () throws(RaftError) in try net.nodes[2]!.readIndex(context: raftBytes("f")) }
        #expect(error == .proposalDropped(.noLeader))
    }

    @Test func leaseBasedReadIsAnsweredAtOnce() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3]) {
            $0.checkQuorum = true
            $0.readOnlyOption = .leaseBased
        }
        net.elect(1)
        try net.nodes[1]!.readIndex(context: raftBytes("l"))
        let out = net.process(1)
        #expect(out.isEmpty)
        #expect(net.lastReady[1]!.readStates == [ReadState(index: 1, context: raftBytes("l"))])
    }

    @Test func singleNodeReadIsAnsweredAtOnce() throws {
        var net = RaftTestNetwork(voters: [1])
        net.elect(1)
        try net.nodes[1]!.readIndex(context: raftBytes("s"))
        #expect(net.process(1).isEmpty)
        #expect(net.lastReady[1]!.readStates == [ReadState(index: 1, context: raftBytes("s"))])
    }

    @Test func readIndexIsTheCommitIndexWhenTheRequestArrived() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.proposeAndCommit("a")
        try net.proposeAndCommit("b")
        try net.nodes[1]!.readIndex(context: raftBytes("r"))
        net.stabilize()
        #expect(net.readStates[1] == [ReadState(index: 3, context: raftBytes("r"))])
    }

    @Test func candidateCannotRead() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.nodes[1]!.campaign()
        let error = raftError { () throws(RaftError) in try net.nodes[1]!.readIndex(context: raftBytes("c")) }
        #expect(error == .proposalDropped(.noLeader))
    }
}
