import EtcdProto
import GRPCWire
import Locking
import SwiftProtobuf
import Synchronization

/// A user name and password, as etcdctl's `--user name:password` gives them.
public struct EtcdCredentials: Sendable {
    public var user: String
    public var password: String

    public init(user: String, password: String) {
        self.user = user
        self.password = password
    }
}

/// The client's login: one token shared by every call, fetched on first use and fetched again
/// (once per failure, however many calls saw it) when the server says it is no longer good.
/// The password stays in memory only; it is never logged or put in an error.
final class AuthSession: Sendable {
    private struct State {
        var token: String?
        /// A login in flight; calls arriving meanwhile wait for it.
        var login: Task<String, any Error>?
        /// When the token was obtained.
        var obtained = ContinuousClock.now
    }

    private let credentials: EtcdCredentials
    private let state = Locked(State())

    init(_ credentials: EtcdCredentials) {
        self.credentials = credentials
    }

    /// The errors after which clientv3 logs in again and retries: the token lapsed or is
    /// unknown, it predates an auth change, or the member lost it (a restart).
    static func meansLoginAgain(_ error: EtcdClientError) -> Bool {
        error.message == "etcdserver: invalid auth token" || error.message == "etcdserver: revision of auth store is old"
            || error.message == "etcdserver: user name is empty"
    }

    /// Forgets the token if it was obtained before `opened` and no login is under way: the next
    /// caller logs in. For a stream opened at `opened` and refused with its token; a token
    /// obtained since (another call logged in again) cannot be the one refused, and is kept.
    func discardToken(obtainedBefore opened: ContinuousClock.Instant) {
        state.withLock { if $0.login == nil, $0.obtained < opened { $0.token = nil } }
    }

    /// The token to send, logging in when there is none yet or `stale` (the one a call was just
    /// refused with) is still the current one.
    func token(replacing stale: String? = nil, via grpc: GRPCClient) async throws(EtcdClientError) -> String {
        /// The token as it stands, or the login to wait for: read under one lock, as the token
        /// may be dropped (``discardToken()``) the moment the lock is let go.
        enum Next {
            case ready(String)
            case waiting(Task<String, any Error>)
        }
        let next = state.withLock { state -> Next in
            if let token = state.token, token != stale { return .ready(token) }
            if let login = state.login { return .waiting(login) }
            let credentials = credentials
            let login = Task {
                try await grpc.unary(
                    Etcdserverpb_AuthRPCs.authenticate.path,
                    Etcdserverpb_AuthenticateRequest.with {
                        $0.name = credentials.user
                        $0.password = credentials.password
                    }, responseType: Etcdserverpb_AuthenticateResponse.self
                ).token
            }
            state = State(token: nil, login: login)
            return .waiting(login)
        }
        let login: Task<String, any Error>
        switch next {
        case .ready(let token): return token
        case .waiting(let task): login = task
        }
        do {
            let token = try await login.value
            state.withLock { if $0.login == login { $0 = State(token: token, login: nil, obtained: .now) } }
            return token
        } catch {
            // A failed login is not kept: the next call tries again.
            state.withLock { if $0.login == login { $0.login = nil } }
            throw EtcdClientError(error)
        }
    }
}
