import Auth
import EtcdProto

/// What each request needs from its caller when auth is on (etcd 3.6's checks, with its later
/// security fixes: nested txns, and the `prev_kv` and lease of puts inside txns, are checked).
enum AuthRules {
    /// Who may call: nobody without credentials, and nobody whose credentials are older than the
    /// grants (``AuthError/oldRevision``). Nil when auth is off (everything is allowed).
    static func caller(_ identity: AuthIdentity?, in auth: AuthState) throws(AuthError) -> String? {
        guard auth.enabled else { return nil }
        guard let identity, !identity.user.isEmpty else { throw .userEmpty }
        if identity.revision < auth.revision { throw .oldRevision }
        return identity.user
    }

    /// etcd's admin check: a user holding the root role (auth off: anyone). The credentials'
    /// revision does not matter here, as in etcd.
    static func requireRoot(_ identity: AuthIdentity?, in auth: AuthState) throws(AuthError) {
        guard auth.enabled else { return }
        guard let identity, !identity.user.isEmpty else { throw .userEmpty }
        guard auth.users[identity.user] != nil else { throw .userNotFound }
        guard auth.isRoot(identity.user) else { throw .permissionDenied }
    }

    static func check(_ user: String, _ access: AuthState.Access, key: some Collection<UInt8>, rangeEnd: some Collection<UInt8>, in auth: AuthState) throws(AuthError) {
        guard auth.permits(user, access, key: Array(key), rangeEnd: Array(rangeEnd)) else { throw .permissionDenied }
    }

    static func check(_ request: Etcdserverpb_RangeRequest, user: String, in auth: AuthState) throws(AuthError) {
        try check(user, .read, key: request.key, rangeEnd: request.rangeEnd, in: auth)
    }

    /// A put: WRITE on its key, READ too with `prev_kv`; attached to a lease that already has
    /// keys, WRITE on those keys (so a lease cannot be used to delete what the caller may not).
    static func check(_ request: Etcdserverpb_PutRequest, user: String, in auth: AuthState, leaseKeys: (Int64) -> [[UInt8]]) throws(AuthError) {
        try check(user, request.prevKv ? .readWrite : .write, key: request.key, rangeEnd: [], in: auth)
        if request.lease != 0 { try checkLeaseKeys(leaseKeys(request.lease), user: user, in: auth) }
    }

    static func check(_ request: Etcdserverpb_DeleteRangeRequest, user: String, in auth: AuthState) throws(AuthError) {
        try check(user, request.prevKv ? .readWrite : .write, key: request.key, rangeEnd: request.rangeEnd, in: auth)
    }

    /// A txn: READ on every compare, and what each operation of both branches needs, nested
    /// txns included.
    static func check(_ request: Etcdserverpb_TxnRequest, user: String, in auth: AuthState, leaseKeys: (Int64) -> [[UInt8]]) throws(AuthError) {
        for compare in request.compare { try check(user, .read, key: compare.key, rangeEnd: compare.rangeEnd, in: auth) }
        for operation in request.success + request.failure {
            switch operation.request {
            case .requestRange(let range): try check(range, user: user, in: auth)
            case .requestPut(let put): try check(put, user: user, in: auth, leaseKeys: leaseKeys)
            case .requestDeleteRange(let delete): try check(delete, user: user, in: auth)
            case .requestTxn(let nested): try check(nested, user: user, in: auth, leaseKeys: leaseKeys)
            case nil: break
            }
        }
    }

    /// WRITE on every key attached to a lease (revoking it deletes them; renewing it keeps them).
    static func checkLeaseKeys(_ keys: [[UInt8]], user: String, in auth: AuthState) throws(AuthError) {
        if auth.isRoot(user) { return }
        for key in keys { try check(user, .write, key: key, rangeEnd: [], in: auth) }
    }

    /// A write from the log, at apply time, against the grants of that moment.
    static func check(_ request: WriteRequest, identity: AuthIdentity?, in auth: AuthState, leaseKeys: (Int64) -> [[UInt8]]) throws(AuthError) {
        if case .auth(let change) = request {
            if change.needsRoot { try requireRoot(identity, in: auth) }
            return
        }
        if case .downgrade = request {
            try requireRoot(identity, in: auth)
            return
        }
        if case .alarm(let alarm) = request {
            // Listing is for any user; raising and clearing, for root (a member's own alarms
            // come with no identity to check).
            if alarm.action != .get { try requireRoot(identity, in: auth) }
            return
        }
        guard let user = try caller(identity, in: auth) else { return }
        switch request {
        case .put(let put): try check(put, user: user, in: auth, leaseKeys: leaseKeys)
        case .deleteRange(let delete): try check(delete, user: user, in: auth)
        case .txn(let txn): try check(txn, user: user, in: auth, leaseKeys: leaseKeys)
        case .leaseRevoke(let revoke): try checkLeaseKeys(leaseKeys(revoke.id), user: user, in: auth)
        case .compaction, .leaseGrant, .leaseCheckpoint, .auth, .alarm, .downgrade: break
        }
    }
}
