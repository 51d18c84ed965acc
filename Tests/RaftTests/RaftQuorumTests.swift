import Testing

@testable import Raft

@Suite("Quorum arithmetic")
struct RaftQuorumTests {
    static func committed(_ config: MajorityConfig, _ acks: [NodeID: UInt64]) -> UInt64 {
        config.committedIndex { acks[$0] }
    }

    @Test func committedIndexForOneToFiveVoters() {
        #expect(Self.committed(MajorityConfig([1]), [1: 5]) == 5)
        #expect(Self.committed(MajorityConfig([1, 2]), [1: 5, 2: 3]) == 3)
        #expect(Self.committed(MajorityConfig([1, 2, 3]), [1: 5, 2: 3, 3: 1]) == 3)
        #expect(Self.committed(MajorityConfig([1, 2, 3, 4]), [1: 5, 2: 4, 3: 3, 4: 1]) == 3)
        #expect(Self.committed(MajorityConfig([1, 2, 3, 4, 5]), [1: 9, 2: 7, 3: 5, 4: 3, 5: 1]) == 5)
    }

    @Test func missingAcknowledgementsCountAsZero() {
        #expect(Self.committed(MajorityConfig([1, 2, 3]), [1: 5]) == 0)
        #expect(Self.committed(MajorityConfig([1, 2, 3]), [1: 5, 2: 4]) == 4)
        #expect(Self.committed(MajorityConfig([1, 2, 3, 4, 5]), [1: 5, 2: 5, 3: 5]) == 5)
        #expect(Self.committed(MajorityConfig([1, 2, 3, 4, 5]), [1: 5, 2: 5]) == 0)
    }

    @Test func emptyMajorityCommitsEverythingAndWinsEveryVote() {
        #expect(Self.committed(MajorityConfig(), [:]) == .max)
        #expect(MajorityConfig().voteResult([:]) == .won)
    }

    @Test func voteResultsForOneToFiveVoters() {
        #expect(MajorityConfig([1]).voteResult([:]) == .pending)
        #expect(MajorityConfig([1]).voteResult([1: true]) == .won)
        #expect(MajorityConfig([1]).voteResult([1: false]) == .lost)
        #expect(MajorityConfig([1, 2]).voteResult([1: true]) == .pending)
        #expect(MajorityConfig([1, 2]).voteResult([1: true, 2: false]) == .lost)
        #expect(MajorityConfig([1, 2]).voteResult([1: true, 2: true]) == .won)
        #expect(MajorityConfig([1, 2, 3]).voteResult([1: true, 2: false]) == .pending)
        #expect(MajorityConfig([1, 2, 3]).voteResult([1: true, 3: true]) == .won)
        #expect(MajorityConfig([1, 2, 3]).voteResult([2: false, 3: false]) == .lost)
        #expect(MajorityConfig([1, 2, 3, 4]).voteResult([1: true, 2: true]) == .pending)
        #expect(MajorityConfig([1, 2, 3, 4]).voteResult([1: true, 2: true, 3: true]) == .won)
        #expect(MajorityConfig([1, 2, 3, 4]).voteResult([1: false, 2: false]) == .lost)
        #expect(MajorityConfig([1, 2, 3, 4, 5]).voteResult([1: true, 2: true, 3: false, 4: false]) == .pending)
        #expect(MajorityConfig([1, 2, 3, 4, 5]).voteResult([1: true, 2: true, 3: true]) == .won)
        #expect(MajorityConfig([1, 2, 3, 4, 5]).voteResult([1: false, 2: false, 3: false]) == .lost)
    }

    @Test func votesFromNonMembersAreIgnored() {
        #expect(MajorityConfig([1, 2, 3]).voteResult([1: true, 7: true, 8: true]) == .pending)
    }

    @Test func jointCommittedIndexIsTheMinimumOfBothHalves() {
        let joint = JointConfig(incoming: MajorityConfig([1, 2, 3]), outgoing: MajorityConfig([3, 4, 5]))
        let acks: [NodeID: UInt64] = [1: 9, 2: 8, 3: 7, 4: 2, 5: 1]
        let c1 = joint.committedIndex { acks[$0] }
        #expect(c1 == 2)
        let acks2: [NodeID: UInt64] = [1: 1, 2: 1, 3: 7, 4: 6, 5: 5]
        let c2 = joint.committedIndex { acks2[$0] }
        #expect(c2 == 1)
    }

    @Test func jointWithEmptyOutgoingBehavesLikeIncoming() {
        let joint = JointConfig(incoming: MajorityConfig([1, 2, 3]))
        #expect(!joint.isJoint)
        let acks: [NodeID: UInt64] = [1: 9, 2: 8, 3: 7]
        let c = joint.committedIndex { acks[$0] }
        #expect(c == 8)
        #expect(joint.voteResult([1: true, 2: true]) == .won)
    }

    @Test func jointVoteNeedsBothHalves() {
        let joint = JointConfig(incoming: MajorityConfig([1, 2, 3]), outgoing: MajorityConfig([3, 4, 5]))
        #expect(joint.isJoint)
        #expect(joint.allVoters == [1, 2, 3, 4, 5])
        #expect(joint.voteResult([1: true, 2: true]) == .pending)
        #expect(joint.voteResult([1: true, 2: true, 4: true, 5: true]) == .won)
        #expect(joint.voteResult([1: true, 3: true, 4: true]) == .won)
        #expect(joint.voteResult([1: true, 2: true, 4: false, 5: false]) == .lost)
        #expect(joint.voteResult([1: false, 2: false, 4: true, 5: true]) == .lost)
    }
}
