import Auth
import EtcdProto
import Foundation
import Lease
import Logging
import SwiftProtobuf

/// What a member needs for logins: its simple tokens, its JWT keys (with `--auth-token jwt`),
/// and the bcrypt pool.
package final class AuthServices: Sendable {
    package let simple: SimpleTokens
    package let jwt: JWTTokens?
    package let hasher: PasswordHasher

    package init(simple: SimpleTokens, jwt: JWTTokens?, hasher: PasswordHasher) {
        self.simple = simple
        self.jwt = jwt
        self.hasher = hasher
    }
}

/// Auth: logins, user and role changes (through Raft), and the checks requests pass.
extension EtcdServer {
    /// Users, roles and grants as this member last applied them.
    package var authState: AuthState { published.withLock { $0.auth } }

    /// Whether auth is on: read once per call, without copying the users and roles out.
    package var isAuthEnabled: Bool { published.withLock { $0.auth.enabled } }

    /// The auth state when auth is on; nil (nothing copied) when it is off, the common case.
    private var enabledAuthState: AuthState? { published.withLock { $0.auth.enabled ? $0.auth : nil } }

    // MARK: Who is calling

    /// What a token tells this member right now.
    package enum TokenResolution: Sendable {
        case identity(AuthIdentity)
        /// Maybe good, but this member must catch up first (a simple token from a login it has
        /// not applied yet) or check a signature (a JWT it has not seen).
        case later
        case invalid
    }

    /// Resolves a token without waiting when it can.
    package func resolve(token: String) -> TokenResolution {
        if let jwt = auth.jwt {
            return jwt.cached(token).map(TokenResolution.identity) ?? .later
        }
        if let identity = auth.simple.identity(of: token) { return .identity(identity) }
        // etcd's form: 16 letters, a dot, the log index of the login.
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = UInt64(parts[1]) else { return .invalid }
        return index > published.withLock({ $0.appliedIndex }) ? .later : .invalid
    }

    /// Resolves a token ``resolve(token:)`` answered `.later` for: a simple token once this
    /// member has applied everything committed (the login included), a JWT by its signature.
    package func resolveLater(token: String, completion: @escaping @Sendable (Result<AuthIdentity, AuthError>) -> Void) {
        if let jwt = auth.jwt {
            Task {
                do throws(AuthError) {
                    completion(.success(try await jwt.verify(token)))
                } catch {
                    completion(.failure(error))
                }
            }
            return
        }
        linearizableRead { [self] result in
            if case .identity(let identity) = (try? result.get()).map({ resolve(token: token) }) ?? .invalid {
                completion(.success(identity))
            } else {
                completion(.failure(.invalidAuthToken))
            }
        }
    }

    /// The identity of a client certificate's common name (`--client-cert-auth` without a token).
    /// The certificate, not a login, vouches for it, so it never goes stale: a watch stream opened
    /// before an auth change keeps creating watchers, checked against the grants of the moment.
    package func identity(commonName: String) -> AuthIdentity {
        .current(user: commonName)
    }

    // MARK: Checks for requests answered without the log

    /// A caller a request needs: any authenticated user with current credentials (auth off:
    /// anyone). Returns the user, nil when auth is off.
    @discardableResult
    package func requireCaller(_ caller: AuthIdentity?) throws(AuthError) -> String? {
        guard let auth = enabledAuthState else { return nil }
        return try AuthRules.caller(caller, in: auth)
    }

    /// A caller holding the root role (auth off: anyone).
    package func requireRoot(_ caller: AuthIdentity?) throws(AuthError) {
        guard let auth = enabledAuthState else { return }
        try AuthRules.requireRoot(caller, in: auth)
    }

    /// READ on a range (a range request, or a watch when it is created). An empty key counts
    /// as `"\0"`, the smallest key there is.
    package func checkRead(key: some Collection<UInt8>, rangeEnd: some Collection<UInt8>, caller: AuthIdentity?) throws(AuthError) {
        guard let auth = enabledAuthState, let user = try AuthRules.caller(caller, in: auth) else { return }
        try AuthRules.check(user, .read, key: key.isEmpty ? [0] : Array(key), rangeEnd: rangeEnd, in: auth)
    }

