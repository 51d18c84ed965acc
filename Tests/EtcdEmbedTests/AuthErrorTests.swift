import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import NIOCore
import NIOHPACK
import SwiftProtobuf
import Testing
import TestSupport

@testable import EtcdEmbed

/// Bad credentials and forbidden calls: each gets etcd's code and message, and reads or writes
/// nothing.
@Suite("Auth: refusals, with etcd's errors", .server)
struct AuthErrorTests {
    /// A raw call with `token` (nil: none) in its metadata.
    func call<Request: Message, Response: Message>(
        _ rpc: RPC<Request, Response>, _ request: Request, token: String?, _ fixture: AuthFixture
    ) async -> Result<Response, GRPCStatus> {
        let port = Int(fixture.endpoint.split(separator: ":")[1])!
        return await GRPCClientConnection.call(rpc, request, token: token) {
            try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: port))
        }
    }

    func login(_ user: String, _ password: String, _ fixture: AuthFixture) async -> Result<String, GRPCStatus> {
        await call(Etcdserverpb_AuthRPCs.authenticate, .with { $0.name = user; $0.password = password }, token: nil, fixture).map(\.token)
    }

    func get(_ key: String, token: String?, _ fixture: AuthFixture) async -> Result<Etcdserverpb_RangeResponse, GRPCStatus> {
        await call(Etcdserverpb_KVRPCs.range, .with { $0.key = Data(key.utf8) }, token: token, fixture)
    }

    static let denied = GRPCStatus(.permissionDenied, "etcdserver: permission denied")
    static let invalidToken = GRPCStatus(.unauthenticated, "etcdserver: invalid auth token")
    static let userEmpty = GRPCStatus(.invalidArgument, "etcdserver: user name is empty")
    static let authFailed = GRPCStatus(.invalidArgument, "etcdserver: authentication failed, invalid user ID or password")
    static let oldRevision = GRPCStatus(.invalidArgument, "etcdserver: revision of auth store is old")

    @Test func badLoginsAndTokensAreRefused() async throws {
        let fixture = try await AuthFixture.start()
        try await fixture.addUser("alice", roles: ["app": [.on("/app/", rangeEnd: Array("/app0".utf8), .readwrite)]])
        #expect(await login("alice", "wrong", fixture).failure == Self.authFailed)
        #expect(await login("mallory", "pw", fixture).failure == Self.authFailed)
        #expect(await login("", "", fixture).failure == Self.authFailed)
        let token = try await login("alice", "pw-alice", fixture).get()
        #expect(try await get("/app/x", token: token, fixture).get().count == 0)
        #expect(await get("/app/x", token: nil, fixture).failure == Self.userEmpty)
        for forged in ["", "garbage", String(token.dropLast()), token + "0", "AAAAAAAAAAAAAAAA.1", String(token.prefix(16)), "\(token).1"] {
            #expect(await get("/app/x", token: forged, fixture).failure == Self.invalidToken, "\(forged)")
        }
        // etcd also reads the token from `authorization`.
        let port = Int(fixture.endpoint.split(separator: ":")[1])!
        let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: port))
        _ = try await connection.unary(
            Etcdserverpb_KVRPCs.range.path, Etcdserverpb_RangeRequest.with { $0.key = Data("/app/x".utf8) },
            metadata: ["authorization": token], responseType: Etcdserverpb_RangeResponse.self)
        await connection.close()
        await fixture.stop()
    }

    @Test func grantsChangedBetweenTwoRequestsAreEnforcedAtOnce() async throws {
        let fixture = try await AuthFixture.start()
        try await fixture.addUser("alice", roles: ["app": [.on("/app/", rangeEnd: Array("/app0".utf8), .readwrite)]])
        let token = try await login("alice", "pw-alice", fixture).get()
        _ = try await call(Etcdserverpb_KVRPCs.put, .with { $0.key = Data("/app/a".utf8); $0.value = Data("1".utf8) }, token: token, fixture).get()
        _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.userRevokeRole, .with { $0.name = "alice"; $0.role = "app" })
        // The very next request is checked against the new grants: refused, nothing written.
        #expect(await call(Etcdserverpb_KVRPCs.put, .with { $0.key = Data("/app/a".utf8); $0.value = Data("2".utf8) }, token: token, fixture).failure
            == Self.denied)
        #expect(await get("/app/a", token: token, fixture).failure == Self.denied)
        // Logged in again, the same.
        let fresh = try await login("alice", "pw-alice", fixture).get()
        #expect(await get("/app/a", token: fresh, fixture).failure == Self.denied)
        #expect(await call(Etcdserverpb_KVRPCs.put, .with { $0.key = Data("/app/a".utf8); $0.value = Data("3".utf8) }, token: fresh, fixture).failure
            == Self.denied)
        #expect(try await fixture.root.get(Data("/app/a".utf8)).kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["1"])
        // A deleted user's tokens die with it.
        _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.userDelete, .with { $0.name = "alice" })
        #expect(await get("/app/a", token: fresh, fixture).failure == Self.invalidToken)
        #expect(await login("alice", "pw-alice", fixture).failure == Self.authFailed)
        await fixture.stop()
    }

    @Test func managementIsForRootAndLookupsForOneself() async throws {
        let fixture = try await AuthFixture.start()
        try await fixture.addUser("alice", roles: ["app": [.on("/app/", rangeEnd: Array("/app0".utf8), .read)]])
        try await fixture.addUser("bob")
        let alice = try await login("alice", "pw-alice", fixture).get()
        #expect(await call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "eve"; $0.password = "x" }, token: alice, fixture).failure == Self.denied)
        #expect(await call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "eve"; $0.password = "x" }, token: nil, fixture).failure == Self.userEmpty)
        #expect(await call(Etcdserverpb_AuthRPCs.authDisable, .init(), token: alice, fixture).failure == Self.denied)
        #expect(await call(Etcdserverpb_ClusterRPCs.memberRemove, .with { $0.id = 1 }, token: alice, fixture).failure == Self.denied)
        #expect(await call(Etcdserverpb_MaintenanceRPCs.hashKV, .init(), token: alice, fixture).failure == Self.denied)
        #expect(await call(Etcdserverpb_AuthRPCs.userList, .init(), token: alice, fixture).failure == Self.denied)
        // Member lists and status need a user, not the root role.
        #expect(try await call(Etcdserverpb_ClusterRPCs.memberList, .init(), token: alice, fixture).get().members.count == 1)
        #expect(await call(Etcdserverpb_ClusterRPCs.memberList, .init(), token: nil, fixture).failure == Self.userEmpty)
        _ = try await call(Etcdserverpb_MaintenanceRPCs.status, .init(), token: alice, fixture).get()
        // Oneself and one's own roles.
        #expect(try await call(Etcdserverpb_AuthRPCs.userGet, .with { $0.name = "alice" }, token: alice, fixture).get().roles == ["app"])
        #expect(await call(Etcdserverpb_AuthRPCs.userGet, .with { $0.name = "bob" }, token: alice, fixture).failure == Self.denied)
        #expect(try await call(Etcdserverpb_AuthRPCs.roleGet, .with { $0.role = "app" }, token: alice, fixture).get().perm.count == 1)
        #expect(await call(Etcdserverpb_AuthRPCs.roleGet, .with { $0.role = "root" }, token: alice, fixture).failure == Self.denied)
        // What root may not do while auth is on.
        let invalid = GRPCStatus(.invalidArgument, "etcdserver: invalid auth management")
        #expect(await Result { try await fixture.root.call(Etcdserverpb_AuthRPCs.userDelete, .with { $0.name = "root" }) }.message == invalid.message)
        #expect(await Result { try await fixture.root.call(Etcdserverpb_AuthRPCs.roleDelete, .with { $0.role = "root" }) }.message == invalid.message)
        #expect(await Result {
            try await fixture.root.call(Etcdserverpb_AuthRPCs.userRevokeRole, .with { $0.name = "root"; $0.role = "root" })
        }.message == invalid.message)
        // etcd's other management errors.
        let errors: [(any Error)?] = [
            await Result { try await fixture.root.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "alice"; $0.password = "x" }) }.failure,
            await Result { try await fixture.root.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = "nobody"; $0.role = "app" }) }.failure,
            await Result { try await fixture.root.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = "bob"; $0.role = "none" }) }.failure,
            await Result { try await fixture.root.call(Etcdserverpb_AuthRPCs.userRevokeRole, .with { $0.name = "bob"; $0.role = "app" }) }.failure,
            await Result { try await fixture.root.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = "app" }) }.failure,
            await Result {
                try await fixture.root.call(Etcdserverpb_AuthRPCs.roleRevokePermission, .with { $0.role = "app"; $0.key = Data("zz".utf8) })
            }.failure,
            await Result { try await fixture.root.call(Etcdserverpb_AuthRPCs.roleGrantPermission, .with { $0.name = "app" }) }.failure,
            await Result {
                try await fixture.root.call(Etcdserverpb_AuthRPCs.roleGrantPermission, .with { $0.name = "app"; $0.perm = .on("b", rangeEnd: Array("a".utf8), .read) })
            }.failure,
        ]
        #expect(errors.map { ($0 as? EtcdClientError).map { "\($0.code) \($0.message)" } ?? "none" } == [
            "failedPrecondition etcdserver: user name already exists",
            "failedPrecondition etcdserver: user name not found",
            "failedPrecondition etcdserver: role name not found",
            "failedPrecondition etcdserver: role is not granted to the user",
            "failedPrecondition etcdserver: role name already exists",
            "failedPrecondition etcdserver: permission is not granted to the role",
            "invalidArgument etcdserver: permission not given",
            "invalidArgument etcdserver: invalid auth management",
        ])
        await fixture.stop()
    }

    @Test func authMustBeEnabledToLogInAndNeedsRoot() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("auth-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let fixture = try await AuthFixture.start()
        _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.authDisable, .init())
        #expect(await login("root", "root", fixture).failure == GRPCStatus(.failedPrecondition, "etcdserver: authentication is not enabled"))
        _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.userRevokeRole, .with { $0.name = "root"; $0.role = "root" })
        #expect(await Result { try await fixture.root.call(Etcdserverpb_AuthRPCs.authEnable, .init()) }.message
            == "etcdserver: root user does not have root role")
        _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.userDelete, .with { $0.name = "root" })
        #expect(await Result { try await fixture.root.call(Etcdserverpb_AuthRPCs.authEnable, .init()) }.message
            == "etcdserver: root user does not exist")
        let status = try await fixture.root.call(Etcdserverpb_AuthRPCs.authStatus, .init())
        #expect(!status.enabled)
        await fixture.stop()
    }

    @Test func passwordsReachNeitherTheLogNorTheBackendNorTheOutput() async throws {
        let fixture = try await AuthFixture.start()
        let secret = "s3cret-Passw0rd-\(UUID().uuidString.prefix(8))"
        _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "carol"; $0.password = secret })
        _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.userChangePassword, .with { $0.name = "carol"; $0.password = secret + "2" })
        #expect(await login("carol", secret, fixture).failure == Self.authFailed)
        _ = try await login("carol", secret + "2", fixture).get()
        await fixture.root.close()
        await fixture.etcd.stop()
        let files = FileManager.default.enumerator(atPath: fixture.directory.path)!.compactMap { $0 as? String }
        var scanned = 0
        for file in files {
            guard let data = FileManager.default.contents(atPath: fixture.directory.appendingPathComponent(file).path) else { continue }
            scanned += 1
            #expect(data.range(of: Data(secret.utf8)) == nil, "\(file) holds the password")
        }
        #expect(scanned >= 3)
        try? FileManager.default.removeItem(at: fixture.directory)
    }

    @Test func usersRolesAndTheSwitchSurviveARestart() async throws {
        let fixture = try await AuthFixture.start()
        try await fixture.addUser("alice", roles: ["app": [.on("/app/", rangeEnd: Array("/app0".utf8), .readwrite)]])
        await fixture.root.close()
        await fixture.etcd.stop()
        let port = Int(fixture.endpoint.split(separator: ":")[1])!
        var configuration = try await EmbeddedEtcdTests().configuration(directory: fixture.directory)
        configuration.listenClientURLs = ["http://\(fixture.endpoint)"]
        configuration.advertiseClientURLs = configuration.listenClientURLs
        let restarted = try await EmbeddedEtcd.start(configuration)
        let alice = try EtcdClient(endpoints: ["127.0.0.1:\(port)"], credentials: EtcdCredentials(user: "alice", password: "pw-alice"))
        try await alice.put("/app/x", "1")
        #expect(await Result { try await alice.put("/other", "1") }.message == "etcdserver: permission denied")
        let anonymous = try EtcdClient(endpoints: ["127.0.0.1:\(port)"])
        #expect(await Result { try await anonymous.get("/app/x") }.message == "etcdserver: user name is empty")
        await alice.close()
        await anonymous.close()
        await restarted.stop()
        try? FileManager.default.removeItem(at: fixture.directory)
    }
}

extension Result {
    init(_ body: () async throws -> Success) async where Failure == any Error {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }

    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

extension Result where Failure == any Error {
    /// etcd's message, when the call failed with one.
    var message: String? { (failure as? EtcdClientError)?.message }
}
