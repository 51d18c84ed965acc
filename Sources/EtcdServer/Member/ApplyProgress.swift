import Synchronization

/// How far this member's loop has got, readable off the loop thread: the highest commit index
/// it has told its peers of, and the highest index it has applied.
///
/// A follower may apply an entry, and answer a client about it, before the leader has applied
/// it itself: the leader sends the new commit index before it applies. Whatever the leader
/// answers from its own applied state (lease keep-alives and time-to-live) must first wait
/// until it has applied every entry it has said is committed; this says when no wait is needed.
final class ApplyProgress: Sendable {
    private let committed = Atomic<UInt64>(0)
    private let applied = Atomic<UInt64>(0)

    /// Called before messages carrying commit index `index` leave this member.
    func willSendCommit(_ index: UInt64) {
        committed.store(index, ordering: .sequentiallyConsistent)
    }

    /// Called once every entry through `index` is applied and published.
    func didApply(through index: UInt64) {
        applied.store(index, ordering: .sequentiallyConsistent)
    }

    /// Whether every entry this member has said is committed is applied.
    var isCaughtUp: Bool {
        let target = committed.load(ordering: .sequentiallyConsistent)
        return applied.load(ordering: .sequentiallyConsistent) >= target
    }
}
