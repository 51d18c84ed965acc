import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf
import Testing
import TestSupport

/// Auth on three `swift-etcd` processes: changes made through one member hold on every member,
/// a token issued by one member works on the others, and a restarted member still enforces
/// what it was told before it stopped.
@Suite("Auth on a three-member cluster", .cluster, .serialized)
struct AuthClusterTests {
    /// One call to member `index` with `token` (nil: none).
    func call<Request: Message, Response: Message>(
        _ rpc: RPC<Request, Response>, _ request: Request, token: String?, member index: Int, _ cluster: ClusterProcesses
    ) async -> Result<Response, GRPCStatus> {
        await GRPCClientConnection.call(rpc, request, token: token) { try await cluster.members[index].connect() }
    }

    func get(_ key: String, token: String?, member: Int, _ cluster: ClusterProcesses) async -> GRPCStatus.Code {
        switch await call(Etcdserverpb_KVRPCs.range, .with { $0.key = Data(key.utf8) }, token: token, member: member, cluster) {
        case .success: .ok
        case .failure(let status): status.code
        }
    }

    func login(_ user: String, _ password: String, member: Int, _ cluster: ClusterProcesses) async throws -> String {
        try await call(Etcdserverpb_AuthRPCs.authenticate, .with { $0.name = user; $0.password = password }, token: nil, member: member, cluster)
            .get().token
    }

    @Test("changes on one member hold on all; tokens travel; a restarted member still enforces")
    func authAcrossMembers() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers + ["--bcrypt-cost", "4"])
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        let setup = try cluster.client([0])
        _ = try await setup.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "root"; $0.password = "root" })
        _ = try await setup.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = "root" })
        _ = try await setup.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = "root"; $0.role = "root" })
        _ = try await setup.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "alice"; $0.password = "pw" })
        _ = try await setup.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = "app" })
        _ = try await setup.call(Etcdserverpb_AuthRPCs.roleGrantPermission, .with {
            $0.name = "app"
            $0.perm = .with { $0.permType = .readwrite; $0.key = Data("/app/".utf8); $0.rangeEnd = Data("/app0".utf8) }
        })
        _ = try await setup.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = "alice"; $0.role = "app" })
        _ = try await setup.call(Etcdserverpb_AuthRPCs.authEnable, .init())
        await setup.close()

        // A token from member 0, used at once on the others (which may not have applied the
        // login yet: they wait for it rather than refuse it).
        for _ in 0..<5 {
            let token = try await login("alice", "pw", member: 0, cluster)
            #expect(await get("/app/x", token: token, member: 1, cluster) == .ok)
            #expect(await get("/app/x", token: token, member: 2, cluster) == .ok)
            #expect(await get("/other", token: token, member: 2, cluster) == .permissionDenied)
        }
        #expect(await get("/app/x", token: nil, member: 1, cluster) == .invalidArgument)

        // A client logged in as alice, going round the members.
        let alice = try EtcdClient(endpoints: cluster.endpoints, credentials: EtcdCredentials(user: "alice", password: "pw"))
        for index in 0..<9 { try await alice.put("/app/\(index)", "\(index)") }
        #expect(try await alice.get(Data("/app/".utf8), rangeEnd: Data("/app0".utf8)).count == 9)

        // Revoked through member 1: refused on member 2, even after logging in again there.
        let root = try EtcdClient(endpoints: [cluster.endpoint(1)], credentials: EtcdCredentials(user: "root", password: "root"))
        _ = try await root.call(Etcdserverpb_AuthRPCs.userRevokeRole, .with { $0.name = "alice"; $0.role = "app" })
        let fresh = try await login("alice", "pw", member: 2, cluster)
        #expect(await get("/app/x", token: fresh, member: 2, cluster) == .permissionDenied)
        #expect(await get("/app/x", token: fresh, member: 0, cluster) == .permissionDenied)
        await #expect(throws: EtcdClientError(code: .permissionDenied, message: "etcdserver: permission denied")) {
            try await alice.put("/app/late", "x")
        }

        // Member 2 restarted: it still knows users, roles and that auth is on.
        cluster.members[2].terminate()
        try await cluster.start(2)
        // (Status needs a user now, so the cluster's own leader wait cannot ask: log in until it works.)
        var afterRestart: String?
        let deadline = ContinuousClock.now + .seconds(30)
        while afterRestart == nil, ContinuousClock.now < deadline {
            afterRestart = try? await login("alice", "pw", member: 2, cluster)
            if afterRestart == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(await get("/app/x", token: afterRestart, member: 2, cluster) == .permissionDenied)
        #expect(await get("/app/x", token: nil, member: 2, cluster) == .invalidArgument)
        let rootToken = try await login("root", "root", member: 2, cluster)
        #expect(await get("/app/x", token: rootToken, member: 2, cluster) == .ok)
        let status = try await call(Etcdserverpb_AuthRPCs.authStatus, .init(), token: rootToken, member: 2, cluster).get()
        #expect(status.enabled)
        await alice.close()
        await root.close()
    }
}
