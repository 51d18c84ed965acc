import EtcdProto
import Lease
import Testing

@testable import EtcdServer

@Suite("LeaseDuties: what the leader proposes about leases")
struct LeaseDutiesTests {
    let start = ContinuousClock.now

    func leaderLessor(leases: [Int64], ttl: Int64) throws -> Lessor {
        let lessor = Lessor(minTTL: 1)
        for id in leases { _ = try lessor.grant(id: id, ttl: ttl, now: start) }
        lessor.promote(extend: .zero, now: start)
        return lessor
    }

    func revoked(_ requests: [WriteRequest]) -> [Int64] {
        requests.compactMap { if case .leaseRevoke(let revoke) = $0 { revoke.id } else { nil } }
    }

    @Test func aFollowerProposesNothing() throws {
        let lessor = Lessor(minTTL: 1)
        _ = try lessor.grant(id: 1, ttl: 1, now: start)
        var duties = LeaseDuties(now: start)
        #expect(duties.due(lessor: lessor, now: start + .seconds(10), tickInterval: .milliseconds(100)).isEmpty)
    }

    @Test func expiredLeasesAreRevokedAtAThousandASecond() throws {
        let lessor = try leaderLessor(leases: Array(1...150), ttl: 1)
        var duties = LeaseDuties(now: start + .seconds(2))
        // A 100 ms tick may revoke 100.
        let first = duties.due(lessor: lessor, now: start + .seconds(2), tickInterval: .milliseconds(100))
        #expect(revoked(first) == Array(1...100))
        let second = duties.due(lessor: lessor, now: start + .seconds(2), tickInterval: .milliseconds(100))
        #expect(revoked(second) == Array(101...150))
        // A tick shorter than a millisecond still revokes one.
        let third = try leaderLessor(leases: [7], ttl: 1)
        #expect(revoked(duties.due(lessor: third, now: start + .seconds(2), tickInterval: .microseconds(10))) == [7])
    }

    @Test func renewalsAreCheckpointedEveryHalfSecond() throws {
        let lessor = try leaderLessor(leases: [1, 2], ttl: 60)
        var duties = LeaseDuties(now: start)
        _ = try lessor.renew(id: 2, now: start + .milliseconds(100))
        #expect(duties.due(lessor: lessor, now: start + .milliseconds(499), tickInterval: .milliseconds(100)).isEmpty)
        let requests = duties.due(lessor: lessor, now: start + .milliseconds(500), tickInterval: .milliseconds(100))
        guard case .leaseCheckpoint(let checkpoint) = requests.first, requests.count == 1 else {
            Issue.record("expected one checkpoint, got \(requests)")
            return
        }
        #expect(checkpoint.checkpoints.map(\.id) == [2])
        #expect(checkpoint.checkpoints.map(\.remainingTtl) == [59_600])
        // Nothing renewed since: no checkpoint, and the next is due 500 ms later.
        _ = try lessor.renew(id: 1, now: start + .milliseconds(600))
        #expect(duties.due(lessor: lessor, now: start + .milliseconds(900), tickInterval: .milliseconds(100)).isEmpty)
        #expect(duties.due(lessor: lessor, now: start + .milliseconds(1000), tickInterval: .milliseconds(100)).count == 1)
    }
}
