import Raft

/// Linearizable reads waiting on this member (Raft's ReadIndex): those waiting for a read
/// index, in batches that share one confirmation round, and those whose index is known and
/// must first be applied.
///
/// Pure bookkeeping for ``MemberLoop``: it says which context to ask Raft a read index for,
/// and hands back the reads that may be served (or have failed) as answers, applies and time
/// arrive.
struct ReadIndexQueue {
    typealias Read = EtcdServer.ReadWaiter

    private struct Batch {
        var reads: [Read]
        var requestedAtTick: UInt64
    }

    /// Reads waiting for their read index, by the context their request carried.
    private var batches: [UInt64: Batch] = [:]
    /// Reads that know their read index and wait for it to be applied.
    private var awaitingApply: [(index: UInt64, reads: [Read])] = []
    private var nextContext: UInt64

    /// `firstContext` is random in a running member, so an answer meant for an earlier run of
    /// this member (or for another member) never matches a read waiting now.
    init(firstContext: UInt64) {
        nextContext = firstContext
    }

    /// Queues `reads` as one batch asked for at `tick`; the context to ask a read index for.
    mutating func enqueue(_ reads: [Read], atTick tick: UInt64) -> [UInt8]? {
        guard !reads.isEmpty else { return nil }
        let context = nextContext
        nextContext &+= 1
        batches[context] = Batch(reads: reads, requestedAtTick: tick)
        return BigEndian.bytes(context)
    }

    /// The contexts asked for at least `age` ticks before `tick` (the request or its answer was
    /// lost: no leader then, a leader change, a dropped message), marked as asked again now.
    mutating func contextsToRetry(atTick tick: UInt64, olderThan age: UInt64 = 0) -> [[UInt8]] {
        var retry: [[UInt8]] = []
        for (context, batch) in batches where tick - batch.requestedAtTick >= age {
            batches[context]!.requestedAtTick = tick
            retry.append(BigEndian.bytes(context))
        }
        return retry
    }

    /// Takes Raft's answers: the reads now servable (their index is applied); the others wait
    /// for ``applied(through:)``. Answers for no waiting batch are ignored.
    mutating func answered(_ states: [ReadState], appliedIndex: UInt64) -> [Read] {
        var ready: [Read] = []
        for state in states {
            guard let context = BigEndian.number(state.context), let batch = batches.removeValue(forKey: context) else { continue }
            ready += awaitApply(batch.reads, through: state.index, appliedIndex: appliedIndex)
        }
        return ready
    }

    /// Queues `reads` until `index` is applied; returns them at once if it already is.
    mutating func awaitApply(_ reads: [Read], through index: UInt64, appliedIndex: UInt64) -> [Read] {
        guard !reads.isEmpty else { return [] }
        if index <= appliedIndex { return reads }
        awaitingApply.append((index, reads))
        return []
    }

    /// The reads whose read index is now applied.
    mutating func applied(through appliedIndex: UInt64) -> [Read] {
        guard !awaitingApply.isEmpty else { return [] }
        let (ready, waiting) = awaitingApply.partitioned { $0.index <= appliedIndex }
        awaitingApply = waiting
        return ready.flatMap(\.reads)
    }

    /// Removes the reads whose deadline is at or before `now`: those still without a read
    /// index (no leader confirmed one) and those waiting for an apply.
    mutating func expire(now: ContinuousClock.Instant) -> (unanswered: [Read], unapplied: [Read]) {
        var unanswered: [Read] = []
        for (context, batch) in batches {
            let (expired, live) = batch.reads.partitioned { $0.deadline <= now }
            unanswered += expired
            batches[context] = live.isEmpty ? nil : Batch(reads: live, requestedAtTick: batch.requestedAtTick)
        }
        var unapplied: [Read] = []
        awaitingApply = awaitingApply.compactMap { index, reads in
            let (expired, live) = reads.partitioned { $0.deadline <= now }
            unapplied += expired
            return live.isEmpty ? nil : (index, live)
        }
        return (unanswered, unapplied)
    }

    /// Every read, removed (the member is stopping).
    mutating func removeAll() -> [Read] {
        defer {
            batches = [:]
            awaitingApply = []
        }
        return batches.values.flatMap(\.reads) + awaitingApply.flatMap(\.reads)
    }
}
