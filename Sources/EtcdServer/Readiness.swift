import Locking
import Synchronization

/// Whether this member has published itself to the cluster since it started, etcd's
/// `ReadyNotify`: a leader committed its name and client URLs, and the member applied log up to
/// that entry. etcd serves clients only from then on, so a client (or a script waiting for
/// "ready to serve client requests") finds a leader and a caught-up member at once.
package final class Readiness: Sendable {
    private enum State {
        case waiting([CheckedContinuation<Bool, Never>])
        case ready
        case stopped
    }

    private let state = Locked(State.waiting([]))

    init() {}

    package var isReady: Bool {
        state.withLock { if case .ready = $0 { true } else { false } }
    }

    /// Waits until the member is ready (true) or stops first (false).
    package func wait() async -> Bool {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool? in
                switch state {
                case .waiting(var waiters):
                    waiters.append(continuation)
                    state = .waiting(waiters)
                    return nil
                case .ready: return true
                case .stopped: return false
                }
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    func markReady() { settle(.ready) }

    func markStopped() { settle(.stopped) }

    private func settle(_ outcome: State) {
        let waiters = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            guard case .waiting(let waiters) = state else { return [] }
            state = outcome
            return waiters
        }
        let ready = if case .ready = outcome { true } else { false }
        for waiter in waiters { waiter.resume(returning: ready) }
    }
}
