import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import Synchronization
import TestSupport
import Testing

/// The client against real servers: swift-etcd, and Debian's etcd as the reference.
@Suite("EtcdClient", .server, .serialized)
struct EtcdClientTests {
    static var kinds: [ServerProcess.Kind] {
        FileManager.default.isExecutableFile(atPath: ServerProcess.etcdBinary.path) ? [.swiftEtcd, .etcd] : [.swiftEtcd]
    }

    private func withServer(_ kind: ServerProcess.Kind, _ body: (ServerProcess, EtcdClient) async throws -> Void) async throws {
        try await ServerProcess.withFreshServer(kind, body)
    }

    @Test(arguments: kinds)
    func keyValueCallsReturnExactRevisions(kind: ServerProcess.Kind) async throws {
        try await withServer(kind) { _, client in
            let first = try await client.put("a", "1")
            #expect(first.header.revision == 2)
            let second = try await client.put(Data("b".utf8), Data("2".utf8), prevKV: true)
            #expect(second.header.revision == 3)
            #expect(!second.hasPrevKv)
            let both = try await client.get(Data("a".utf8), rangeEnd: Data("c".utf8))
            #expect(both.kvs.map { String(decoding: $0.key, as: UTF8.self) } == ["a", "b"])
            #expect(both.kvs.map(\.modRevision) == [2, 3])
            #expect(both.count == 2)
            let serializable = try await client.get("a", serializable: true)
            #expect(serializable.kvs.first?.value == Data("1".utf8))

            let txn = try await client.txn(
                .with { txn in
                    txn.compare = [.with { $0.key = Data("a".utf8); $0.target = .value; $0.result = .equal; $0.value = Data("1".utf8) }]
                    txn.success = [.with { $0.requestPut = .with { $0.key = Data("a".utf8); $0.value = Data("3".utf8) } }]
                })
            #expect(txn.succeeded)
            #expect(txn.header.revision == 4)
            let deleted = try await client.delete(Data("b".utf8), prevKV: true)
            #expect(deleted.deleted == 1)
            #expect(deleted.prevKvs.first?.value == Data("2".utf8))
            let old = try await client.get(Data("a".utf8), revision: 2)
            #expect(old.kvs.first?.value == Data("1".utf8))
            let status = try await client.status()
            #expect(status.header.revision == 5)
        }
    }

