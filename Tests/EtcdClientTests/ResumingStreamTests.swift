import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import TestSupport
import Testing

/// `resumingWatch` and `keepingAlive` through a member that stops and starts again, as
/// clientv3's watch and keep-alive survive it.
@Suite("Streams that resume as clientv3's do", .server, .serialized)
struct ResumingStreamTests {
    /// Runs `body` against a fresh member; a stream that stops delivering fails the test after
    /// 60 s instead of hanging it.
    private func withServer(_ body: @escaping @Sendable (ServerProcess, EtcdClient) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("resuming-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try await ServerProcess(dataDirectory: directory)
        try await server.start()
        defer { server.kill9() }
        let client = try EtcdClient(endpoints: ["http://127.0.0.1:\(server.port)"])
        defer { Task { await client.close() } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await body(server, client) }
            group.addTask {
                try await Task.sleep(for: .seconds(60))
                throw EtcdClientError(code: .deadlineExceeded, message: "the stream stopped delivering")
            }
            try await group.next()
            group.cancelAll()
        }
    }

    @Test func aWatchResumesAfterItsMemberRestartsWithNoEventLostOrRepeated() async throws {
        try await withServer { server, client in
            // From an explicit revision: a watch "from now" could be created after the first put.
            let start = try await client.get("r/").header.revision + 1
            let events = client.resumingWatch(Data("r/".utf8), rangeEnd: prefixEnd("r/"), startRevision: start)
            var iterator = events.makeAsyncIterator()
            var seen: [String] = []
            func collect(until count: Int) async throws {
                while seen.count < count, let response = try await iterator.next() {
                    seen += response.events.map { String(decoding: $0.kv.key, as: UTF8.self) }
                }
            }
            try await client.put("r/0", "x")
            try await collect(until: 1)
            for index in 1...5 { try await client.put("r/\(index)", "x") }
            try await collect(until: 6)
            server.terminate()
            try await server.start()
            for index in 6...10 { try await client.put("r/\(index)", "x") }
            try await collect(until: 11)
            #expect(seen == (0...10).map { "r/\($0)" })
        }
    }

    @Test func aKeepAliveGoesOnThroughARestartAndEndsWhenTheLeaseIsGone() async throws {
        try await withServer { server, client in
            let lease = try await client.grantLease(ttl: 3)
            var renewals = client.keepingAlive(lease: lease.id).makeAsyncIterator()
            #expect(try await renewals.next()?.ttl == 3)
            server.terminate()
            try await server.start()
            // Renewed again through a new stream (each second: a third of 3 s).
            #expect(try await renewals.next()?.ttl == 3)
            try await client.revokeLease(lease.id)
            await #expect(throws: EtcdClientError(code: .notFound, message: "etcdserver: requested lease not found")) {
                while try await renewals.next() != nil {}
            }
        }
    }

    /// With auth on, a restart loses the member's simple tokens: both streams are refused with
    /// `invalid auth token` when they reopen, log in again and go on, as clientv3's do.
    @Test func streamsLogInAgainAfterTheirMemberForgotTheToken() async throws {
        try await withServer { server, setup in
            _ = try await setup.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "root"; $0.password = "root" })
            _ = try await setup.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = "root" })
            _ = try await setup.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = "root"; $0.role = "root" })
            _ = try await setup.call(Etcdserverpb_AuthRPCs.authEnable, .init())
            let client = try EtcdClient(
                endpoints: ["http://127.0.0.1:\(server.port)"], credentials: EtcdCredentials(user: "root", password: "root"))
            defer { Task { await client.close() } }
            let lease = try await client.grantLease(ttl: 3)
            var renewals = client.keepingAlive(lease: lease.id).makeAsyncIterator()
            #expect(try await renewals.next()?.ttl == 3)
            let start = try await client.get("a/").header.revision + 1
            var events = client.resumingWatch(Data("a/".utf8), rangeEnd: prefixEnd("a/"), startRevision: start).makeAsyncIterator()
            try await client.put("a/1", "x")
            #expect(try await events.next()?.events.map(\.kv.key) == [Data("a/1".utf8)])
            server.terminate()
            try await server.start()
            #expect(try await renewals.next()?.ttl == 3)
            try await client.put("a/2", "x")
            #expect(try await events.next()?.events.map(\.kv.key) == [Data("a/2".utf8)])
        }
    }
}
