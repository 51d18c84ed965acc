import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf
import Testing
import TestSupport

@testable import EtcdEmbed

/// `Maintenance.Downgrade` as etcd 3.6 answers it for a cluster whose members all run 3.6.
@Suite("Downgrade", .server)
struct DowngradeTests {
    private func downgrade(_ client: EtcdClient, _ action: Etcdserverpb_DowngradeRequest.DowngradeAction, _ version: String) async throws
        -> Etcdserverpb_DowngradeResponse
    {
        try await client.call(Etcdserverpb_MaintenanceRPCs.downgrade, .with {
            $0.action = action
            $0.version = version
        })
    }

    @Test func validateEnableAndCancelWithEtcdsRefusals() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("downgrade-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let configuration = try await EmbeddedEtcdTests().configuration(directory: directory)
        var etcd = try await EmbeddedEtcd.start(configuration)
        var port = try #require(etcd.clientAddresses.first?.port)
        var client = try EtcdClient(endpoints: ["127.0.0.1:\(port)"])

        #expect(try await downgrade(client, .validate, "3.5").version == "3.6")
        #expect(try await downgrade(client, .validate, "3.5.2").version == "3.6")
        await #expect(throws: EtcdClientError(code: .invalidArgument, message: "etcdserver: invalid downgrade target version")) {
            _ = try await downgrade(client, .validate, "3.4")
        }
        await #expect(throws: EtcdClientError(code: .invalidArgument, message: "etcdserver: wrong downgrade target version format")) {
            _ = try await downgrade(client, .validate, "three")
        }
        await #expect(throws: EtcdClientError(code: .failedPrecondition, message: "etcdserver: no inflight downgrade job")) {
            _ = try await downgrade(client, .cancel, "")
        }
        #expect(try await downgrade(client, .enable, "3.5").version == "3.6")
        await #expect(throws: EtcdClientError(code: .failedPrecondition, message: "etcdserver: cluster has a downgrade job in progress")) {
            _ = try await downgrade(client, .enable, "3.5")
        }
        let status = try await client.status()
        #expect(status.downgradeInfo.enabled && status.downgradeInfo.targetVersion == "3.5.0")
        let version = try await HTTPProbe.request("/version", port: port)
        #expect(version.body == #"{"etcdserver":"3.6.0","etcdcluster":"3.5.0","storage":"3.6.0"}"#)

        // The job is kept with the membership: it survives a restart.
        await client.close()
        await etcd.stop()
        etcd = try await EmbeddedEtcd.start(configuration)
        port = try #require(etcd.clientAddresses.first?.port)
        client = try EtcdClient(endpoints: ["127.0.0.1:\(port)"])
        #expect(try await client.status().downgradeInfo.targetVersion == "3.5.0")
        #expect(try await downgrade(client, .cancel, "").version == "3.6")
        #expect(try await client.status().hasDowngradeInfo == false)
        #expect(try await HTTPProbe.request("/version", port: port).body.contains(#""etcdcluster":"3.6.0""#))
        await client.close()
        await etcd.stop()
    }
}
