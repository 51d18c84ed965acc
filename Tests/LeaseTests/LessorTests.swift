import Backend
import MVCC
import Testing

@testable import Lease

/// The lessor with a made-up clock: every instant is `start` plus some seconds.
@Suite("Lessor")
struct LessorTests {
    let start = ContinuousClock.now
    func at(_ seconds: Double) -> ContinuousClock.Instant { start + .milliseconds(Int64(seconds * 1000)) }

    @Test func theMinimumTTLIsOneAndAHalfElectionTimeoutsRoundedUp() {
        #expect(Lessor.minTTL(electionTimeout: .milliseconds(1000)) == 2)
        #expect(Lessor.minTTL(electionTimeout: .milliseconds(500)) == 1)
        #expect(Lessor.minTTL(electionTimeout: .milliseconds(2000)) == 3)
        #expect(Lessor.minTTL(electionTimeout: .milliseconds(3000)) == 5)
    }

    @Test func grantsRaiseShortTTLsAndRefuseDuplicatesAndRevokeReturnsTheKeysInOrder() throws {
        let lessor = Lessor(minTTL: 2)
        #expect(try lessor.grant(id: 1, ttl: 1, now: at(0)) == 2)
        #expect(try lessor.grant(id: 2, ttl: 60, now: at(0)) == 60)
        #expect(throws: Lessor.LeaseError.exists) { try lessor.grant(id: 2, ttl: 5, now: at(0)) }
        lessor.attach(Array("b".utf8), to: 2)
        lessor.attach(Array("a".utf8), to: 2)
        lessor.attach(Array("c".utf8), to: 2)
        lessor.detach(Array("c".utf8), from: 2)
        lessor.attach(Array("x".utf8), to: 99)  // unknown lease: ignored
        #expect(lessor.keys(of: 2) == [Array("a".utf8), Array("b".utf8)])
        // Each attached key knows its lease; detached, unattached or refused keys have none.
        #expect(lessor.lease(attachedTo: Array("a".utf8)) == 2)
        #expect(lessor.lease(attachedTo: Array("c".utf8)) == 0)
        #expect(lessor.lease(attachedTo: Array("x".utf8)) == 0)
        #expect(lessor.ids == [1, 2])
        #expect(try lessor.revoke(id: 2) == [Array("a".utf8), Array("b".utf8)])
        #expect(lessor.lease(attachedTo: Array("a".utf8)) == 0)
        #expect(throws: Lessor.LeaseError.notFound) { try lessor.revoke(id: 2) }
        #expect(!lessor.contains(2))
        #expect(lessor.ids == [1])
    }

    @Test func onlyTheLeaderFindsExpiredLeasesInExpiryOrderAndRetriesLostRevocations() throws {
        let lessor = Lessor(minTTL: 1)
        for (id, ttl) in [(1, 20), (2, 5), (3, 10)] as [(Int64, Int64)] { _ = try lessor.grant(id: id, ttl: ttl, now: at(0)) }
        #expect(lessor.expired(now: at(100), limit: 10) == [])  // a follower never expires leases
        lessor.promote(extend: .zero, now: at(0))
        #expect(lessor.expired(now: at(4.9), limit: 10) == [])
        #expect(lessor.expired(now: at(12), limit: 10) == [2, 3])
        // Proposed: not again until the retry interval passes.
        #expect(lessor.expired(now: at(14), limit: 10) == [])
        #expect(lessor.expired(now: at(15), limit: 10) == [2, 3])
        // An expired lease whose revocation is under way cannot be renewed (etcd: not found).
        #expect(throws: Lessor.LeaseError.notFound) { try lessor.renew(id: 3, now: at(15)) }
        _ = try lessor.revoke(id: 2)
        _ = try lessor.revoke(id: 3)
        #expect(lessor.expired(now: at(19.9), limit: 10) == [])
        #expect(lessor.expired(now: at(20), limit: 10) == [1])
        #expect(throws: Lessor.LeaseError.notFound) { try lessor.renew(id: 2, now: at(25)) }
    }

    @Test func aRenewalMovesTheExpiry() throws {
        let lessor = Lessor(minTTL: 1)
        _ = try lessor.grant(id: 1, ttl: 10, now: at(0))
        lessor.promote(extend: .zero, now: at(0))
        #expect(try lessor.renew(id: 1, now: at(8)) == 10)
        #expect(lessor.expired(now: at(17.9), limit: 10) == [])
        #expect(lessor.expired(now: at(18), limit: 10) == [1])
    }

    @Test func theLimitBoundsEachCall() throws {
        let lessor = Lessor(minTTL: 1)
        for id in 1...10 { _ = try lessor.grant(id: Int64(id), ttl: Int64(id), now: at(0)) }
        lessor.promote(extend: .zero, now: at(0))
        #expect(lessor.expired(now: at(100), limit: 4) == [1, 2, 3, 4])
        #expect(lessor.expired(now: at(100), limit: 4) == [5, 6, 7, 8])
        #expect(lessor.expired(now: at(100), limit: 4) == [9, 10])
    }

