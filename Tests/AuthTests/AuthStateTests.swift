import Testing

@testable import Auth

@Suite("Auth state: etcd's rules for users, roles and permissions")
struct AuthStateTests {
    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// Root with the root role, and alice with role app (READWRITE on the prefix /app/).
    func seeded() throws -> AuthState {
        var state = AuthState()
        try state.addUser(.init(name: "root", passwordHash: "h"))
        try state.grantRole("root", to: "root")
        try state.addUser(.init(name: "alice", passwordHash: "h"))
        try state.addRole("app")
        try state.grantPermission(.init(access: .readWrite, key: bytes("/app/"), rangeEnd: bytes("/app0")), to: "app")
        try state.grantRole("app", to: "alice")
        return state
    }

    @Test func enablingNeedsRootWithTheRootRole() throws {
        var state = AuthState()
        #expect(throws: AuthError.rootUserNotExist) { try state.enable() }
        try state.addUser(.init(name: "root", passwordHash: "h"))
        #expect(throws: AuthError.rootRoleNotExist) { try state.enable() }
        try state.grantRole("root", to: "root")
        let revision = state.revision
        try state.enable()
        #expect(state.enabled)
        // As in etcd, enabling does not change the revision; disabling does.
        #expect(state.revision == revision)
        state.disable()
        #expect(state.revision == revision + 1)
    }

    @Test func rootCannotBeTakenAwayWhileAuthIsOn() throws {
        var state = try seeded()
        try state.enable()
        #expect(throws: AuthError.invalidAuthManagement) { try state.deleteUser("root") }
        #expect(throws: AuthError.invalidAuthManagement) { try state.deleteRole("root") }
        #expect(throws: AuthError.invalidAuthManagement) { try state.revokeRole("root", from: "root") }
        #expect(state.isRoot("root"))
    }

    @Test func everyChangeRaisesTheRevisionAndFailuresDoNot() throws {
        var state = try seeded()
        let revision = state.revision
        #expect(throws: AuthError.userAlreadyExists) { try state.addUser(.init(name: "alice", passwordHash: "h")) }
        #expect(throws: AuthError.userEmpty) { try state.addUser(.init(name: "", passwordHash: "h")) }
        #expect(throws: AuthError.roleEmpty) { try state.addRole("") }
        #expect(throws: AuthError.roleAlreadyExists) { try state.addRole("app") }
        #expect(throws: AuthError.roleNotFound) { try state.grantRole("nope", to: "alice") }
        #expect(throws: AuthError.userNotFound) { try state.grantRole("app", to: "bob") }
        #expect(throws: AuthError.roleNotGranted) { try state.revokeRole("root", from: "alice") }
        #expect(throws: AuthError.permissionNotGranted) { try state.revokePermission(key: bytes("/app/"), rangeEnd: [], from: "app") }
        #expect(throws: AuthError.roleNotFound) { try state.revokePermission(key: bytes("/app/"), rangeEnd: [], from: "nope") }
        // Granting a role a user already has changes nothing.
        try state.grantRole("app", to: "alice")
        #expect(state.revision == revision)
        try state.addRole("other")
        #expect(state.revision == revision + 1)
    }

    @Test func grantsFollowRolesAndPermissions() throws {
        var state = try seeded()
        #expect(state.permits("alice", .read, key: bytes("/app/x"), rangeEnd: []))
        #expect(state.permits("alice", .write, key: bytes("/app/"), rangeEnd: bytes("/app0")))
        #expect(!state.permits("alice", .read, key: bytes("/other"), rangeEnd: []))
        #expect(!state.permits("nobody", .read, key: bytes("/app/x"), rangeEnd: []))
        #expect(state.permits("root", .write, key: [0], rangeEnd: [0]))
        // Granting the same range again replaces its access.
        try state.grantPermission(.init(access: .read, key: bytes("/app/"), rangeEnd: bytes("/app0")), to: "app")
        #expect(state.roles["app"]?.permissions.count == 1)
        #expect(!state.permits("alice", .write, key: bytes("/app/x"), rangeEnd: []))
        // Deleting a role takes it from its users.
        try state.deleteRole("app")
        #expect(state.users["alice"]?.roles == [])
        #expect(!state.permits("alice", .read, key: bytes("/app/x"), rangeEnd: []))
    }

    @Test func permissionRangesFollowEtcdsRule() {
        #expect(AuthState.isValidPermissionRange(key: bytes("a"), rangeEnd: []))
        #expect(AuthState.isValidPermissionRange(key: bytes("a"), rangeEnd: bytes("b")))
        #expect(AuthState.isValidPermissionRange(key: bytes("a"), rangeEnd: [0]))
        #expect(!AuthState.isValidPermissionRange(key: [], rangeEnd: [0]))
        #expect(!AuthState.isValidPermissionRange(key: bytes("b"), rangeEnd: bytes("a")))
        #expect(!AuthState.isValidPermissionRange(key: bytes("b"), rangeEnd: bytes("b")))
    }

    @Test func storedStateReadsBackTheSame() throws {
        var state = try seeded()
        try state.enable()
        try state.addUser(.init(name: "cert-only", passwordHash: nil, noPassword: true))
        let restored = try AuthState(encoded: state.encoded())
        #expect(restored == state)
        #expect(restored.permits("alice", .read, key: bytes("/app/x"), rangeEnd: []))
        // Only hashes are stored.
        #expect(!String(decoding: state.encoded(), as: UTF8.self).contains("password\":\"secret"))
    }
}
