import Testing

@testable import Raft

@Suite("Raft membership changes (thesis §4)")
struct RaftConfChangeTests {
    static func add(_ id: NodeID) -> ConfChangeSingle { ConfChangeSingle(.addNode, id) }
    static func remove(_ id: NodeID) -> ConfChangeSingle { ConfChangeSingle(.removeNode, id) }
    static func learner(_ id: NodeID) -> ConfChangeSingle { ConfChangeSingle(.addLearner, id) }

    @Test func addNodeInOneStepAndNewNodeCatchesUp() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.addNode(4, storage: MemoryStorage(voters: [1, 2, 3]))
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(ConfChange(changes: [Self.add(4)]))
        net.stabilize()
        for id: NodeID in [1, 2, 3, 4] {
            #expect(net.confStates[id] == ConfState(voters: [1, 2, 3, 4]))
            #expect(net.committed(id) == 2)
        }
        #expect(net.progress(1, 4)!.match == 2)
        #expect(net.lead(4) == 1)
    }

    @Test func removeNodeInOneStep() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(ConfChange(changes: [Self.remove(3)]))
        net.stabilize()
        #expect(net.confStates[1] == ConfState(voters: [1, 2]))
        #expect(net.confStates[2] == ConfState(voters: [1, 2]))
        #expect(net.core(1).tracker.sortedIDs == [1, 2])
        net.isolate(3)
        try net.propose(1, "x")
        net.stabilize()
        #expect(net.committed(1) == 3)
    }

    @Test func removedLeaderHandsLeadershipToAnUpToDateVoter() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(ConfChange(changes: [Self.remove(1)]))
        net.stabilize()
        #expect(net.confStates[1] == ConfState(voters: [2, 3]))
        #expect(net.confStates[2] == ConfState(voters: [2, 3]))
        #expect(net.role(2) == .leader)
        #expect(net.term(2) == 2)
        #expect(net.lead(3) == 2)
    }

    @Test func removedLeaderDropsProposals() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(ConfChange(changes: [Self.remove(1)]))
        net.stabilize()
        let error = raftError { () throws(RaftError) in try net.propose(1, "x") }
        #expect(error == .proposalDropped(.notMember))
    }

    @Test func secondConfChangeWhilePendingBecomesEmptyEntry() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(ConfChange(changes: [Self.learner(4)]))
        try net.nodes[1]!.proposeConfChange(ConfChange(changes: [Self.learner(5)]))
        let entries = try net.core(1).log.entries(from: 2, maxSize: .max)
        #expect(entries.map(\.kind) == [.confChange, .normal])
        #expect(entries[1] == Entry(term: 1, index: 3, kind: .normal, data: []))
        net.stabilize()
        #expect(net.confStates[1] == ConfState(voters: [1, 2, 3], learners: [4]))
    }

    @Test func confChangeAfterThePreviousOneIsAppliedIsAccepted() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(ConfChange(changes: [Self.learner(4)]))
        net.stabilize()
        try net.nodes[1]!.proposeConfChange(ConfChange(changes: [Self.learner(5)]))
        net.stabilize()
        #expect(net.confStates[1] == ConfState(voters: [1, 2, 3], learners: [4, 5]))
    }

    @Test func explicitJointConfigStaysJointUntilLeaveJointIsProposed() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(ConfChange(transition: .jointExplicit, changes: [Self.add(4)]))
        net.stabilize()
        let joint = ConfState(voters: [1, 2, 3, 4], votersOutgoing: [1, 2, 3], autoLeave: false)
        #expect(net.confStates[1] == joint)
        #expect(net.confStates[2] == joint)
        #expect(net.lastIndex(1) == 2)
        try net.nodes[1]!.proposeConfChange(ConfChange.leaveJoint)
        net.stabilize()
        #expect(net.confStates[1] == ConfState(voters: [1, 2, 3, 4]))
        #expect(net.confStates[3] == ConfState(voters: [1, 2, 3, 4]))
    }

    @Test func multiStepAutoChangeEntersJointAndLeaderLeavesByItself() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(ConfChange(changes: [Self.add(4), Self.remove(3)]))
        net.stabilize()
        let conf = (net.applied[1] ?? []).filter { $0.kind == .confChange }
        #expect(conf.map(\.index) == [2, 3])
        #expect(conf.last?.data == ConfChange.leaveJoint.encoded())
        #expect(net.confStates[1] == ConfState(voters: [1, 2, 4]))
        #expect(net.confStates[2] == ConfState(voters: [1, 2, 4]))
        #expect(net.core(1).tracker.sortedIDs == [1, 2, 4])
    }

    @Test func jointImplicitSingleChangeStillGoesThroughJointState() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(ConfChange(transition: .jointImplicit, changes: [Self.learner(4)]))
        net.stabilize()
        let conf = (net.applied[1] ?? []).filter { $0.kind == .confChange }
        #expect(conf.count == 2)
        #expect(net.confStates[1] == ConfState(voters: [1, 2, 3], learners: [4]))
    }

    @Test func jointConfigNeedsBothMajoritiesToCommit() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(
            ConfChange(transition: .jointExplicit, changes: [Self.add(4), Self.add(5), Self.remove(2), Self.remove(3)]))
        net.stabilize()
        #expect(net.confStates[1] == ConfState(voters: [1, 4, 5], votersOutgoing: [1, 2, 3]))
        try net.propose(1, "x")
        net.stabilize()
        // 1, 2 and 3 hold the entry, but of the incoming voters only 1 does.
        #expect(net.lastIndex(2) == 3)
        #expect(net.committed(1) == 2)
    }

    @Test func leaveJointProposedOutsideJointBecomesEmptyEntry() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        try net.nodes[1]!.proposeConfChange(ConfChange.leaveJoint)
        let entries = try net.core(1).log.entries(from: 2, maxSize: .max)
        #expect(entries == [Entry(term: 1, index: 2, kind: .normal, data: [])])
    }

    @Test func confChangeEncodingRoundTrips() {
        let change = ConfChange(
            transition: .jointExplicit,
            changes: [Self.add(1), Self.remove(300), Self.learner(.max)],
            context: [1, 2, 3])
        let decoded = ConfChange(encoded: change.encoded())
        #expect(decoded == change)
        // Leaving a joint configuration is empty, so the uncommitted-size limit never refuses it.
        #expect(ConfChange.leaveJoint.encoded() == [])
        #expect(ConfChange(encoded: []) == ConfChange.leaveJoint)
        #expect(ConfChange(encoded: [0, 0, 0]) == ConfChange.leaveJoint)
    }

    @Test func malformedConfChangeBytesDoNotDecode() {
        #expect(ConfChange(encoded: [3, 0, 0]) == nil)  // unknown transition
        #expect(ConfChange(encoded: [0, 1, 7, 1, 0]) == nil)  // unknown change kind
        #expect(ConfChange(encoded: [0, 0, 0, 9]) == nil)  // trailing byte
        #expect(ConfChange(encoded: [0, 0, 2, 1]) == nil)  // context cut short
    }

    @Test func removingAllVotersIsRefusedAndLeavesConfigUnchanged() throws {
        var node = try RaftNode(config: RaftTestNetwork.config(1, MemoryStorage(voters: [1])))
        do {
            _ = try node.applyConfChange(ConfChange(changes: [Self.remove(1)]))
            Issue.record("expected removedAllVoters")
        } catch {
            #expect(error == .removedAllVoters)
        }
        #expect(node.status().confState == ConfState(voters: [1]))
    }

    @Test func simpleChangeOfTwoVotersIsRefused() {
        let core = RaftTestNetwork(voters: [1, 2, 3]).core(1)
        var changer = ConfChanger(tracker: core.tracker, lastIndex: 0)
        do {
            try changer.simple([Self.add(4), Self.add(5)])
            Issue.record("expected moreThanOneVoterChanged")
        } catch {
            #expect(error == .moreThanOneVoterChanged)
        }
    }

    @Test func enteringJointTwiceIsRefused() throws {
        var node = try RaftNode(config: RaftTestNetwork.config(1, MemoryStorage(voters: [1, 2, 3])))
        _ = try node.applyConfChange(ConfChange(transition: .jointExplicit, changes: [Self.add(4)]))
        do {
            _ = try node.applyConfChange(ConfChange(transition: .jointExplicit, changes: [Self.add(5)]))
            Issue.record("expected alreadyJoint")
        } catch {
            #expect(error == .alreadyJoint)
        }
    }

    @Test func leavingANonJointConfigIsRefused() throws {
        var node = try RaftNode(config: RaftTestNetwork.config(1, MemoryStorage(voters: [1, 2, 3])))
        do {
            _ = try node.applyConfChange(ConfChange.leaveJoint)
            Issue.record("expected notJoint")
        } catch {
            #expect(error == .notJoint)
        }
    }

    @Test func emptyConfigCannotEnterJoint() {
        var changer = ConfChanger(tracker: ProgressTracker(maxInflight: 4, maxInflightBytes: 0), lastIndex: 0)
        do {
            try changer.enterJoint(autoLeave: false, [Self.add(1)])
            Issue.record("expected zeroVoterJoint")
        } catch {
            #expect(error == .zeroVoterJoint)
        }
    }

    @Test func demotingAVoterInJointWaitsInLearnersNext() throws {
        let core = RaftTestNetwork(voters: [1, 2, 3]).core(1)
        var changer = ConfChanger(tracker: core.tracker, lastIndex: 5)
        try changer.enterJoint(autoLeave: false, [Self.learner(3)])
        #expect(changer.config.confState == ConfState(voters: [1, 2], votersOutgoing: [1, 2, 3], learnersNext: [3]))
        #expect(changer.progress[3]?.isLearner == false)
        try changer.leaveJoint()
        #expect(changer.config.confState == ConfState(voters: [1, 2], learners: [3]))
        #expect(changer.progress[3]?.isLearner == true)
    }

    @Test func newMemberProgressStartsAtLastIndexAndRecentlyActive() throws {
        let core = RaftTestNetwork(voters: [1, 2, 3]).core(1)
        var changer = ConfChanger(tracker: core.tracker, lastIndex: 7)
        try changer.simple([Self.add(4)])
        let pr = changer.progress[4]!
        #expect(pr.next == 7)
        #expect(pr.match == 0)
        #expect(pr.recentActive)
        #expect(pr.state == .probe)
    }

    @Test func restoringAJointConfStateRebuildsBothHalves() throws {
        let state = ConfState(voters: [1, 2, 4], votersOutgoing: [1, 2, 3], learners: [5], autoLeave: true)
        let changer = try ConfChanger.restore(state, tracker: ProgressTracker(maxInflight: 4, maxInflightBytes: 0), lastIndex: 10)
        #expect(changer.config.confState == state)
        #expect(changer.progress.keys.sorted() == [1, 2, 3, 4, 5])
    }

    @Test func restoringAConfStateWithLearnersNextKeepsThemAsOutgoingVoters() throws {
        let state = ConfState(voters: [1, 2], votersOutgoing: [1, 2, 3], learnersNext: [3], autoLeave: false)
        let changer = try ConfChanger.restore(state, tracker: ProgressTracker(maxInflight: 4, maxInflightBytes: 0), lastIndex: 10)
        #expect(changer.config.confState == state)
        #expect(changer.progress[3]?.isLearner == false)
    }
}
