import EtcdClient
import EtcdProto
import Foundation
import SwiftProtobuf
import TestSupport

@testable import EtcdEmbed

/// A member started in the test's process with auth on: `root` (password `root`) holds the root
/// role. bcrypt runs at cost 4 so logins are fast.
struct AuthFixture {
    let etcd: EmbeddedEtcd
    let directory: URL
    let endpoint: String
    /// Logged in as root.
    let root: EtcdClient

    static func start(configure: (inout EmbedConfiguration) -> Void = { _ in }) async throws -> AuthFixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("auth-\(UUID().uuidString)")
        var configuration = try await EmbeddedEtcdTests().configuration(directory: directory)
        configuration.bcryptCost = 4
        configure(&configuration)
        let etcd = try await EmbeddedEtcd.start(configuration)
        let endpoint = String(configuration.listenClientURLs[0].dropFirst("http://".count))
        let setup = try EtcdClient(endpoints: [endpoint])
        _ = try await setup.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "root"; $0.password = "root" })
        _ = try await setup.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = "root" })
        _ = try await setup.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = "root"; $0.role = "root" })
        _ = try await setup.call(Etcdserverpb_AuthRPCs.authEnable, .init())
        await setup.close()
        let root = try EtcdClient(endpoints: [endpoint], credentials: EtcdCredentials(user: "root", password: "root"))
        return AuthFixture(etcd: etcd, directory: directory, endpoint: endpoint, root: root)
    }

    /// A client logged in as `user`, or without credentials.
    func client(_ user: String? = nil, password: String? = nil) throws -> EtcdClient {
        try EtcdClient(endpoints: [endpoint], credentials: user.map { EtcdCredentials(user: $0, password: password ?? "pw-\($0)") })
    }

    /// Adds `user` (password `pw-<user>`) with `roles`, each role created with `permissions`.
    func addUser(_ user: String, roles: [String: [Authpb_Permission]] = [:]) async throws {
        _ = try await root.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = user; $0.password = "pw-\(user)" })
        for (role, permissions) in roles {
            _ = try? await root.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = role })
            for permission in permissions {
                _ = try await root.call(Etcdserverpb_AuthRPCs.roleGrantPermission, .with { $0.name = role; $0.perm = permission })
            }
            _ = try await root.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = user; $0.role = role })
        }
    }

    func stop() async {
        await root.close()
        await etcd.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

extension Authpb_Permission {
    /// A permission on `key` (with etcd's range end forms).
    static func on(_ key: String, rangeEnd: [UInt8] = [], _ type: Authpb_Permission.TypeEnum) -> Authpb_Permission {
        .with {
            $0.permType = type
            $0.key = Data(key.utf8)
            $0.rangeEnd = Data(rangeEnd)
        }
    }
}
