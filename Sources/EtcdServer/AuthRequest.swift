import Auth
import EtcdProto
import SwiftProtobuf

/// A change to auth as the log carries it. Passwords never reach the log: user additions and
/// password changes carry bcrypt hashes made before proposing, and a login carries only the
/// random part of the token it will be given.
package enum AuthRequest: Sendable {
    case enable
    case disable
    /// A login whose password was checked at `checkedRevision`: applied, it registers the simple
    /// token `tokenPrefix.<entry index>` on every member.
    case authenticate(user: String, tokenPrefix: String, checkedRevision: UInt64)
    case userAdd(Etcdserverpb_AuthUserAddRequest)
    case userDelete(Etcdserverpb_AuthUserDeleteRequest)
    case userChangePassword(Etcdserverpb_AuthUserChangePasswordRequest)
    case userGrantRole(Etcdserverpb_AuthUserGrantRoleRequest)
    case userRevokeRole(Etcdserverpb_AuthUserRevokeRoleRequest)
    case roleAdd(Etcdserverpb_AuthRoleAddRequest)
    case roleDelete(Etcdserverpb_AuthRoleDeleteRequest)
    case roleGrantPermission(Etcdserverpb_AuthRoleGrantPermissionRequest)
    case roleRevokePermission(Etcdserverpb_AuthRoleRevokePermissionRequest)

    /// Only a root user may make it (when auth is on): everything but a login.
    var needsRoot: Bool {
        if case .authenticate = self { return false }
        return true
    }

    /// A kind byte, then the message (a login: its revision, 16-byte prefix and user name).
    var logData: [UInt8] {
        if case .authenticate(let user, let prefix, let revision) = self {
            return [3] + BigEndian.bytes(revision) + Array(prefix.utf8) + Array(user.utf8)
        }
        let (kind, message): (UInt8, (any SwiftProtobuf.Message)?) =
            switch self {
            case .enable: (1, nil)
            case .disable: (2, nil)
            case .authenticate: preconditionFailure("handled above")
            case .userAdd(let request): (4, request)
            case .userDelete(let request): (5, request)
            case .userChangePassword(let request): (6, request)
            case .userGrantRole(let request): (7, request)
            case .userRevokeRole(let request): (8, request)
            case .roleAdd(let request): (9, request)
            case .roleDelete(let request): (10, request)
            case .roleGrantPermission(let request): (11, request)
            case .roleRevokePermission(let request): (12, request)
            }
        // Encoding a message built from a decoded one cannot fail.
        return [kind] + ((try! message?.serializedBytes() as [UInt8]?) ?? [])
    }

    init(logData: ArraySlice<UInt8>) throws {
        let message = Array(logData.dropFirst())
        switch logData.first {
        case 1: self = .enable
        case 2: self = .disable
        case 3:
            guard message.count >= 24, let revision: UInt64 = BigEndian.number(message[0..<8]) else {
                throw ConfigurationError("wal: login entry of \(message.count) bytes")
            }
            self = .authenticate(
                user: String(decoding: message[24...], as: UTF8.self), tokenPrefix: String(decoding: message[8..<24], as: UTF8.self),
                checkedRevision: revision)
        case 4: self = .userAdd(try .init(serializedBytes: message))
        case 5: self = .userDelete(try .init(serializedBytes: message))
        case 6: self = .userChangePassword(try .init(serializedBytes: message))
        case 7: self = .userGrantRole(try .init(serializedBytes: message))
        case 8: self = .userRevokeRole(try .init(serializedBytes: message))
        case 9: self = .roleAdd(try .init(serializedBytes: message))
        case 10: self = .roleDelete(try .init(serializedBytes: message))
        case 11: self = .roleGrantPermission(try .init(serializedBytes: message))
        case 12: self = .roleRevokePermission(try .init(serializedBytes: message))
        default: throw ConfigurationError("wal: unknown auth entry kind \(logData.first.map(String.init) ?? "none")")
        }
    }
}
