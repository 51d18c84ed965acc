import Raft

/// The writes and membership changes proposed on this member and not yet applied: who waits
/// for each, under which request ID and until when, and what Raft could not take yet.
///
/// Pure bookkeeping for ``MemberLoop``, which tells it what happened (proposed, applied,
/// refused, time passed) and carries out what it hands back (complete a waiter, offer entries
/// again). Every request ID this member puts in an entry comes from ``nextRequestID()``, so the
/// proposer and request ID of a committed entry name at most one waiter.
struct ProposalTracker {
    typealias WriteCompletion = @Sendable (Result<WriteResponse, EtcdError>) -> Void
    typealias MembershipCompletion = @Sendable (EtcdServer.MembershipResult) -> Void

    struct Waiter<Completion> {
        var completion: Completion
        var deadline: ContinuousClock.Instant
    }

    /// An encoded entry and the request ID it carries.
    typealias Pending = (id: UInt64, data: [UInt8])

    private var nextID: UInt64
    private var writes: [UInt64: Waiter<WriteCompletion>] = [:]
    private var membershipChanges: [UInt64: Waiter<MembershipCompletion>] = [:]
    /// Proposals the node refused for want of a leader: offered again once one is known.
    private var unproposed: [Pending] = []
    /// Proposals forwarded by followers that could not be taken yet, with when they expire.
    private var deferredForwards: [(message: Message, expires: ContinuousClock.Instant)] = []

    /// `firstRequestID` is random in a running member, so IDs of an earlier run never match.
    init(firstRequestID: UInt64) {
        nextID = firstRequestID
    }

    /// A request ID not used before by this member (also for entries nobody waits for).
    mutating func nextRequestID() -> UInt64 {
        defer { nextID &+= 1 }
        return nextID
    }

    /// Registers a write's waiter under a new request ID.
    mutating func waitForWrite(_ completion: @escaping WriteCompletion, deadline: ContinuousClock.Instant) -> UInt64 {
        let id = nextRequestID()
        writes[id] = Waiter(completion: completion, deadline: deadline)
        return id
    }

    /// Registers a membership change's waiter under a new request ID.
    mutating func waitForMembershipChange(
        _ completion: @escaping MembershipCompletion, deadline: ContinuousClock.Instant
    ) -> UInt64 {
        let id = nextRequestID()
        membershipChanges[id] = Waiter(completion: completion, deadline: deadline)
        return id
    }

    /// The waiter of write `id`, which is applied; nil if nobody waits (any more).
    mutating func appliedWrite(_ id: UInt64) -> Waiter<WriteCompletion>? {
        writes.removeValue(forKey: id)
    }

    /// The waiter of membership change `id`, which is applied or refused.
    mutating func endedMembershipChange(_ id: UInt64) -> Waiter<MembershipCompletion>? {
        membershipChanges.removeValue(forKey: id)
    }

    var hasMembershipChangeInFlight: Bool { !membershipChanges.isEmpty }

    /// What to do with proposals the node refused with `error`: those refused for want of a
    /// leader (or during a leadership transfer) wait for one; the rest fail, and their waiters
    /// are returned with the error to complete them with.
    mutating func refused(_ batch: [Pending], because error: RaftError) -> [(Waiter<WriteCompletion>, EtcdError)] {
        let failure: EtcdError
        switch error {
        case .proposalDropped(.noLeader), .proposalDropped(.leadershipTransferInProgress):
            unproposed += batch
            return []
        case .proposalDropped(.uncommittedSizeLimit): failure = .tooManyRequests
        default: failure = .stopped
        }
        return batch.compactMap { pending in writes.removeValue(forKey: pending.id).map { ($0, failure) } }
    }

    /// Proposals refused earlier for want of a leader, to offer again now that there is one.
    mutating func takeUnproposed() -> [Pending] {
        defer { unproposed = [] }
        return unproposed
    }

    /// Keeps a follower's forwarded proposal that this member cannot take now (a transfer is
    /// under way, or it just lost its leadership), to offer again until `expires`.
    mutating func deferForwarded(_ message: Message, expires: ContinuousClock.Instant) {
        deferredForwards.append((message, expires))
    }

    /// The forwarded proposals still worth offering at `now`; expired ones are dropped.
    mutating func takeDeferredForwards(now: ContinuousClock.Instant) -> [(message: Message, expires: ContinuousClock.Instant)] {
        defer { deferredForwards = [] }
        return deferredForwards.filter { $0.expires > now }
    }

    var hasDeferredForwards: Bool { !deferredForwards.isEmpty }

    /// Removes the waiters whose deadline is at or before `now`, and the unproposed entries
    /// nobody waits for any more; the caller fails them.
    mutating func expire(now: ContinuousClock.Instant)
        -> (writes: [Waiter<WriteCompletion>], membershipChanges: [Waiter<MembershipCompletion>])
    {
        let expiredWrites = writes.filter { $0.value.deadline <= now }
        for id in expiredWrites.keys { writes[id] = nil }
        unproposed.removeAll { writes[$0.id] == nil }
        let expiredChanges = membershipChanges.filter { $0.value.deadline <= now }
        for id in expiredChanges.keys { membershipChanges[id] = nil }
        return (Array(expiredWrites.values), Array(expiredChanges.values))
    }

    /// Every waiter, removed (the member is stopping).
    mutating func removeAll() -> (writes: [Waiter<WriteCompletion>], membershipChanges: [Waiter<MembershipCompletion>]) {
        defer {
            writes = [:]
            membershipChanges = [:]
            unproposed = []
            deferredForwards = []
        }
        return (Array(writes.values), Array(membershipChanges.values))
    }
}