    @Test(arguments: kinds)
    func errorsCarryEtcdsCodeAndMessage(kind: ServerProcess.Kind) async throws {
        try await withServer(kind) { _, client in
            await #expect(throws: EtcdClientError(code: .invalidArgument, message: "etcdserver: key is not provided")) {
                try await client.put(Data(), Data("v".utf8))
            }
            await #expect(throws: EtcdClientError(code: .notFound, message: "etcdserver: requested lease not found")) {
                try await client.revokeLease(12345)
            }
            await #expect(throws: EtcdClientError(code: .outOfRange, message: "etcdserver: mvcc: required revision is a future revision")) {
                try await client.compact(revision: 100)
            }
        }
    }

    /// Reads between writes: a batch of puts that no read took the last state of writes the
    /// index in place, and a read arriving meanwhile waits for the batch (PublishedState).
    @Test(arguments: kinds)
    func readsSeeTheReadersOwnPutsWhileOthersPut(kind: ServerProcess.Kind) async throws {
        try await withServer(kind) { _, client in
            let readersDone = StopFlag()
            let others = try await withThrowingTaskGroup(of: Int.self) { group in
                for writer in 0..<12 {
                    group.addTask {
                        var count = 0
                        while !readersDone.isRaised {
                            _ = try await client.put("other-\(writer)-\(count % 50)", "\(count)")
                            count += 1
                        }
                        return count
                    }
                }
                group.addTask {
                    defer { readersDone.raise() }
                    try await withThrowingTaskGroup(of: Void.self) { readers in
                        for reader in 0..<4 {
                            readers.addTask {
                                for round in 0..<150 {
                                    let put = try await client.put("own-\(reader)", "\(round)")
                                    let read = try await client.get("own-\(reader)", serializable: round % 3 != 0)
                                    #expect(read.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["\(round)"])
                                    #expect(read.kvs.first?.modRevision == put.header.revision)
                                    #expect(read.header.revision >= put.header.revision)
                                }
                            }
                        }
                        try await readers.waitForAll()
                    }
                    return 0
                }
                return try await group.reduce(0, +)
            }
            #expect(others > 0)
        }
    }

    @Test func callsSkipAnEndpointThatIsDown() async throws {
        try await withServer(.swiftEtcd) { server, _ in
            // Nothing listens on port 1: the client moves on to the live endpoint.
            let client = try EtcdClient(endpoints: ["127.0.0.1:1", "127.0.0.1:\(server.port)"])
            for n in 0..<4 { try await client.put("k\(n)", "v") }
            let count = try await client.get(Data("k".utf8), rangeEnd: Data("l".utf8)).count
            #expect(count == 4)
            await client.close()
        }
    }

    @Test func aStoppedServerGivesAClearError() async throws {
        try await withServer(.swiftEtcd) { server, client in
            server.kill9()
            do {
                try await client.put("a", "1")
                Issue.record("a put to a stopped server succeeded")
            } catch {
                #expect((error as? EtcdClientError)?.code == .unavailable)
            }
        }
    }

    @Test func invalidEndpointsAreRefused() {
        #expect(throws: EtcdClientError(code: .invalidArgument, message: "invalid endpoint https://x (want host:port, http(s)://host:port or unix://path)")) {
            try EtcdClient(endpoints: ["https://x"])
        }
        #expect(throws: EtcdClientError(code: .invalidArgument, message: "invalid endpoint unix:// (want host:port, http(s)://host:port or unix://path)")) {
            try EtcdClient(endpoints: ["unix://"])
        }
        #expect(throws: EtcdClientError(code: .invalidArgument, message: "no endpoints")) { try EtcdClient(endpoints: []) }
    }

    /// Lease and watch against the reference etcd (swift-etcd gains them with their issues).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: ServerProcess.etcdBinary.path)))
    func leaseAndWatchWorkAgainstEtcd() async throws {
        try await withServer(.etcd) { _, client in
            let lease = try await client.grantLease(ttl: 60)
            #expect(lease.ttl == 60)
            let keepAlive = try await client.keepAliveStream()
            try await keepAlive.keepAlive(lease.id)
            var answers = keepAlive.responses.makeAsyncIterator()
            let answer = try await answers.next()
            #expect(answer?.id == lease.id)
            #expect(answer?.ttl == 60)
            keepAlive.close()

            let watch = try await client.watch(Data("w".utf8), prevKV: true)
            var events = watch.makeAsyncIterator()
            let created = try await events.next()
            #expect(created?.created == true)
            try await client.put("w", "one", lease: lease.id)
            try await client.put("w", "two")
            var seen: [String] = []
            while seen.count < 2, let response = try await events.next() {
                seen += response.events.map { String(decoding: $0.kv.value, as: UTF8.self) }
            }
            #expect(seen == ["one", "two"])
            watch.close()

            let ttl = try await client.leaseTimeToLive(lease.id, keys: true)
            #expect(ttl.keys == [Data("w".utf8)] || ttl.keys.isEmpty)
            try await client.revokeLease(lease.id)
            let gone = try await client.leaseTimeToLive(lease.id)
            #expect(gone.ttl == -1)
        }
    }
}

/// Set once, read by many tasks.
private final class StopFlag: Sendable {
    private let raised = Atomic<Bool>(false)
    var isRaised: Bool { raised.load(ordering: .relaxed) }
    func raise() { raised.store(true, ordering: .relaxed) }
}