    @Test func aNewLeaderCountsDownFromTheLastCheckpointAndExtendsByTheElectionTimeout() throws {
        let follower = Lessor(minTTL: 1)
        _ = try follower.grant(id: 1, ttl: 60, now: at(0))
        _ = try follower.grant(id: 2, ttl: 60, now: at(0))
        _ = try follower.grant(id: 3, ttl: 5, now: at(0))
        // The old leader renewed lease 2 at 25 s: its checkpoint at 30 s says 55 s were left.
        follower.checkpoint([(id: 2, milliseconds: 55_000)], now: at(30))
        #expect(follower.timeToLive(id: 2, now: at(30))?.remaining == .seconds(55))
        // The leader dies at 31 s; this member leads from 32 s, with a 1 s election timeout.
        follower.promote(extend: .seconds(1), now: at(32))
        // Lease 1 (never renewed) keeps its countdown from the grant, plus 1 s; lease 2 its
        // renewal's; lease 3, already due, gets the 1 s alone.
        #expect(follower.expired(now: at(32.9), limit: 10) == [])
        #expect(follower.expired(now: at(33), limit: 10) == [3])
        _ = try follower.revoke(id: 3)  // its revocation applied
        #expect(follower.expired(now: at(60.9), limit: 10) == [])
        #expect(follower.expired(now: at(61), limit: 10) == [1])
        _ = try follower.revoke(id: 1)
        #expect(follower.expired(now: at(85.9), limit: 10) == [])
        #expect(follower.expired(now: at(86), limit: 10) == [2])
    }

    @Test func theLeaderIgnoresCheckpointsAndHandsOutItsRenewalsOnce() throws {
        let leader = Lessor(minTTL: 1)
        _ = try leader.grant(id: 1, ttl: 10, now: at(0))
        _ = try leader.grant(id: 2, ttl: 10, now: at(0))
        leader.promote(extend: .zero, now: at(0))
        _ = try leader.renew(id: 2, now: at(1))
        let renewals = leader.takeRenewals(now: at(1.5))
        #expect(renewals.map(\.id) == [2])
        #expect(renewals.map(\.milliseconds) == [9500])
        #expect(leader.takeRenewals(now: at(2)).isEmpty)
        leader.checkpoint([(id: 2, milliseconds: 1)], now: at(2))
        #expect(leader.timeToLive(id: 2, now: at(2))?.remaining == .seconds(9))
        leader.demote()
        #expect(leader.expired(now: at(100), limit: 10) == [])
    }

    @Test func timeToLiveAndRecordsReportWhatIsLeft() throws {
        let lessor = Lessor(minTTL: 1)
        _ = try lessor.grant(id: 7, ttl: 30, now: at(0))
        lessor.attach(Array("k".utf8), to: 7)
        #expect(lessor.timeToLive(id: 7, now: at(10.5)) == Lessor.TimeToLive(grantedTTL: 30, remaining: .milliseconds(19_500), keys: [Array("k".utf8)]))
        #expect(lessor.timeToLive(id: 7, now: at(99))?.remaining == .zero)
        #expect(lessor.timeToLive(id: 8, now: at(0)) == nil)
        #expect(lessor.record(of: 7, now: at(10)) == SQLiteBackend.LeaseRow(id: 7, ttl: 30, remainingMilliseconds: 20_000))
    }

    @Test func aRestartRestoresLeasesTheirCountdownsAndKeys() throws {
        let lessor = Lessor(minTTL: 1)
        lessor.restore(
            [SQLiteBackend.LeaseRow(id: 1, ttl: 60, remainingMilliseconds: 15_000), SQLiteBackend.LeaseRow(id: 2, ttl: 30, remainingMilliseconds: nil)],
            attachments: [(Array("a".utf8), 1), (Array("b".utf8), 1), (Array("c".utf8), 3)], now: at(100))
        #expect(lessor.ids == [1, 2])
        #expect(lessor.keys(of: 1) == [Array("a".utf8), Array("b".utf8)])
        #expect(lessor.lease(attachedTo: Array("b".utf8)) == 1)
        #expect(lessor.lease(attachedTo: Array("c".utf8)) == 0)  // its lease is gone
        #expect(lessor.timeToLive(id: 1, now: at(100))?.remaining == .seconds(15))
        #expect(lessor.timeToLive(id: 2, now: at(100))?.remaining == .seconds(30))
    }

    @Test func aHundredThousandLeasesExpireInOrder() throws {
        let lessor = Lessor(minTTL: 1)
        var generator = SystemRandomNumberGenerator()
        var ttls: [Int64: Int64] = [:]
        for id in 1...100_000 {
            let ttl = Int64.random(in: 10...1000, using: &generator)
            ttls[Int64(id)] = ttl
            _ = try lessor.grant(id: Int64(id), ttl: ttl, now: at(0))
        }
        lessor.promote(extend: .zero, now: at(0))
        // A tenth are renewed at 100 s, pushing them 100 s later.
        for id in stride(from: Int64(1), through: 100_000, by: 10) { ttls[id]! += 100; _ = try lessor.renew(id: id, now: at(100)) }
        let due = lessor.expired(now: at(500), limit: .max)
        let expected = ttls.filter { $0.value <= 500 }.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map(\.key)
        #expect(due == expected)
        #expect(lessor.expired(now: at(500), limit: .max).isEmpty)
    }
}
