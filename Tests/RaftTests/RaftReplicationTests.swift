import Testing

@testable import Raft

@Suite("Raft log replication (§5.3, §5.4.2)")
struct RaftReplicationTests {
    @Test func leaderReplicatesAndCommitsOnAllNodes() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.propose(1, "a")
        net.stabilize()
        for id: NodeID in [1, 2, 3] {
            #expect(net.committed(id) == 2)
            #expect(net.appliedData(id) == [raftBytes("a")])
            let stored = try net.storages[id]!.entries(from: 2, to: 3, maxSize: .max)
            #expect(stored == [Entry(term: 1, index: 2, data: raftBytes("a"))])
        }
    }

    @Test func commitNeedsAQuorum() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        net.isolate(1)
        try net.propose(1, "a")
        net.stabilize()
        #expect(net.committed(1) == 1)
        #expect(net.lastIndex(1) == 2)
        net.heal()
        net.cut(1, 3)
        net.tickAndStabilize(1)
        #expect(net.committed(1) == 2)
        #expect(net.committed(2) == 2)
        #expect(net.committed(3) == 1)
    }

    @Test func leaderOwnAckCountsOnlyAfterPersistence() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.propose(1, "a")
        #expect(net.lastIndex(1) == 2)
        #expect(net.progress(1, 1)!.match == 1)
        net.process(1)
        #expect(net.progress(1, 1)!.match == 2)
    }

    @Test func singleNodeCommitsOnlyAfterAdvance() throws {
        var node = try RaftNode(config: RaftTestNetwork.config(1, MemoryStorage(voters: [1])))
        var net = RaftTestNetwork(voters: [])
        net.nodes[1] = node
        net.storages[1] = node.core.log.storage as? MemoryStorage
        net.elect(1)
        node = net.nodes[1]!
        try node.propose(raftBytes("x"))
        let rd = node.ready()
        #expect(rd.entries == [Entry(term: 1, index: 2, data: raftBytes("x"))])
        #expect(rd.committedEntries.isEmpty)
        #expect(node.core.log.committed == 1)
        net.storages[1]!.append(rd.entries)
        node.advance()
        #expect(node.core.log.committed == 2)
        let next = node.ready()
        #expect(next.committedEntries == [Entry(term: 1, index: 2, data: raftBytes("x"))])
    }

    /// Figure 8: an entry of an earlier term stored on a majority is not committed by counting replicas.
    @Test func oldTermEntryOnMajorityIsNotCommittedUntilCurrentTermEntryIs() throws {
        var net = RaftTestNetwork(storages: [
            1: raftTestStorage(voters: [1, 2, 3], terms: [1, 2], hardState: HardState(term: 2, vote: 1, commit: 1)),
            2: raftTestStorage(voters: [1, 2, 3], terms: [1], hardState: HardState(term: 2, vote: 1, commit: 1)),
            3: raftTestStorage(voters: [1, 2, 3], terms: [1], hardState: HardState(term: 2, vote: 1, commit: 1)),
        ])
        net.nodes[1]!.campaign()
        net.deliver(net.process(1))
        net.deliver(net.process(2) + net.process(3))
        #expect(net.role(1) == .leader)
        #expect(net.term(1) == 3)
        net.process(1)
        #expect(net.progress(1, 1)!.match == 3)
        try net.nodes[1]!.step(Message(type: .appendResponse, to: 1, from: 2, term: 3, index: 2))
        #expect(net.progress(1, 2)!.match == 2)
        #expect(net.committed(1) == 1)
        try net.nodes[1]!.step(Message(type: .appendResponse, to: 1, from: 2, term: 3, index: 3))
        #expect(net.committed(1) == 3)
    }

    @Test func followerTruncatesConflictingTail() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [1, 2, 2], hardState: HardState(term: 2, commit: 1))
        var net = RaftTestNetwork(storages: [2: storage])
        try net.nodes[2]!.step(
            Message(type: .append, to: 2, from: 1, term: 3, logTerm: 1, index: 1, entries: [Entry(term: 3, index: 2)], commit: 1))
        net.process(2)
        #expect(net.lastReady[2]!.entries == [Entry(term: 3, index: 2)])
        #expect(net.lastReady[2]!.messagesAfterPersist == [Message(type: .appendResponse, to: 1, from: 2, term: 3, index: 2)])
        #expect(try storage.lastIndex() == 2)
        #expect(try storage.term(at: 2) == 3)
    }

    @Test func followerKeepsMatchingTailOnShorterAppend() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [1, 1, 1], hardState: HardState(term: 1, commit: 1))
        var net = RaftTestNetwork(storages: [2: storage])
        try net.nodes[2]!.step(
            Message(type: .append, to: 2, from: 1, term: 1, logTerm: 1, index: 1, entries: [Entry(term: 1, index: 2)], commit: 1))
        net.process(2)
        #expect(net.lastReady[2]!.entries.isEmpty)
        #expect(net.lastReady[2]!.messagesAfterPersist == [Message(type: .appendResponse, to: 1, from: 2, term: 1, index: 2)])
        #expect(net.lastIndex(2) == 3)
    }

    @Test func followerRejectsAppendWithMissingPrevEntry() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [1, 1], hardState: HardState(term: 1))
        var net = RaftTestNetwork(storages: [2: storage])
        try net.nodes[2]!.step(Message(type: .append, to: 2, from: 1, term: 1, logTerm: 1, index: 3))
        let out = net.process(2)
        #expect(out == [Message(type: .appendResponse, to: 1, from: 2, term: 1, logTerm: 1, index: 3, reject: true, rejectHint: 2)])
    }

    @Test func followerCommitIsCappedByLastNewEntry() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [1, 1, 1], hardState: HardState(term: 1))
        var net = RaftTestNetwork(storages: [2: storage])
        try net.nodes[2]!.step(
            Message(type: .append, to: 2, from: 1, term: 1, logTerm: 1, index: 1, entries: [Entry(term: 1, index: 2)], commit: 5))
        #expect(net.committed(2) == 2)
    }

    @Test func appendBelowCommitIsAnsweredWithCommitIndex() throws {
        let storage = raftTestStorage(voters: [1, 2, 3], terms: [1, 1, 1], hardState: HardState(term: 1, commit: 3))
        var net = RaftTestNetwork(storages: [2: storage])
        try net.nodes[2]!.step(
            Message(type: .append, to: 2, from: 1, term: 1, logTerm: 1, index: 1, entries: [Entry(term: 1, index: 2)], commit: 3))
        let out = net.process(2)
        #expect(out == [Message(type: .appendResponse, to: 1, from: 2, term: 1, index: 3)])
    }

    // MARK: - Fast backtracking

    /// Leader 1 (and 3): terms [1,1,1,3,3,3,3,3]; follower 2: [1,1,1,2,2,2]. Node 1 wins term 5.
    static func backtrackingNetwork() -> (RaftTestNetwork, Message) {
        let leaderTerms: [UInt64] = [1, 1, 1, 3, 3, 3, 3, 3]
        var net = RaftTestNetwork(storages: [
            1: raftTestStorage(voters: [1, 2, 3], terms: leaderTerms, hardState: HardState(term: 4, commit: 3)),
            2: raftTestStorage(voters: [1, 2, 3], terms: [1, 1, 1, 2, 2, 2], hardState: HardState(term: 4, commit: 3)),
            3: raftTestStorage(voters: [1, 2, 3], terms: leaderTerms, hardState: HardState(term: 4, commit: 3)),
        ])
        net.nodes[1]!.campaign()
        net.deliver(net.process(1))
        net.deliver(net.process(2) + net.process(3))
        let appends = net.process(1)
        return (net, appends.first { $0.to == 2 }!)
    }

    @Test func newLeaderProbesFromItsLastIndex() {
        let (net, append) = Self.backtrackingNetwork()
        #expect(net.role(1) == .leader)
        #expect(net.term(1) == 5)
        #expect(append == Message(type: .append, to: 2, from: 1, term: 5, logTerm: 3, index: 8, entries: [Entry(term: 5, index: 9)], commit: 3))
        #expect(net.progress(1, 2)!.state == .probe)
        #expect(net.progress(1, 2)!.next == 9)
    }

    @Test func followerRejectionHintsItsLastEntryOfAnOlderTerm() {
        var (net, append) = Self.backtrackingNetwork()
        net.deliver([append])
        let out = net.process(2)
        #expect(out == [Message(type: .appendResponse, to: 1, from: 2, term: 5, logTerm: 2, index: 8, reject: true, rejectHint: 6)])
    }

    @Test func leaderSkipsAWholeConflictingTermOnRejection() {
        var (net, append) = Self.backtrackingNetwork()
        net.deliver([append])
        net.deliver(net.process(2))
        #expect(net.progress(1, 2)!.next == 4)
        #expect(net.progress(1, 2)!.state == .probe)
        let out = net.process(1).filter { $0.to == 2 }
        #expect(out.count == 1)
        #expect(out.first?.type == .append)
        #expect(out.first?.index == 3)
        #expect(out.first?.logTerm == 1)
        #expect(out.first?.entries.map(\.index) == [4, 5, 6, 7, 8, 9])
    }

    @Test func followerConvergesToLeaderLogAfterBacktracking() throws {
        var (net, append) = Self.backtrackingNetwork()
        net.deliver([append])
        net.stabilize()
        var terms: [UInt64] = []
        for i: UInt64 in 1...9 { terms.append(try net.storages[2]!.term(at: i)) }
        #expect(terms == [1, 1, 1, 3, 3, 3, 3, 3, 5])
        #expect(net.committed(2) == 9)
        #expect(net.progress(1, 2)!.state == .replicate)
        #expect(net.progress(1, 2)!.match == 9)
    }

    // MARK: - Progress and flow control

    @Test func followerProgressMovesFromProbeToReplicate() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.nodes[1]!.campaign()
        net.deliver(net.process(1))
        net.deliver(net.process(2) + net.process(3))
        let probing = net.progress(1, 2)!
        #expect(probing.state == .probe)
        #expect(probing.probeSent)
        #expect(probing.next == 1)
        #expect(probing.match == 0)
        net.stabilize()
        let replicating = net.progress(1, 2)!
        #expect(replicating.state == .replicate)
        #expect(replicating.match == 1)
        #expect(replicating.next == 2)
    }

    @Test func probeWithOutstandingAppendSendsNothingMore() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.cutLinks.insert(RaftTestLink(from: 1, to: 3))
        net.elect(1)
        #expect(net.progress(1, 3)!.state == .probe)
        #expect(net.progress(1, 3)!.probeSent)
        try net.propose(1, "a")
        let out = net.process(1)
        #expect(out.filter { $0.to == 3 }.isEmpty)
        #expect(out.filter { $0.to == 2 }.map(\.type) == [.append])
    }

    @Test func heartbeatResponseUnpausesProbe() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.cutLinks.insert(RaftTestLink(from: 1, to: 3))
        net.elect(1)
        try net.nodes[1]!.step(Message(type: .heartbeatResponse, to: 1, from: 3, term: 1))
        let out = net.process(1)
        #expect(out == [Message(type: .append, to: 3, from: 1, term: 1, logTerm: 0, index: 0, entries: [Entry(term: 1, index: 1)], commit: 1)])
    }

    @Test func fullInflightWindowPausesReplication() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3]) { $0.maxInflightMessages = 2 }
        net.elect(1)
        #expect(net.progress(1, 2)!.state == .replicate)
        for data in ["a", "b", "c"] { try net.propose(1, data) }
        let out = net.process(1)
        let toTwo = out.filter { $0.to == 2 }
        #expect(toTwo.map { $0.entries.map(\.index) } == [[2], [3]])
        #expect(out.filter { $0.to == 3 }.count == 2)
        let pr = net.progress(1, 2)!
        #expect(pr.inflightCount == 2)
        #expect(pr.isPaused)
        #expect(pr.next == 4)
    }

    @Test func heartbeatResponseFreesOneInflightSlot() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3]) { $0.maxInflightMessages = 2 }
        net.elect(1)
        for data in ["a", "b", "c"] { try net.propose(1, data) }
        net.process(1)
        try net.nodes[1]!.step(Message(type: .heartbeatResponse, to: 1, from: 2, term: 1))
        #expect(net.progress(1, 2)!.inflights.indexes == [3, 4])
        let out = net.process(1)
        #expect(out == [Message(type: .append, to: 2, from: 1, term: 1, logTerm: 1, index: 3, entries: [Entry(term: 1, index: 4, data: raftBytes("c"))], commit: 1)])
    }

    @Test func appendAcknowledgementFreesInflights() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3]) { $0.maxInflightMessages = 2 }
        net.elect(1)
        for data in ["a", "b", "c"] { try net.propose(1, data) }
        net.process(1)
        try net.nodes[1]!.step(Message(type: .appendResponse, to: 1, from: 2, term: 1, index: 3))
        let pr = net.progress(1, 2)!
        #expect(pr.match == 3)
        #expect(pr.inflights.indexes == [4])
        #expect(net.committed(1) == 3)
    }

    @Test func maxSizePerMessageSplitsAppends() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3]) { $0.maxSizePerMessage = 10 }
        net.elect(1)
        try net.nodes[1]!.propose(batch: [raftBytes("aaaaaaaa"), raftBytes("bbbbbbbb"), raftBytes("cccccccc")])
        let out = net.process(1)
        #expect(out.filter { $0.to == 2 }.map { $0.entries.map(\.index) } == [[2]])
        net.delivered.removeAll()
        net.deliver(out)
        net.stabilize()
        #expect(net.committed(2) == 4)
        let appendsToTwo = net.delivered.filter { $0.type == .append && $0.to == 2 && !$0.entries.isEmpty }
        #expect(appendsToTwo.map { $0.entries.map(\.index) } == [[2], [3], [4]])
    }

    @Test func heartbeatCommitNeverExceedsFollowerMatch() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        net.isolate(3)
        try net.propose(1, "a")
        net.stabilize()
        net.tick(1)
        let out = net.process(1)
        #expect(out == [
            Message(type: .heartbeat, to: 2, from: 1, term: 1, commit: 2),
            Message(type: .heartbeat, to: 3, from: 1, term: 1, commit: 1),
        ])
    }

    @Test func heartbeatAdvancesFollowerCommit() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.propose(1, "a")
        net.stabilize()
        net.droppedTypes = [.append]
        try net.propose(1, "b")
        net.stabilize()
        #expect(net.committed(2) == 2)
        net.heal()
        try net.nodes[2]!.step(Message(type: .append, to: 2, from: 1, term: 1, logTerm: 1, index: 2, entries: [Entry(term: 1, index: 3, data: raftBytes("b"))], commit: 2))
        try net.nodes[2]!.step(Message(type: .heartbeat, to: 2, from: 1, term: 1, commit: 3))
        #expect(net.committed(2) == 3)
        let out = net.process(2)
        #expect(net.lastReady[2]!.hardState == HardState(term: 1, vote: 1, commit: 3))
        #expect(out.contains(Message(type: .heartbeatResponse, to: 1, from: 2, term: 1)))
    }

    @Test func unreachablePeerDropsBackToProbe() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        #expect(net.progress(1, 2)!.state == .replicate)
        net.nodes[1]!.reportUnreachable(2)
        #expect(net.progress(1, 2)!.state == .probe)
        #expect(net.progress(1, 2)!.next == 2)
    }
}
