import EtcdClient
import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import NIOCore
import Testing
import TestSupport

@testable import EtcdEmbed

/// `--auto-compaction-retention` on a running member: history older than the retention goes.
@Suite("Auto compaction", .server)
struct AutoCompactionTests {
    @Test func periodicCompactionKeepsOnlyTheRetention() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("autocompact-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = try await EmbeddedEtcdTests().configuration(directory: directory)
        configuration.autoCompaction = .periodic(.seconds(1))
        let etcd = try await EmbeddedEtcd.start(configuration)
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(try #require(etcd.clientAddresses.first?.port))"])
        let first = try await client.put("k", "0")
        let compacted = EtcdClientError(code: .outOfRange, message: "etcdserver: mvcc: required revision has been compacted")
        // Writes go on; within a few retentions the first revision is compacted away.
        var gone = false
        let deadline = ContinuousClock.now + .seconds(10)
        var written = 1
        while !gone, ContinuousClock.now < deadline {
            try await client.put("k", "\(written)")
            written += 1
            try await Task.sleep(for: .milliseconds(50))
            do {
                _ = try await client.get(Data("k".utf8), revision: first.header.revision)
            } catch {
                #expect(error == compacted)
                gone = true
            }
        }
        #expect(gone)
        // History newer than the retention is kept.
        let now = try await client.get("k")
        #expect(try await client.get(Data("k".utf8), revision: now.header.revision).kvs.count == 1)
        await client.close()
        await etcd.stop()
    }
}
