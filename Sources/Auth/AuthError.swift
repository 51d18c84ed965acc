/// The errors auth answers with. Messages are etcd's exactly (clients match on them); the
/// server maps each to etcd's gRPC code.
package enum AuthError: Error, Equatable, Sendable, Codable, CustomStringConvertible {
    case userEmpty
    case roleEmpty
    case authFailed
    case permissionDenied
    case invalidAuthToken
    case oldRevision
    case invalidAuthManagement
    case rootUserNotExist
    case rootRoleNotExist
    case userAlreadyExists
    case userNotFound
    case roleAlreadyExists
    case roleNotFound
    case roleNotGranted
    case permissionNotGranted
    case notEnabled
    case noPasswordUser
    case permissionNotGiven
    /// A login on a member that holds only the JWT public key.
    case verifyOnly

    package var description: String {
        switch self {
        case .userEmpty: "etcdserver: user name is empty"
        case .roleEmpty: "etcdserver: role name is empty"
        case .authFailed: "etcdserver: authentication failed, invalid user ID or password"
        case .permissionDenied: "etcdserver: permission denied"
        case .invalidAuthToken: "etcdserver: invalid auth token"
        case .oldRevision: "etcdserver: revision of auth store is old"
        case .invalidAuthManagement: "etcdserver: invalid auth management"
        case .rootUserNotExist: "etcdserver: root user does not exist"
        case .rootRoleNotExist: "etcdserver: root user does not have root role"
        case .userAlreadyExists: "etcdserver: user name already exists"
        case .userNotFound: "etcdserver: user name not found"
        case .roleAlreadyExists: "etcdserver: role name already exists"
        case .roleNotFound: "etcdserver: role name not found"
        case .roleNotGranted: "etcdserver: role is not granted to the user"
        case .permissionNotGranted: "etcdserver: permission is not granted to the role"
        case .notEnabled: "etcdserver: authentication is not enabled"
        case .noPasswordUser: "auth: authentication failed, password was given for no password user"
        case .permissionNotGiven: "etcdserver: permission not given"
        case .verifyOnly: "auth: token signing attempted with verify-only key"
        }
    }
}
