import HeapModule
import Backend
import Locking
import Synchronization

/// One member's leases (etcd's lessor): which exist, with their granted TTL and the keys
/// attached to them, and when each expires.
///
/// What Raft applies (grants, revocations, attachments, checkpoints) changes every member
/// alike. Expiry times are local: the leader's are authoritative (keep-alives renew them and
/// only the leader finds expired leases, which it revokes through Raft); a follower keeps an
/// estimate, counting down from the last grant or checkpoint it applied. The leader's
/// renewals reach followers in batched checkpoints (beyond etcd, which leaves followers at the
/// full TTL), so a member that becomes leader neither resets leases to their full TTL nor
/// expires any early: it extends every lease by the election timeout, as etcd does.
///
/// Every method takes the current time, so tests drive it with a made-up clock.
package final class Lessor: Sendable {
    /// The largest TTL etcd grants, in seconds.
    package static let maxTTL: Int64 = 9_000_000_000
    /// How long the leader waits before proposing again the revocation of an expired lease
    /// whose first proposal did not apply (etcd's `expiredLeaseRetryInterval`).
    package static let revokeRetry: Duration = .seconds(3)

    package enum LeaseError: Error, Equatable, Sendable {
        case notFound
        case exists
    }

    /// What `LeaseTimeToLive` reports.
    package struct TimeToLive: Equatable, Sendable {
        package var grantedTTL: Int64
        /// Time left before expiry (never negative).
        package var remaining: Duration
        /// The attached keys, in order.
        package var keys: [[UInt8]]
    }

    /// The shortest TTL granted, in seconds: a shorter request is raised to it.
    package let minTTL: Int64
    private let state = Locked(State())
    private let renewals = Atomic<UInt64>(0)

    /// Keep-alives this member renewed as leader (etcd's `etcd_debugging_lease_renewed_total`).
    package var renewalCount: UInt64 { renewals.load(ordering: .relaxed) }

    package init(minTTL: Int64) {
        self.minTTL = minTTL
    }

    /// etcd's minimum TTL for an election timeout: one and a half election timeouts, rounded
    /// up to whole seconds, so a lease outlives a leader change.
    package static func minTTL(electionTimeout: Duration) -> Int64 {
        let milliseconds = electionTimeout.components.seconds * 1000 + electionTimeout.components.attoseconds / 1_000_000_000_000_000
        return (milliseconds * 3 / 2 + 999) / 1000
    }

    // MARK: Applied through Raft (every member alike)

    /// Grants lease `id` for `ttl` seconds (raised to the minimum); returns the TTL granted.
    package func grant(id: Int64, ttl: Int64, now: ContinuousClock.Instant) throws(LeaseError) -> Int64 {
        try state.withLock { state throws(LeaseError) -> Int64 in
            guard state.leases[id] == nil else { throw .exists }
            let granted = max(ttl, minTTL)
            state.set(id, Lease(ttl: granted, expiry: now + .seconds(granted), keys: []))
            return granted
        }
    }

    /// Removes lease `id`; returns the keys that were attached (in order), for the caller to
    /// delete. Throws when there is no such lease.
    package func revoke(id: Int64) throws(LeaseError) -> [[UInt8]] {
        try state.withLock { state throws(LeaseError) -> [[UInt8]] in
            guard let lease = state.leases.removeValue(forKey: id) else { throw .notFound }
            for key in lease.keys { state.attachments[key] = nil }
            state.revoking[id] = nil
            state.renewed.remove(id)
            return lease.keys.sorted { $0.lexicographicallyPrecedes($1) }
        }
    }

    package func contains(_ id: Int64) -> Bool {
        state.withLock { $0.leases[id] != nil }
    }

    /// The keys attached to lease `id`, in order (empty for an unknown lease).
    package func keys(of id: Int64) -> [[UInt8]] {
        state.withLock { ($0.leases[id]?.keys ?? []).sorted { $0.lexicographicallyPrecedes($1) } }
    }

    /// Attaches `key` to lease `id` (a put with the lease). Unknown leases are ignored.
    package func attach(_ key: [UInt8], to id: Int64) {
        state.withLock { $0.attach(key, to: id) }
    }

    /// Detaches `key` from lease `id` (the key was deleted or put with another lease).
    package func detach(_ key: [UInt8], from id: Int64) {
        state.withLock { state in
            guard state.leases[id]?.keys.remove(key) != nil else { return }
            state.attachments[key] = nil
        }
    }

    /// The lease `key` is attached to, 0 for none: what its current record says, known
    /// without reading the record (a put must detach its key from the lease it had).
    package func lease(attachedTo key: [UInt8]) -> Int64 {
        state.withLock { $0.attachments[key] ?? 0 }
    }

    /// Applies a checkpoint: each lease had this many milliseconds left when the leader took
    /// it. Followers count down from now; the leader keeps its own, exact expiry.
    package func checkpoint(_ remaining: [(id: Int64, milliseconds: Int64)], now: ContinuousClock.Instant) {
        state.withLock { state in
            guard !state.primary else { return }
            for (id, milliseconds) in remaining where state.leases[id] != nil {
                state.leases[id]!.expiry = now + .milliseconds(milliseconds)
                state.reschedule(id)
            }
        }
    }

    // MARK: The leader

    /// Renews lease `id` (a keep-alive) on the leader; returns its TTL. A lease whose
    /// revocation was already proposed (it expired) is not found, as in etcd: renewing it
    /// now would be undone when the revocation applies.
    package func renew(id: Int64, now: ContinuousClock.Instant) throws(LeaseError) -> Int64 {
        let ttl = try state.withLock { state throws(LeaseError) -> Int64 in
            guard let lease = state.leases[id], state.revoking[id] == nil else { throw .notFound }
            state.leases[id]!.expiry = now + .seconds(lease.ttl)
            state.revoking[id] = nil
            state.renewed.insert(id)
            state.reschedule(id)
            return lease.ttl
        }
        renewals.add(1, ordering: .relaxed)
        return ttl
    }

    /// This member became leader: it now decides expiry. Every lease gets `extend` (the
    /// election timeout) beyond what this member knew of it, so a client has time to reach
    /// the new leader with its keep-alive.
    package func promote(extend: Duration, now: ContinuousClock.Instant) {
        state.withLock { state in
            state.primary = true
            state.revoking = [:]
            for id in state.leases.keys {
                state.leases[id]!.expiry = max(state.leases[id]!.expiry, now) + extend
            }
            state.rebuildHeap()
        }
    }

    /// This member is no longer leader.
    package func demote() {
        state.withLock { state in
            state.primary = false
            state.renewed = []
            state.revoking = [:]
        }
    }

    package var isPrimary: Bool { state.withLock { $0.primary } }

    /// On the leader: up to `limit` expired leases to revoke. Each is returned again after
    /// ``revokeRetry`` if it is still there (its revocation was lost).
    package func expired(now: ContinuousClock.Instant, limit: Int) -> [Int64] {
        state.withLock { state in
            guard state.primary else { return [] }
            var found: [Int64] = []
            while found.count < limit, let next = state.heap.min, next.instant <= now {
                _ = state.heap.popMin()
                guard let lease = state.leases[next.id] else { continue }
                let due = state.revoking[next.id] ?? lease.expiry
                guard due == next.instant else { continue }  // superseded
                found.append(next.id)
                let retry = now + Self.revokeRetry
                state.revoking[next.id] = retry
                state.heap.insert(Deadline(instant: retry, id: next.id))
            }
            return found
        }
    }

    /// On the leader: the leases renewed since the last call, with the milliseconds they have
    /// left, for a checkpoint that tells the followers.
    package func takeRenewals(now: ContinuousClock.Instant) -> [(id: Int64, milliseconds: Int64)] {
        state.withLock { state in
            defer { state.renewed = [] }
            return state.renewed.sorted().compactMap { id in
                state.leases[id].map { (id, Self.milliseconds(max($0.expiry - now, .zero))) }
            }
        }
    }

    // MARK: Reads

    /// `LeaseTimeToLive` for lease `id`: exact on the leader, this member's estimate elsewhere.
    package func timeToLive(id: Int64, now: ContinuousClock.Instant) -> TimeToLive? {
        state.withLock { state in
            state.leases[id].map { lease in
                TimeToLive(
                    grantedTTL: lease.ttl, remaining: max(lease.expiry - now, .zero),
                    keys: lease.keys.sorted { $0.lexicographicallyPrecedes($1) })
            }
        }
    }

    /// Every lease ID, in order.
    package var ids: [Int64] { state.withLock { $0.leases.keys.sorted() } }

    /// The backend record of lease `id` as of now (its countdown), nil when there is none.
    package func record(of id: Int64, now: ContinuousClock.Instant) -> SQLiteBackend.LeaseRow? {
        state.withLock { state in
            state.leases[id].map {
                SQLiteBackend.LeaseRow(id: id, ttl: $0.ttl, remainingMilliseconds: Self.milliseconds(max($0.expiry - now, .zero)))
            }
        }
    }

    // MARK: Restart

    /// Restores leases from the backend, counting down from now, and their attached keys.
    package func restore(_ records: [SQLiteBackend.LeaseRow], attachments: [(key: [UInt8], lease: Int64)], now: ContinuousClock.Instant) {
        state.withLock { state in
            state = State()
            for record in records {
                let left: Duration = record.remainingMilliseconds.map { .milliseconds($0) } ?? .seconds(record.ttl)
                state.leases[record.id] = Lease(ttl: record.ttl, expiry: now + left, keys: [])
            }
            for (key, id) in attachments { state.attach(key, to: id) }
            state.rebuildHeap()
        }
    }

    /// `duration` in whole milliseconds.
    package static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }
}

