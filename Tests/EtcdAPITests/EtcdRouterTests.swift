import EtcdAPI
import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf
import Testing
import TestSupport

@Suite("The etcd routing table", .server)
struct EtcdRouterTests {
    @Test func catalogCoversEtcdsWholeAPI() {
        let services = Set(RPCCatalog.all.map { $0.path.split(separator: "/")[0] })
        #expect(services == [
            "etcdserverpb.KV", "etcdserverpb.Watch", "etcdserverpb.Lease", "etcdserverpb.Cluster",
            "etcdserverpb.Maintenance", "etcdserverpb.Auth", "v3lockpb.Lock", "v3electionpb.Election",
            "grpc.health.v1.Health",
        ])
        #expect(RPCCatalog.all.count == 50)
        #expect(Etcdserverpb_WatchRPCs.watch.kind == .bidirectionalStreaming)
        #expect(Etcdserverpb_MaintenanceRPCs.snapshot.kind == .serverStreaming)
        #expect(Etcdserverpb_LeaseRPCs.leaseKeepAlive.path == "/etcdserverpb.Lease/LeaseKeepAlive")
    }

    /// Every service of etcd's API is served; an RPC without a handler (only the health
    /// service's `Watch` now) answers UNIMPLEMENTED at once, naming itself.
    @Test func unservedRPCsAnswerUnimplementedAndLockAndElectionAreServed() async throws {
        let member = try TemporaryMember()
        defer { member.remove() }
        let server = try await GRPCServer.start(router: EtcdRouter.make(serving: member.server), configuration: .init())
        let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.localAddress!.port!))
        let watch = connection.makeStreamingCall(
            Grpc_Health_V1_HealthRPCs.watch.path, timeout: .seconds(5), requestType: Google_Protobuf_Empty.self,
            responseType: Google_Protobuf_Empty.self)
        watch.send(Google_Protobuf_Empty())
        #expect(try await watch.result.get().status == GRPCStatus(.unimplemented, "swift-etcd: grpc.health.v1.Health/Watch is not implemented yet"))

        let unlock = await Result(catching: {
            try await connection.unary(
                V3lockpb_LockRPCs.unlock.path, V3lockpb_UnlockRequest(), timeout: .seconds(5), responseType: V3lockpb_UnlockResponse.self)
        })
        #expect(unlock.failure == GRPCStatus(.unknown, "etcdserver: key is not provided"))
        let proclaim = await Result(catching: {
            try await connection.unary(
                V3electionpb_ElectionRPCs.proclaim.path, V3electionpb_ProclaimRequest(), timeout: .seconds(5),
                responseType: V3electionpb_ProclaimResponse.self)
        })
        #expect(proclaim.failure == GRPCStatus(.unknown, #""leader" field must be provided"#))
        await connection.close()
        await server.shutdown()
    }

    @Test func healthCheckReportsServing() async throws {
        let member = try TemporaryMember()
        defer { member.remove() }
        let server = try await GRPCServer.start(router: EtcdRouter.make(serving: member.server), configuration: .init())
        let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.localAddress!.port!))
        let response = try await connection.unary(
            Grpc_Health_V1_HealthRPCs.check.path, Grpc_Health_V1_HealthCheckRequest(),
            responseType: Grpc_Health_V1_HealthCheckResponse.self)
        #expect(response.status == .serving)
        await connection.close()
        await server.shutdown()
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }

    var failure: GRPCStatus? {
        if case .failure(let error) = self { return error as? GRPCStatus }
        return nil
    }
}

/// A member on a fresh temporary data directory.
struct TemporaryMember {
    let directory: URL
    let server: EtcdServer

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-\(UUID().uuidString)")
        server = try EtcdServer(
            .init(
                name: "default", dataDirectory: directory.path, initialCluster: "default=http://localhost:2380",
                initialClusterToken: "etcd-cluster", advertiseClientURLs: ["http://localhost:2379"]))
    }

    func remove() {
        server.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}
