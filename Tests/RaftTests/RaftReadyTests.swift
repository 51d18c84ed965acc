import Testing

@testable import Raft

@Suite("Ready and advance")
struct RaftReadyTests {
    @Test func freshNodeHasNothingReady() throws {
        let node = try RaftNode(config: RaftTestNetwork.config(1, MemoryStorage(voters: [1, 2, 3])))
        #expect(!node.hasReady)
    }

    @Test func leaderAppendsGoOutAtOnceFollowerAcksAfterPersist() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.propose(1, "a")
        let out = net.process(1)
        #expect(net.lastReady[1]!.messages.map(\.type) == [.append, .append])
        #expect(net.lastReady[1]!.messagesAfterPersist.isEmpty)
        net.deliver(out)
        net.process(2)
        #expect(net.lastReady[2]!.messages.isEmpty)
        #expect(net.lastReady[2]!.messagesAfterPersist == [Message(type: .appendResponse, to: 1, from: 2, term: 1, index: 2)])
        #expect(net.lastReady[2]!.entries == [Entry(term: 1, index: 2, data: raftBytes("a"))])
        #expect(net.lastReady[2]!.mustSync)
    }

    @Test func commitOnlyChangeDoesNotNeedSync() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.propose(1, "a")
        net.deliver(net.process(1))
        net.process(2)
        try net.nodes[2]!.step(Message(type: .heartbeat, to: 2, from: 1, term: 1, commit: 2))
        net.process(2)
        let rd = net.lastReady[2]!
        #expect(rd.hardState == HardState(term: 1, vote: 1, commit: 2))
        #expect(rd.entries.isEmpty)
        #expect(!rd.mustSync)
        #expect(rd.committedEntries.map(\.index) == [2])
    }

    @Test func softStateIsHandedOutOnlyWhenItChanges() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.nodes[1]!.campaign()
        let votes = net.process(1)
        #expect(net.lastReady[1]!.softState == SoftState(leader: noNode, role: .candidate))
        net.deliver(votes)
        net.stabilize()
        try net.propose(1, "a")
        net.process(1)
        #expect(net.lastReady[1]!.softState == nil)
        #expect(net.nodes[1]!.status().softState == SoftState(leader: 1, role: .leader))
    }

    @Test func restartedNodeSkipsEntriesAlreadyApplied() throws {
        let storage = raftTestStorage(voters: [1], terms: [1, 1, 1], hardState: HardState(term: 1, vote: 1, commit: 3))
        var config = RaftTestNetwork.config(1, storage)
        config.applied = 2
        var node = try RaftNode(config: config)
        #expect(node.hasReady)
        let rd = node.ready()
        #expect(rd.committedEntries.map(\.index) == [3])
        #expect(rd.hardState == nil)
        node.advance()
        #expect(node.status().applied == 3)
        #expect(!node.hasReady)
    }

    @Test func statusReportsProgressOnlyOnLeader() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        #expect(net.nodes[1]!.status().progress.keys.sorted() == [1, 2, 3])
        #expect(net.nodes[2]!.status().progress.isEmpty)
        #expect(net.nodes[1]!.status().hardState == HardState(term: 1, vote: 1, commit: 1))
    }
}
