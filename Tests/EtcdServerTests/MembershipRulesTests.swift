import Raft
import Testing

@testable import EtcdServer

@Suite("MembershipRules: etcd's checks on membership changes")
struct MembershipRulesTests {
    static let a = Member(id: 1, name: "a", peerURLs: ["http://127.0.0.1:2380"], clientURLs: [])
    static let b = Member(id: 2, name: "b", peerURLs: ["http://127.0.0.1:2381"], clientURLs: [])
    static let c = Member(id: 3, name: "c", peerURLs: ["http://127.0.0.1:2382"], clientURLs: [])
    static let learner = Member(id: 4, name: "l", peerURLs: ["http://127.0.0.1:2383"], clientURLs: [], isLearner: true)

    func rules(_ members: [Member], connected: Set<NodeID> = [1, 2, 3, 4], strict: Bool = true) -> MembershipRules {
        MembershipRules(membership: Membership(members: members), localID: 1, strictReconfigCheck: strict, isConnected: { connected.contains($0) })
    }

    @Test func anAddGetsItsMemberWithSortedURLs() throws {
        let added = try rules([Self.a, Self.b, Self.c]).add(
            peerURLs: ["http://127.0.0.1:2391", "http://127.0.0.1:2390"], isLearner: false, newID: 9).get()
        #expect(added == Member(id: 9, name: "", peerURLs: ["http://127.0.0.1:2390", "http://127.0.0.1:2391"], clientURLs: []))
    }

    @Test(arguments: [
        ([String](), EtcdError.memberBadURLs),
        (["not a url"], .memberBadURLs),
        (["http://127.0.0.1:2381"], .peerURLExists),
    ])
    func anAddWithBadOrUsedURLsIsRefused(_ urls: [String], _ expected: EtcdError) {
        #expect(rules([Self.a, Self.b]).add(peerURLs: urls, isLearner: false, newID: 9) == .failure(expected))
    }

    @Test func oneLearnerAtATimeUnlessMoreAreAllowed() {
        let result = rules([Self.a, Self.learner]).add(peerURLs: ["http://127.0.0.1:2390"], isLearner: true, newID: 9)
        #expect(result == .failure(.tooManyLearners))
        var two = rules([Self.a, Self.learner])
        two.maxLearners = 2
        let second = two.add(peerURLs: ["http://127.0.0.1:2390"], isLearner: true, newID: 9)
        #expect((try? second.get())?.isLearner == true)
        var third = rules([Self.a, Self.learner, Member(id: 9, name: "", peerURLs: ["http://127.0.0.1:2390"], clientURLs: [], isLearner: true)])
        third.maxLearners = 2
        #expect(third.add(peerURLs: ["http://127.0.0.1:2391"], isLearner: true, newID: 10) == .failure(.tooManyLearners))
    }

    @Test func anIDInUseOrRemovedBeforeIsRefused() {
        var membership = Membership(members: [Self.a, Self.b])
        membership.remove(2)
        let checked = MembershipRules(membership: membership, localID: 1, strictReconfigCheck: false, isConnected: { _ in true })
        #expect(checked.add(peerURLs: ["http://127.0.0.1:2390"], isLearner: false, newID: 2) == .failure(.memberExists))
        #expect(checked.add(peerURLs: ["http://127.0.0.1:2390"], isLearner: false, newID: 1) == .failure(.memberExists))
    }

    @Test func strictReconfigurationCountsStartedVoters() {
        // Three voters, one not connected: adding a fourth needs 3 started of 4; there are 2.
        let oneDown = rules([Self.a, Self.b, Self.c], connected: [2])
        #expect(oneDown.add(peerURLs: ["http://127.0.0.1:2390"], isLearner: false, newID: 9) == .failure(.notEnoughStartedMembers))
        // A learner needs no quorum check.
        #expect((try? oneDown.add(peerURLs: ["http://127.0.0.1:2390"], isLearner: true, newID: 9).get())?.isLearner == true)
        // Removing the one connected voter leaves 1 started of 2.
        #expect(oneDown.remove(2) == .failure(.notEnoughStartedMembers))
        // Removing the one down leaves 2 started of 2.
        #expect(oneDown.remove(3) == .success(Self.c))
        // etcd's exception: one started voter alone may add a second (rebuilding a cluster).
        #expect((try? rules([Self.a], connected: []).add(peerURLs: ["http://127.0.0.1:2390"], isLearner: false, newID: 9).get())?.id == 9)
        // Without the check, anything goes.
        let lax = rules([Self.a, Self.b, Self.c], connected: [], strict: false)
        #expect(lax.remove(2) == .success(Self.b))
    }

    @Test func removingALearnerNeedsNoQuorumCheck() {
        #expect(rules([Self.a, Self.b, Self.learner], connected: []).remove(4) == .success(Self.learner))
        #expect(rules([Self.a]).remove(9) == .failure(.memberNotFound))
    }

    @Test func updatesNeedAMemberAndFreeURLs() {
        let checked = rules([Self.a, Self.b])
        #expect(checked.update(9, peerURLs: ["http://127.0.0.1:2390"]) == .memberNotFound)
        #expect(checked.update(1, peerURLs: ["http://127.0.0.1:2381"]) == .peerURLExists)
        // Its own URLs are not "in use".
        #expect(checked.update(1, peerURLs: ["http://127.0.0.1:2380"]) == nil)
        #expect(checked.update(1, peerURLs: []) == .memberBadURLs)
    }

    @Test func promotionNeedsALearnerThatCaughtUp() {
        let checked = rules([Self.a, Self.b, Self.learner])
        #expect(checked.learner(9) == .failure(.memberNotFound))
        #expect(checked.learner(2) == .failure(.memberNotLearner))
        #expect(checked.learner(4) == .success(Self.learner))
        #expect(checked.promotion(caughtUp: false) == .learnerNotReady)
        #expect(checked.promotion(caughtUp: true) == nil)
        #expect(rules([Self.a, Self.b, Self.learner], connected: []).promotion(caughtUp: true) == .notEnoughStartedMembers)
    }

    @Test(arguments: [(UInt64(90), UInt64(100), true), (89, 100, false), (0, 0, true), (0, 1, false)])
    func caughtUpMeansNinetyPercent(_ learner: UInt64, _ leader: UInt64, _ expected: Bool) {
        #expect(MembershipRules.isCaughtUp(learnerMatch: learner, leaderMatch: leader) == expected)
    }

    @Test func staleChangesAreToldFromTheConfiguration() {
        var conf = ConfState()
        conf.voters = [1, 2]
        conf.learners = [4]
        func change(_ kind: ConfChangeSingle.Kind, _ node: NodeID) -> ConfChange { ConfChange(changes: [ConfChangeSingle(kind, node)]) }
        #expect(MembershipRules.staleness(of: change(.addNode, 2), in: conf) == .memberExists)
        #expect(MembershipRules.staleness(of: change(.addLearner, 4), in: conf) == .memberExists)
        #expect(MembershipRules.staleness(of: change(.addLearner, 5), in: conf) == .tooManyLearners)
        #expect(MembershipRules.staleness(of: change(.addLearner, 5), in: conf, maxLearners: 2) == nil)
        #expect(MembershipRules.staleness(of: change(.removeNode, 9), in: conf) == .memberNotFound)
        // Promoting the learner, adding a new voter and removing a member are current.
        #expect(MembershipRules.staleness(of: change(.addNode, 4), in: conf) == nil)
        #expect(MembershipRules.staleness(of: change(.addNode, 3), in: conf) == nil)
        #expect(MembershipRules.staleness(of: change(.removeNode, 4), in: conf) == nil)
    }
}
