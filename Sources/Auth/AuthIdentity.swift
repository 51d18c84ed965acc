/// Who a request is made by, as auth resolved it from a token or a client certificate: the user
/// and the auth revision their credentials are good for (etcd's `AuthInfo`). A request made at
/// an older revision than the store's is refused (`revision of auth store is old`): the grants
/// its credentials were issued under changed.
package struct AuthIdentity: Sendable, Equatable, Hashable {
    package var user: String
    package var revision: UInt64

    package init(user: String, revision: UInt64) {
        self.user = user
        self.revision = revision
    }

    /// An identity the member vouches for at every revision: a simple token (which the member
    /// drops when its user is deleted or changes password) or a client certificate. Its requests
    /// are checked against the grants of the moment, as etcd checks simple tokens; only a JWT
    /// carries the revision it was signed at.
    package static func current(user: String) -> AuthIdentity {
        AuthIdentity(user: user, revision: .max)
    }
}
