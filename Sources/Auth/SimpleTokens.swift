import Locking
import Synchronization

/// etcd's simple tokens: random strings a member hands out after a login, each mapping to its
/// user and the auth revision it was issued at. Every member registers each token when the
/// login is applied from the log, so a token works on every member. A token lapses after
/// `ttl` without use; each use renews it on the member that saw the use.
///
/// Shared by the member's loop (which registers tokens) and the event loops (which look them
/// up), behind one short lock.
package final class SimpleTokens: Sendable {
    private struct Entry {
        var identity: AuthIdentity
        var expires: ContinuousClock.Instant
    }

    private struct State {
        var tokens: [String: Entry] = [:]
        var nextSweep: ContinuousClock.Instant
    }

    private let ttl: Duration
    private let state: Locked<State>

    package init(ttl: Duration) {
        self.ttl = ttl
        state = Locked(State(nextSweep: .now + ttl))
    }

    /// A token's random part: 16 letters, as etcd's; the member that applies the login appends
    /// `.` and the log index, which makes the token unique.
    package static func randomPrefix() -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        var generator = SystemRandomNumberGenerator()
        return String((0..<16).map { _ in letters[Int(generator.next(upperBound: UInt(letters.count)))] })
    }

    package func register(_ token: String, for identity: AuthIdentity, now: ContinuousClock.Instant = .now) {
        state.withLock { state in
            state.tokens[token] = Entry(identity: identity, expires: now + ttl)
            if now >= state.nextSweep {
                state.tokens = state.tokens.filter { $0.value.expires > now }
                state.nextSweep = now + ttl
            }
        }
    }

    /// The identity of a live token, renewing it; nil for an unknown or lapsed one.
    package func identity(of token: String, now: ContinuousClock.Instant = .now) -> AuthIdentity? {
        state.withLock { state in
            guard let entry = state.tokens[token] else { return nil }
            guard entry.expires > now else {
                state.tokens[token] = nil
                return nil
            }
            state.tokens[token]?.expires = now + ttl
            return entry.identity
        }
    }

    /// Drops every token (auth was disabled).
    package func removeAll() {
        state.withLock { $0.tokens.removeAll() }
    }

    /// Drops the tokens of `user` (deleted, or given a new password).
    package func remove(user: String) {
        state.withLock { state in state.tokens = state.tokens.filter { $0.value.identity.user != user } }
    }
}