private struct Lease {
    var ttl: Int64
    /// On the leader, when it expires; elsewhere, the estimate.
    var expiry: ContinuousClock.Instant
    var keys: Set<[UInt8]>
}

/// A lease's place in the expiry queue. Entries are never removed: one whose instant no
/// longer matches its lease is skipped when it comes up.
private struct Deadline: Comparable {
    let instant: ContinuousClock.Instant
    let id: Int64

    static func < (lhs: Deadline, rhs: Deadline) -> Bool {
        (lhs.instant, lhs.id) < (rhs.instant, rhs.id)
    }
}

private struct State {
    var leases: [Int64: Lease] = [:]
    /// The lease of each attached key (the inverse of the leases' key sets).
    var attachments: [[UInt8]: Int64] = [:]
    var heap = Heap<Deadline>()
    var primary = false
    /// Expired leases whose revocation was proposed, with when to propose it again.
    var revoking: [Int64: ContinuousClock.Instant] = [:]
    /// Leases renewed since the last checkpoint was taken.
    var renewed: Set<Int64> = []

    mutating func attach(_ key: [UInt8], to id: Int64) {
        guard leases[id]?.keys.insert(key) != nil else { return }
        attachments[key] = id
    }

    mutating func set(_ id: Int64, _ lease: Lease) {
        leases[id] = lease
        reschedule(id)
    }

    mutating func reschedule(_ id: Int64) {
        guard let lease = leases[id] else { return }
        heap.insert(Deadline(instant: lease.expiry, id: id))
        // Stale entries pile up under constant renewals: rebuild when they dominate.
        if heap.count > 2 * leases.count + 1024 { rebuildHeap() }
    }

    mutating func rebuildHeap() {
        heap = Heap(leases.map { Deadline(instant: revoking[$0.key] ?? $0.value.expiry, id: $0.key) })
    }
}
