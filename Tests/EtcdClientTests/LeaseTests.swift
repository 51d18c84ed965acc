import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf
import TestSupport
import Testing

/// The Lease service over the wire, against swift-etcd and Debian's etcd: the same answers.
@Suite("Leases over gRPC", .server, .serialized)
struct LeaseTests {
    private func withServer(_ kind: ServerProcess.Kind, _ body: (EtcdClient) async throws -> Void) async throws {
        try await ServerProcess.withFreshServer(kind) { _, client in try await body(client) }
    }

    private func keys(_ response: Etcdserverpb_LeaseTimeToLiveResponse) -> [String] {
        response.keys.map { String(decoding: $0, as: UTF8.self) }
    }

    /// A client refreshing a lease sends one request, half-closes and reads until the end:
    /// etcd answers every request, then ends the stream with OK.
    @Test(arguments: EtcdClientTests.kinds)
    func keepAliveEndsWithOKAfterTheClientHalfCloses(kind: ServerProcess.Kind) async throws {
        try await ServerProcess.withFreshServer(kind) { server, client in
            let lease = try await client.grantLease(ttl: 60)
            let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.port))
            defer { Task { await connection.close() } }
            let call = connection.makeStreamingCall(
                Etcdserverpb_LeaseRPCs.leaseKeepAlive.path, timeout: .seconds(10),
                requestType: Etcdserverpb_LeaseKeepAliveRequest.self, responseType: Etcdserverpb_LeaseKeepAliveResponse.self)
            for _ in 0..<3 { call.send(.with { $0.id = lease.id }) }
            call.finishSending()
            var ttls: [Int64] = []
            for try await response in call.responses { ttls.append(response.ttl) }
            #expect(ttls == [60, 60, 60])
            #expect(try await call.result.get().status == .ok)
        }
    }

    @Test(arguments: EtcdClientTests.kinds)
    func grantsAttachmentsKeepAlivesAndRevocationsAnswerAsEtcdDoes(kind: ServerProcess.Kind) async throws {
        try await withServer(kind) { client in
            // TTLs below the minimum (1.5 election timeouts, rounded up: 2 s) are raised.
            let short = try await client.grantLease(ttl: 1)
            #expect(short.ttl == 2)
            #expect(short.header.revision == 1)
            let other = try await client.grantLease(ttl: 600, id: 0x8888)
            let lease = try await client.grantLease(ttl: 60, id: 0x7777)
            #expect(lease.id == 0x7777)
            #expect(lease.ttl == 60)
            await #expect(throws: EtcdClientError(code: .failedPrecondition, message: "etcdserver: lease already exists")) {
                try await client.grantLease(ttl: 60, id: 0x7777)
            }
            await #expect(throws: EtcdClientError(code: .outOfRange, message: "etcdserver: too large lease TTL")) {
                try await client.grantLease(ttl: 9_000_000_001)
            }
            let listed = try await client.call(Etcdserverpb_LeaseRPCs.leaseLeases, Etcdserverpb_LeaseLeasesRequest())
            // (The 2 s lease may have expired already on a loaded machine.)
            #expect(Set(listed.leases.map(\.id)).subtracting([short.id]) == [other.id, 0x7777])

            // Attach, replace, detach.
            try await client.put("a", "1", lease: 0x7777)
            try await client.put("b", "1", lease: 0x7777)
            try await client.put("c", "1", lease: other.id)
            try await client.put("c", "2", lease: 0x7777)
            #expect(keys(try await client.leaseTimeToLive(0x7777, keys: true)).sorted() == ["a", "b", "c"])
            #expect(keys(try await client.leaseTimeToLive(other.id, keys: true)) == [])
            try await client.put("b", "2")
            _ = try await client.delete(Data("c".utf8))
            // ignore_lease keeps the key's lease.
            _ = try await client.call(Etcdserverpb_KVRPCs.put, .with {
                $0.key = Data("a".utf8)
                $0.value = Data("3".utf8)
                $0.ignoreLease = true
            })
            let timeToLive = try await client.leaseTimeToLive(0x7777, keys: true)
            #expect(keys(timeToLive) == ["a"])
            #expect(timeToLive.grantedTtl == 60)
            #expect(timeToLive.ttl > 50 && timeToLive.ttl <= 60)
            await #expect(throws: EtcdClientError(code: .notFound, message: "etcdserver: requested lease not found")) {
                try await client.put("x", "1", lease: 0x1234)
            }
            // A txn compares a key's lease.
            let compared = try await client.txn(.with {
                $0.compare = [.with {
                    $0.key = Data("a".utf8)
                    $0.target = .lease
                    $0.result = .equal
                    $0.targetUnion = .lease(0x7777)
                }]
            })
            #expect(compared.succeeded)

            // Keep-alive: the granted TTL; an unknown lease gets TTL 0 and the stream goes on.
            let keepAlive = try await client.keepAliveStream()
            var answers = keepAlive.responses.makeAsyncIterator()
            try await keepAlive.keepAlive(0x7777)
            let renewed = try await answers.next()
            #expect(renewed?.id == 0x7777)
            #expect(renewed?.ttl == 60)
            try await keepAlive.keepAlive(0x1234)
            let unknown = try await answers.next()
            #expect(unknown?.id == 0x1234)
            #expect(unknown?.ttl == 0)
            keepAlive.close()

            // Revoking deletes the attached keys in one revision.
            let before = try await client.get("a").header.revision
            try await client.put("d", "1", lease: 0x7777)
            let revoked = try await client.revokeLease(0x7777)
            #expect(revoked.header.revision == before + 2)
            #expect(try await client.get("a").kvs.isEmpty)
            #expect(try await client.get("d").kvs.isEmpty)
            #expect(try await client.get("b").kvs.count == 1)
            let gone = try await client.leaseTimeToLive(0x7777)
            #expect(gone.ttl == -1)
            await #expect(throws: EtcdClientError(code: .notFound, message: "etcdserver: requested lease not found")) {
                try await client.revokeLease(0x7777)
            }
            // A lease without keys: revoking it changes no revision.
            #expect(try await client.revokeLease(other.id).header.revision == revoked.header.revision)
        }
    }

    @Test(arguments: EtcdClientTests.kinds)
    func anExpiredLeaseTakesItsKeysWithIt(kind: ServerProcess.Kind) async throws {
        try await withServer(kind) { client in
            // The clock starts before the grant is sent: the server's countdown starts
            // later, so the lifetime seen here can only be longer than the TTL.
            let granted = ContinuousClock.now
            let lease = try await client.grantLease(ttl: 2)
            try await client.put("expiring", "soon", lease: lease.id)
            var gone: ContinuousClock.Instant?
            while gone == nil, ContinuousClock.now < granted + .seconds(30) {
                if try await client.get("expiring").kvs.isEmpty { gone = .now }
                try await Task.sleep(for: .milliseconds(50))
            }
            let lifetime = try #require(gone) - granted
            // Never before its TTL; on a fresh single member, within the TTL plus the
            // election timeout a new leader adds (etcd adds it too), plus slack.
            #expect(lifetime >= .seconds(2))
            #expect(lifetime < .seconds(6))
            #expect(try await client.leaseTimeToLive(lease.id).ttl == -1)
        }
    }

    @Test func leasesTheirKeysAndCountdownsSurviveKillDashNine() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lease-restart-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try await ServerProcess(dataDirectory: directory)
        try await server.start()
        defer { server.kill9() }
        let before = try EtcdClient(endpoints: ["http://127.0.0.1:\(server.port)"])
        let lease = try await before.grantLease(ttl: 600)
        try await before.put("a", "1", lease: lease.id)
        try await before.put("b", "1", lease: lease.id)
        try await before.put("b", "2")  // detached again
        let short = try await before.grantLease(ttl: 3)
        try await before.put("c", "1", lease: short.id)
        await before.close()

        server.kill9()
        try await server.start()
        let client = try EtcdClient(endpoints: ["http://127.0.0.1:\(server.port)"])
        defer { Task { await client.close() } }
        let restored = try await client.leaseTimeToLive(lease.id, keys: true)
        #expect(restored.grantedTtl == 600)
        #expect(restored.ttl > 590)
        #expect(restored.keys == [Data("a".utf8)])
        // The short lease still expires, and takes its key.
        let deadline = ContinuousClock.now + .seconds(30)
        while try await !client.get("c").kvs.isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(try await client.get("c").kvs.isEmpty)
        #expect(try await client.leaseTimeToLive(short.id).ttl == -1)
        _ = try await client.revokeLease(lease.id)
        #expect(try await client.get("a").kvs.isEmpty)
        #expect(try await client.get("b").kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["2"])
    }

    /// Debian's `etcdctl` with a real lease against both servers: the same output once the
    /// lease ID and the seconds left are normalised.
    @Test func etcdctlLeaseCommandsPrintWhatTheyPrintAgainstEtcd() async throws {
        var transcripts: [ServerProcess.Kind: [String]] = [:]
        for kind in EtcdClientTests.kinds {
            try await ServerProcess.withFreshServer(kind) { server, _ in
                func etcdctl(_ arguments: [String]) async throws -> String {
                    let run = try await runTool(
                        URL(fileURLWithPath: "/usr/bin/etcdctl"), ["--endpoints", "127.0.0.1:\(server.port)"] + arguments,
                        environment: ["ETCDCTL_API": "3"])
                    return "exit \(run.status): " + run.output
                }
                let granted = try await etcdctl(["lease", "grant", "600"])
                // "exit 0: lease 694d7b1c3e9c5f0a granted with TTL(600s)"
                let id = try #require(granted.split(separator: " ").dropFirst(3).first.map(String.init))
                let decimal = try #require(Int64(id, radix: 16)).description
                var lines = [granted]
                for command in [
                    ["put", "k", "v", "--lease=\(id)"], ["put", "j", "v", "--lease=\(id)"],
                    ["lease", "timetolive", id, "--keys"], ["lease", "timetolive", id, "--keys", "-w", "json"],
                    ["lease", "keep-alive", "--once", id], ["lease", "list"],
                    ["get", "k", "-w", "json"], ["lease", "revoke", id], ["get", "k"], ["lease", "timetolive", id],
                ] {
                    lines.append(try await etcdctl(command))
                }
                transcripts[kind] = lines.map { line in
                    line.replacingOccurrences(of: id, with: "ID")
                        .replacingOccurrences(of: decimal, with: "ID")
                        .replacing(/remaining\(\d+s\)/, with: "remaining(Ns)")
                        .replacing(/"ttl":\d+/, with: "\"ttl\":N")
                        .replacing(/"(cluster_id|member_id|raft_term)":\d+/) { "\"\($0.1)\":X" }
                        // etcd lists a lease's keys in Go map order (random): compare them sorted.
                        .replacing(/attached keys\(\[([^\]]*)\]\)/) { "attached keys([\($0.1.split(separator: " ").sorted().joined(separator: " "))])" }
                        .replacing(/"keys":\[([^\]]*)\]/) { "\"keys\":[\($0.1.split(separator: ",").sorted().joined(separator: ","))]" }
                }
            }
        }
        if let reference = transcripts[.etcd] {
            #expect(transcripts[.swiftEtcd] == reference)
        }
        #expect(transcripts[.swiftEtcd]?.contains { $0.contains("attached keys([j k])") } == true)
        #expect(transcripts[.swiftEtcd]?.last?.contains("already expired") == true)
    }
}