    /// What a lease's keys need from a caller: READ to list them (`LeaseTimeToLive` with keys),
    /// WRITE to keep them alive.
    package func checkLeaseKeys(_ id: Int64, _ access: AuthState.Access, caller: AuthIdentity?) throws(AuthError) {
        guard let auth = enabledAuthState, let user = try AuthRules.caller(caller, in: auth), !auth.isRoot(user) else { return }
        for key in lessor.keys(of: id) { try AuthRules.check(user, access, key: key, rangeEnd: [], in: auth) }
    }

    /// `LeaseLeases`: READ on the keys of every lease.
    package func checkLeaseList(caller: AuthIdentity?) throws(AuthError) {
        guard let auth = enabledAuthState, let user = try AuthRules.caller(caller, in: auth), !auth.isRoot(user) else { return }
        for id in lessor.ids {
            for key in lessor.keys(of: id) { try AuthRules.check(user, .read, key: key, rangeEnd: [], in: auth) }
        }
    }

    // MARK: Logins and changes

    /// `Authenticate`: the password is checked on the bcrypt pool against the latest grants,
    /// then a simple token is issued through the log (so every member knows it) or a JWT is
    /// signed here. Retried when the grants changed in between, as etcd does.
    package func authenticate(
        _ request: Etcdserverpb_AuthenticateRequest, completion: @escaping @Sendable (Result<Etcdserverpb_AuthenticateResponse, EtcdError>) -> Void
    ) {
        linearizableRead { [self] result in
            if case .failure(let error) = result { return completion(.failure(error)) }
            authenticate(name: request.name, password: request.password, attemptsLeft: 3, completion: completion)
        }
    }

    private func authenticate(
        name: String, password: String, attemptsLeft: Int,
        completion: @escaping @Sendable (Result<Etcdserverpb_AuthenticateResponse, EtcdError>) -> Void
    ) {
        let state = authState
        guard state.enabled else { return completion(.failure(.auth(.notEnabled))) }
        guard let user = state.users[name] else { return completion(.failure(.auth(.authFailed))) }
        guard !user.noPassword, let hash = user.passwordHash else { return completion(.failure(.auth(.noPasswordUser))) }
        auth.hasher.verify(password, hash: hash) { [self] matches in
            guard let matches else { return completion(.failure(.tooManyRequests)) }
            guard matches else {
                logger.warning("invalid authentication was requested", metadata: ["user": "\(name)", "error": "\(AuthError.authFailed)"])
                return completion(.failure(.auth(.authFailed)))
            }
            let identity = AuthIdentity(user: name, revision: state.revision)
            if let jwt = auth.jwt {
                Task {
                    do throws(AuthError) {
                        let token = try await jwt.sign(identity)
                        completion(.success(.with {
                            $0.header = header(revision: currentRevision)
                            $0.token = token
                        }))
                    } catch {
                        completion(.failure(.auth(error)))
                    }
                }
                return
            }
            let login = AuthRequest.authenticate(user: name, tokenPrefix: SimpleTokens.randomPrefix(), checkedRevision: state.revision)
            propose(.auth(login), by: nil) { [self] result in
                switch result {
                case .success(.auth(let response as Etcdserverpb_AuthenticateResponse)):
                    completion(.success(response))
                case .failure(.auth(.oldRevision)) where attemptsLeft > 1:
                    authenticate(name: name, password: password, attemptsLeft: attemptsLeft - 1, completion: completion)
                case .failure(let error):
                    completion(.failure(error))
                case .success:
                    completion(.failure(.timeout))
                }
            }
        }
    }

    /// `UserAdd` and `UserChangePassword` hash the password on the bcrypt pool first, so only
    /// the hash goes through the log; every other change is proposed as it is.
    package func proposeAuth(
        _ change: AuthRequest, by caller: AuthIdentity?, completion: @escaping @Sendable (Result<WriteResponse, EtcdError>) -> Void
    ) {
        let password: String
        switch change {
        case .userAdd(let request) where !(request.hasOptions && request.options.noPassword): password = request.password
        case .userChangePassword(let request) where !request.password.isEmpty: password = request.password
        default: return propose(.auth(change), by: caller, completion: completion)
        }
        auth.hasher.hash(password) { [self] hash in
            guard let hash else { return completion(.failure(.tooManyRequests)) }
            var hashed = change
            switch change {
            case .userAdd(var request):
                request.password = ""
                request.hashedPassword = hash
                hashed = .userAdd(request)
            case .userChangePassword(var request):
                request.password = ""
                request.hashedPassword = hash
                hashed = .userChangePassword(request)
            default:
                break
            }
            propose(.auth(hashed), by: caller, completion: completion)
        }
    }
}
