import Dispatch

/// When a ``WatchHub``'s timed work runs: progress notifications and retries of a failed
/// backend read. Real time in a server; tests pass a clock they advance by hand.
package protocol WatchTimer: Sendable {
    /// Runs `work` once on `queue`, `delay` from now.
    func schedule(after delay: Duration, on queue: DispatchQueue, _ work: @escaping @Sendable () -> Void)
}

/// Real time, through `DispatchQueue.asyncAfter`.
package struct DispatchWatchTimer: WatchTimer {
    package init() {}

    package func schedule(after delay: Duration, on queue: DispatchQueue, _ work: @escaping @Sendable () -> Void) {
        let (seconds, attoseconds) = delay.components
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)), execute: work)
    }
}
