import EtcdProto
import Lease

/// What the leader proposes on its own about leases, each tick: the revocation of expired
/// leases (at most 1,000 a second, as etcd) and, every 500 ms, a checkpoint of the leases
/// renewed since the last, so followers know what a keep-alive renewed.
struct LeaseDuties {
    static let checkpointInterval = Duration.milliseconds(500)
    /// etcd's cap on revocations proposed per second.
    static let revocationsPerSecond = 1_000

    private var lastCheckpoint: ContinuousClock.Instant

    init(now: ContinuousClock.Instant) {
        lastCheckpoint = now
    }

    /// The requests to propose at `now`, a tick of `tickInterval` after the last; none unless
    /// `lessor` is the leader's (primary).
    mutating func due(lessor: Lessor, now: ContinuousClock.Instant, tickInterval: Duration) -> [WriteRequest] {
        guard lessor.isPrimary else { return [] }
        let perTick = max(1, Int((tickInterval * Self.revocationsPerSecond) / .seconds(1)))
        var requests: [WriteRequest] = lessor.expired(now: now, limit: perTick).map { id in
            var revoke = Etcdserverpb_LeaseRevokeRequest()
            revoke.id = id
            return .leaseRevoke(revoke)
        }
        if now - lastCheckpoint >= Self.checkpointInterval {
            lastCheckpoint = now
            let renewals = lessor.takeRenewals(now: now)
            if !renewals.isEmpty {
                var checkpoint = Etcdserverpb_LeaseCheckpointRequest()
                checkpoint.checkpoints = renewals.map { renewal in
                    var entry = Etcdserverpb_LeaseCheckpoint()
                    entry.id = renewal.id
                    entry.remainingTtl = renewal.milliseconds
                    return entry
                }
                requests.append(.leaseCheckpoint(checkpoint))
            }
        }
        return requests
    }
}
