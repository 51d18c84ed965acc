import EtcdAPI
import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf
import Testing

@Suite("The etcd routing table")
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

    @Test func everyRPCAnswersWithoutHanging() async throws {
        let member = try TemporaryMember()
        defer { member.remove() }
        let server = try await GRPCServer.start(router: EtcdRouter.make(serving: member.server), configuration: .init())
        let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.localAddress!.port!))
        let served = [
            "/grpc.health", "/etcdserverpb.KV/", "/etcdserverpb.Cluster/", "/etcdserverpb.Maintenance/Status",
            "/etcdserverpb.Maintenance/MoveLeader", "/etcdserverpb.Maintenance/Hash", "/etcdserverpb.Maintenance/Alarm",
            "/etcdserverpb.Maintenance/Snapshot", "/etcdserverpb.Maintenance/Defragment", "/etcdserverpb.Maintenance/Downgrade",
            "/etcdserverpb.Lease/", "/etcdserverpb.Watch/", "/etcdserverpb.Auth/",
        ]
        for (path, kind) in RPCCatalog.all where !served.contains(where: path.hasPrefix) {
            let expected = GRPCStatus(.unimplemented, "swift-etcd: \(path.dropFirst()) is not implemented yet")
            if kind == .unary {
                let result = await Result(catching: {
                    try await connection.unary(path, Google_Protobuf_Empty(), timeout: .seconds(5), responseType: Google_Protobuf_Empty.self)
                })
                #expect(result.failure == expected, "\(path)")
            } else {
                let call = connection.makeStreamingCall(
                    path, timeout: .seconds(5), requestType: Google_Protobuf_Empty.self, responseType: Google_Protobuf_Empty.self)
                call.send(Google_Protobuf_Empty())
                #expect(try await call.result.get().status == expected, "\(path)")
            }
        }
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
