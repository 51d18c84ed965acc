import Foundation

/// Everything auth knows, replicated through Raft: whether auth is on, its revision, the users
/// and the roles. A value: the member's loop applies changes to its copy and publishes it;
/// requests check against the published copy without locks.
///
/// Each change follows etcd's rules and raises ``revision`` by one, so a token issued before a
/// change is known to be stale.
package struct AuthState: Sendable, Equatable {
    package static let rootUser = "root"
    package static let rootRole = "root"

    package private(set) var enabled = false
    /// Starts at 1 (0 means "no auth information" in a request) and rises with every change.
    package private(set) var revision: UInt64 = 1
    package private(set) var users: [String: User] = [:]
    package private(set) var roles: [String: Role] = [:]
    /// Per user, the key ranges they may read and write (derived, rebuilt on every change).
    private var grants: [String: Grants] = [:]

    package init() {}

    /// A state as another store kept it (an etcd backend being imported).
    package init(enabled: Bool, revision: UInt64, users: [User], roles: [Role]) {
        self.enabled = enabled
        self.revision = revision
        self.users = Dictionary(users.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        self.roles = Dictionary(roles.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        deriveGrants()
    }

    /// A user: a bcrypt hash of their password (none for certificate-only users) and the names
    /// of their roles, sorted.
    package struct User: Sendable, Equatable, Codable {
        package var name: String
        package var passwordHash: String?
        package var roles: [String]
        package var noPassword: Bool

        package init(name: String, passwordHash: String?, roles: [String] = [], noPassword: Bool = false) {
            self.name = name
            self.passwordHash = passwordHash
            self.roles = roles
            self.noPassword = noPassword
        }
    }

    /// What a permission allows.
    package enum Access: Int, Sendable, Equatable, Codable {
        case read = 0
        case write = 1
        case readWrite = 2

        var allowsRead: Bool { self != .write }
        var allowsWrite: Bool { self != .read }
    }

    /// A key range in etcd's `(key, rangeEnd)` form and what it allows.
    package struct Permission: Sendable, Equatable, Codable {
        package var access: Access
        package var key: [UInt8]
        package var rangeEnd: [UInt8]

        package init(access: Access, key: [UInt8], rangeEnd: [UInt8]) {
            self.access = access
            self.key = key
            self.rangeEnd = rangeEnd
        }
    }

    /// A role: its permissions, ordered by key (etcd's order).
    package struct Role: Sendable, Equatable, Codable {
        package var name: String
        package var permissions: [Permission]

        package init(name: String, permissions: [Permission] = []) {
            self.name = name
            self.permissions = permissions
        }
    }

    /// The ranges one user may read and write.
    struct Grants: Sendable, Equatable {
        var isRoot: Bool
        var read: KeyRangeSet
        var write: KeyRangeSet
    }

    // MARK: Checks

    /// Whether `user` holds the root role (which may do everything).
    package func isRoot(_ user: String) -> Bool {
        grants[user]?.isRoot ?? false
    }

    /// Whether `user` may read (or write) every key of `key`..`rangeEnd` (etcd's forms: empty
    /// for one key, `"\0"` for every key from `key` on). Unknown users may do nothing.
    package func permits(_ user: String, _ access: Access, key: [UInt8], rangeEnd: [UInt8]) -> Bool {
        guard let grants = grants[user] else { return false }
        if grants.isRoot { return true }
        switch access {
        case .read: return grants.read.contains(key: key, rangeEnd: rangeEnd)
        case .write: return grants.write.contains(key: key, rangeEnd: rangeEnd)
        case .readWrite:
            return grants.read.contains(key: key, rangeEnd: rangeEnd) && grants.write.contains(key: key, rangeEnd: rangeEnd)
        }
    }

    /// etcd's rule for a permission's range: a key, and a range end after it or `"\0"`.
    package static func isValidPermissionRange(key: [UInt8], rangeEnd: [UInt8]) -> Bool {
        guard !key.isEmpty else { return false }
        return rangeEnd.isEmpty || rangeEnd == [0] || key.lexicographicallyPrecedes(rangeEnd)
    }

    // MARK: Changes (each is applied from the log, on every member)

    package mutating func enable() throws(AuthError) {
        if enabled { return }
        guard let root = users[Self.rootUser] else { throw .rootUserNotExist }
        guard root.roles.contains(Self.rootRole) else { throw .rootRoleNotExist }
        enabled = true
    }

    package mutating func disable() {
        guard enabled else { return }
        enabled = false
        changed()
    }

    package mutating func addUser(_ user: User) throws(AuthError) {
        guard !user.name.isEmpty else { throw .userEmpty }
        guard users[user.name] == nil else { throw .userAlreadyExists }
        var user = user
        user.roles = []
        users[user.name] = user
        changed()
    }

    package mutating func deleteUser(_ name: String) throws(AuthError) {
        if enabled, name == Self.rootUser { throw .invalidAuthManagement }
        guard users.removeValue(forKey: name) != nil else { throw .userNotFound }
        changed()
    }

    package mutating func changePassword(_ name: String, passwordHash: String?) throws(AuthError) {
        guard var user = users[name] else { throw .userNotFound }
        user.passwordHash = passwordHash
        users[name] = user
        changed()
    }

    package mutating func grantRole(_ role: String, to name: String) throws(AuthError) {
        guard var user = users[name] else { throw .userNotFound }
        guard roles[role] != nil || role == Self.rootRole else { throw .roleNotFound }
        guard !user.roles.contains(role) else { return }
        user.roles.append(role)
        user.roles.sort()
        users[name] = user
        changed()
    }

    package mutating func revokeRole(_ role: String, from name: String) throws(AuthError) {
        if enabled, name == Self.rootUser, role == Self.rootRole { throw .invalidAuthManagement }
        guard var user = users[name] else { throw .userNotFound }
        guard let index = user.roles.firstIndex(of: role) else { throw .roleNotGranted }
        user.roles.remove(at: index)
        users[name] = user
        changed()
    }

    package mutating func addRole(_ name: String) throws(AuthError) {
        guard !name.isEmpty else { throw .roleEmpty }
        guard roles[name] == nil else { throw .roleAlreadyExists }
        roles[name] = Role(name: name)
        changed()
    }

    /// Deletes a role and takes it from every user who had it.
    package mutating func deleteRole(_ name: String) throws(AuthError) {
        if enabled, name == Self.rootRole { throw .invalidAuthManagement }
        guard roles.removeValue(forKey: name) != nil else { throw .roleNotFound }
        for (userName, var user) in users where user.roles.contains(name) {
            user.roles.removeAll { $0 == name }
            users[userName] = user
        }
        changed()
    }

    /// Grants a permission; one on the same key and range end is replaced (its access changes).
    package mutating func grantPermission(_ permission: Permission, to name: String) throws(AuthError) {
        guard var role = roles[name] else { throw .roleNotFound }
        if let index = role.permissions.firstIndex(where: { $0.key == permission.key && $0.rangeEnd == permission.rangeEnd }) {
            role.permissions[index].access = permission.access
        } else {
            role.permissions.append(permission)
            // By key; permissions on one key stay in the order they were granted (as etcd lists them).
            role.permissions.sort { $0.key.lexicographicallyPrecedes($1.key) }
        }
        roles[name] = role
        changed()
    }

    /// Revokes the permission on exactly `key` and `rangeEnd`.
    package mutating func revokePermission(key: [UInt8], rangeEnd: [UInt8], from name: String) throws(AuthError) {
        guard var role = roles[name] else { throw .roleNotFound }
        guard let index = role.permissions.firstIndex(where: { $0.key == key && $0.rangeEnd == rangeEnd }) else {
            throw .permissionNotGranted
        }
        role.permissions.remove(at: index)
        roles[name] = role
        changed()
    }

    /// A change was made: a new revision, and every user's grants derived again.
    private mutating func changed() {
        revision += 1
        deriveGrants()
    }

    private mutating func deriveGrants() {
        grants = users.mapValues { user in
            let permissions = user.roles.compactMap { roles[$0] }.flatMap(\.permissions)
            return Grants(
                isRoot: user.roles.contains(Self.rootRole),
                read: KeyRangeSet(permissions.filter(\.access.allowsRead).map { ($0.key, $0.rangeEnd) }),
                write: KeyRangeSet(permissions.filter(\.access.allowsWrite).map { ($0.key, $0.rangeEnd) }))
        }
    }

    // MARK: Storage

    private struct Stored: Codable {
        var enabled: Bool
        var revision: UInt64
        var users: [User]
        var roles: [Role]
    }

    /// The state as the backend keeps it (JSON, readable with the `sqlite3` tool; passwords only
    /// as bcrypt hashes).
    package func encoded() -> [UInt8] {
        let stored = Stored(
            enabled: enabled, revision: revision, users: users.values.sorted { $0.name < $1.name },
            roles: roles.values.sorted { $0.name < $1.name })
        // Sorted keys: every member stores the same bytes (backend hashes compare them).
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // Encoding plain strings, numbers and byte arrays cannot fail.
        return Array(try! encoder.encode(stored))
    }

    package init(encoded: [UInt8]) throws {
        let stored = try JSONDecoder().decode(Stored.self, from: Data(encoded))
        self.init(enabled: stored.enabled, revision: stored.revision, users: stored.users, roles: stored.roles)
    }
}
