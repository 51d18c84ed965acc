import Auth
import EtcdProto
import Foundation
import SwiftProtobuf

/// Applying auth changes from the log: users, roles, permissions, logins.
extension MemberLoop {
    /// Applies one auth change to the member's auth state; on success the state is new and the
    /// batch will store it. Every member applies the same changes in the same order, so every
    /// member ends with the same users, roles and tokens.
    func apply(_ change: AuthRequest, index: UInt64, header: Etcdserverpb_ResponseHeader) -> Result<WriteResponse, EtcdError> {
        let before = auth
        do throws(AuthError) {
            let response = try applyChange(change, index: index, header: header)
            if auth != before { authChanged = true }
            return .success(.auth(response))
        } catch {
            auth = before
            return .failure(.auth(error))
        }
    }

    private func applyChange(_ change: AuthRequest, index: UInt64, header: Etcdserverpb_ResponseHeader) throws(AuthError) -> any Message {
        switch change {
        case .enable:
            try auth.enable()
            return Etcdserverpb_AuthEnableResponse.with { $0.header = header }
        case .disable:
            auth.disable()
            tokens.removeAll()
            return Etcdserverpb_AuthDisableResponse.with { $0.header = header }
        case .authenticate(let user, let prefix, let checkedRevision):
            guard auth.enabled else { throw .notEnabled }
            guard let account = auth.users[user], !account.noPassword else { throw .authFailed }
            // The password was checked against other grants: the caller checks it again.
            guard auth.revision == checkedRevision else { throw .oldRevision }
            let token = "\(prefix).\(index)"
            tokens.register(token, for: .current(user: account.name))
            return Etcdserverpb_AuthenticateResponse.with {
                $0.header = header
                $0.token = token
            }
        case .userAdd(let request):
            let noPassword = request.hasOptions && request.options.noPassword
            try auth.addUser(AuthState.User(
                name: request.name, passwordHash: noPassword ? nil : Self.passwordHash(request.hashedPassword), noPassword: noPassword))
            return Etcdserverpb_AuthUserAddResponse.with { $0.header = header }
        case .userDelete(let request):
            try auth.deleteUser(request.name)
            tokens.remove(user: request.name)
            return Etcdserverpb_AuthUserDeleteResponse.with { $0.header = header }
        case .userChangePassword(let request):
            // A certificate-only user keeps having no password (etcd ignores the new one).
            let noPassword = auth.users[request.name]?.noPassword ?? false
            try auth.changePassword(request.name, passwordHash: noPassword ? nil : Self.passwordHash(request.hashedPassword))
            tokens.remove(user: request.name)
            return Etcdserverpb_AuthUserChangePasswordResponse.with { $0.header = header }
        case .userGrantRole(let request):
            try auth.grantRole(request.role, to: request.user)
            return Etcdserverpb_AuthUserGrantRoleResponse.with { $0.header = header }
        case .userRevokeRole(let request):
            try auth.revokeRole(request.role, from: request.name)
            return Etcdserverpb_AuthUserRevokeRoleResponse.with { $0.header = header }
        case .roleAdd(let request):
            try auth.addRole(request.name)
            return Etcdserverpb_AuthRoleAddResponse.with { $0.header = header }
        case .roleDelete(let request):
            try auth.deleteRole(request.role)
            return Etcdserverpb_AuthRoleDeleteResponse.with { $0.header = header }
        case .roleGrantPermission(let request):
            guard request.hasPerm else { throw .permissionNotGiven }
            let permission = request.perm
            guard AuthState.isValidPermissionRange(key: Array(permission.key), rangeEnd: Array(permission.rangeEnd)) else {
                throw .invalidAuthManagement
            }
            try auth.grantPermission(
                AuthState.Permission(
                    access: AuthState.Access(rawValue: permission.permType.rawValue) ?? .read, key: Array(permission.key),
                    rangeEnd: Array(permission.rangeEnd)),
                to: request.name)
            return Etcdserverpb_AuthRoleGrantPermissionResponse.with { $0.header = header }
        case .roleRevokePermission(let request):
            try auth.revokePermission(key: Array(request.key), rangeEnd: Array(request.rangeEnd), from: request.role)
            return Etcdserverpb_AuthRoleRevokePermissionResponse.with { $0.header = header }
        }
    }

    /// The bcrypt hash a proposal carries: ours as it is; one a client sent in etcd's form
    /// (base64 of the hash) decoded.
    private static func passwordHash(_ carried: String) -> String {
        if carried.hasPrefix("$2") { return carried }
        if let data = Data(base64Encoded: carried), let decoded = String(data: data, encoding: .utf8), decoded.hasPrefix("$2") {
            return decoded
        }
        return carried
    }
}
