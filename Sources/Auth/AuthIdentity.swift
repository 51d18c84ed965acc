/// Who a request is made by, as auth resolved it from a token or a client certificate: the user
/// and the auth revision their credentials are good for (etcd's `AuthInfo`). A request made at
/// an older revision than the store's is refused: the grants it was checked against changed.
package struct AuthIdentity: Sendable, Equatable, Hashable {
    package var user: String
    package var revision: UInt64

    package init(user: String, revision: UInt64) {
        self.user = user
        self.revision = revision
    }
}
