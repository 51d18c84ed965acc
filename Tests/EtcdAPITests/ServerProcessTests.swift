import EtcdProto
import Foundation
import GRPCWire
import Locking
import NIOCore
import NIOPosix
import NIOSSL
import SwiftProtobuf
import Synchronization
import TestSupport
import Testing

@Suite("swift-etcd as a process", .server, .serialized)
struct ServerProcessTests {
    private func withDataDirectory(_ body: (URL) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swift-etcd-process-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try await body(directory)
    }

    private static func put(_ connection: GRPCClientConnection, _ key: String, _ value: String) async throws -> Int64 {
        let request = Etcdserverpb_PutRequest.with { $0.key = Data(key.utf8); $0.value = Data(value.utf8) }
        let response = try await connection.unary(
            Etcdserverpb_KVRPCs.put.path, request, timeout: .seconds(10), responseType: Etcdserverpb_PutResponse.self)
        return response.header.revision
    }

    private static func get(_ connection: GRPCClientConnection, _ key: String) async throws -> Etcdserverpb_RangeResponse {
        try await connection.unary(
            Etcdserverpb_KVRPCs.range.path, Etcdserverpb_RangeRequest.with { $0.key = Data(key.utf8) }, timeout: .seconds(10),
            responseType: Etcdserverpb_RangeResponse.self)
    }

    @Test func aGracefulRestartKeepsData() async throws {
        try await withDataDirectory { directory in
            let server = try await ServerProcess(dataDirectory: directory)
            try await server.start()
            var connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.port))
            let revision = try await Self.put(connection, "kept", "across restarts")
            await connection.close()
            server.terminate()
            try await server.start()
            connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.port))
            let response = try await Self.get(connection, "kept")
            #expect(response.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["across restarts"])
            #expect(response.kvs.first?.modRevision == revision)
            await connection.close()
            server.terminate()
        }
    }

    /// A second process on a data directory in use waits (saying so) until the first exits,
    /// as etcd's does, instead of running beside it on the same log and backend. The
    /// directories are private to the user and hold only etcd's layout; the private directory
    /// of the gateway's socket that a killed process left is removed by the next start.
    @Test func aSecondProcessWaitsForTheDataDirectoryAndTheFirstKeepsItPrivate() async throws {
        try await withDataDirectory { directory in
            let first = try await ServerProcess(dataDirectory: directory)
            try await first.start()
            let connection = try await first.connect()
            let revision = try await Self.put(connection, "owner", "first")
            await connection.close()
            for path in ["", "/member", "/member/snap", "/member/wal"] {
                let attributes = try FileManager.default.attributesOfItem(atPath: directory.path + path)
                #expect((attributes[.posixPermissions] as? Int) == 0o700, "\(path)")
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path + "/member").sorted() == ["snap", "wal"])
            let firstPID = try #require(first.processIdentifier)
            // Where the server makes it: the temporary directory, unless its path is long.
            let temporary = FileManager.default.temporaryDirectory.path
            let gatewayDirectories = {
                try FileManager.default.contentsOfDirectory(atPath: temporary.utf8.count > 60 ? "/tmp" : temporary)
                    .filter { $0.hasPrefix("swift-etcd-gateway-\(firstPID)-") }
            }
            #expect(try gatewayDirectories().count == 1)

            let log = directory.deletingLastPathComponent().appendingPathComponent("\(directory.lastPathComponent).second.log")
            defer { try? FileManager.default.removeItem(at: log) }
            let second = try await ServerProcess(dataDirectory: directory, logFile: log)
            try await second.start(waitUntilServing: false)
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline,
                !((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("another etcd process is using the data directory")
            {
                try await Task.sleep(for: .milliseconds(50))
            }
            let waiting = try String(contentsOf: log, encoding: .utf8)
            #expect(waiting.contains(#""msg":"another etcd process is using the data directory and holds its lock; waiting for it to exit before starting","path":"\#(directory.path)""#))
            #expect(!waiting.contains("ready to serve client requests"))
            #expect(second.isRunning)

            first.kill9()
            try await second.waitUntilServing()
            let reconnected = try await second.connect()
            let response = try await Self.get(reconnected, "owner")
            #expect(response.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["first"])
            #expect(response.kvs.first?.modRevision == revision)
            await reconnected.close()
            let gateway = try await HTTPProbe.post("/v3/kv/range", #"{"key":"b3duZXI="}"#, port: second.port)
            #expect(gateway.status == 200)
            #expect(gateway.body.contains(#""value":"Zmlyc3Q=""#))
            #expect(try gatewayDirectories().isEmpty)
            second.terminate()
        }
    }

    /// A byte the disk changed inside a stored value (SQLite itself sees nothing wrong) is
    /// never served: the read fails with etcd's DATA_LOSS `corrupt cluster`, the member raises
    /// the CORRUPT alarm for itself, and from then on refuses requests as etcd does.
    @Test func aValueChangedOnDiskIsNotServed() async throws {
        try await withDataDirectory { directory in
            let server = try await ServerProcess(dataDirectory: directory)
            try await server.start()
            var connection = try await server.connect()
            let value = String(repeating: "Q", count: 64)
            _ = try await Self.put(connection, "damaged", value)
            _ = try await Self.put(connection, "intact", "fine")
            await connection.close()
            server.terminate()

            let path = directory.path + "/member/snap/backend.sqlite"
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            let at = try #require(bytes.indices.first { bytes[$0..<min($0 + 64, bytes.count)].elementsEqual(value.utf8) })
            bytes[at + 10] = UInt8(ascii: "Z")
            try Data(bytes).write(to: URL(fileURLWithPath: path))

            try await server.start()
            connection = try await server.connect()
            #expect(try await Self.get(connection, "intact").kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["fine"])
            await #expect(throws: GRPCStatus(.dataLoss, "etcdserver: corrupt cluster")) { _ = try await Self.get(connection, "damaged") }
            var alarms = Etcdserverpb_AlarmResponse()
            for _ in 0..<100 where alarms.alarms.isEmpty {
                alarms = try await connection.unary(
                    Etcdserverpb_MaintenanceRPCs.alarm.path, Etcdserverpb_AlarmRequest.with { $0.action = .get }, timeout: .seconds(10),
                    responseType: Etcdserverpb_AlarmResponse.self)
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(alarms.alarms.map(\.alarm) == [.corrupt])
            #expect(alarms.alarms.map(\.memberID) == [alarms.header.memberID])
            await #expect(throws: GRPCStatus(.dataLoss, "etcdserver: corrupt cluster")) { _ = try await Self.get(connection, "intact") }
            await connection.close()
            server.terminate()
        }
    }

    @Test func etcdEnvironmentVariablesConfigureTheServer() async throws {
        try await withDataDirectory { directory in
            let server = try await ServerProcess(dataDirectory: directory)
            try await server.start(environment: ["ETCD_MAX_TXN_OPS": "2"])
            let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.port))
            let threeOps = Etcdserverpb_TxnRequest.with {
                $0.success = (0..<3).map { index in .with { $0.requestPut = .with { $0.key = Data("k\(index)".utf8) } } }
            }
            await #expect(throws: GRPCStatus(.invalidArgument, "etcdserver: too many operations in txn request")) {
                _ = try await connection.unary(Etcdserverpb_KVRPCs.txn.path, threeOps, responseType: Etcdserverpb_TxnResponse.self)
            }
            await connection.close()
            server.terminate()
        }
    }

    /// kubeadm's settings through `ETCD_*` variables, as a systemd unit or a manifest sets them.
    @Test func tlsFromEnvironmentVariables() async throws {
        try await withDataDirectory { directory in
            let file = TestCertificates.file
            let server = try await ServerProcess(dataDirectory: directory, tls: .kubeadm())
            // The flags TestTLS adds are dropped in favour of the variables: only the URLs stay https.
            try await server.start(environment: [
                "ETCD_CERT_FILE": try file("server.pem"), "ETCD_KEY_FILE": try file("server-key.pem"),
                "ETCD_TRUSTED_CA_FILE": try file("ca.pem"), "ETCD_CLIENT_CERT_AUTH": "true",
                "ETCD_PEER_CERT_FILE": try file("peer.pem"), "ETCD_PEER_KEY_FILE": try file("peer-key.pem"),
                "ETCD_PEER_TRUSTED_CA_FILE": try file("ca.pem"), "ETCD_PEER_CLIENT_CERT_AUTH": "true",
            ], arguments: [], tlsFlags: false)
            let connection = try await server.connect()
            #expect(try await Self.put(connection, "over", "tls") > 1)
            await connection.close()
            // Without a client certificate the same port refuses.
            var anonymous = TLSConfiguration.makeClientConfiguration()
            anonymous.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(file("ca.pem")))
            await #expect(throws: (any Error).self) {
                let refused = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.port, tls: anonymous))
                defer { Task { await refused.close() } }
                _ = try await Self.get(refused, "over")
            }
            server.terminate()
        }
    }

    @Test func unusableCertificatesStopTheStartWithTheFlagAndFile() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swift-etcd-tls-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (status, output) = try await runTool(ServerProcess.binary, [
            "--data-dir", directory.path, "--listen-client-urls", "https://127.0.0.1:1", "--advertise-client-urls", "https://127.0.0.1:1",
            "--cert-file", try TestCertificates.file("expired.pem"), "--key-file", try TestCertificates.file("expired-key.pem"),
        ])
        #expect(status != 0)
        #expect(output.contains("--cert-file: the certificate in \(try TestCertificates.file("expired.pem")) expired at 2020-01-02"), "\(output)")
        // Nothing was written: the data directory was never made.
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    /// 2,000 concurrent puts, SIGKILL once a few hundred are acknowledged, restart: every
    /// acknowledged put is there with its exact revision. Three rounds on one data directory.
    @Test func killDashNineLosesNoAcknowledgedWrite() async throws {
        try await withDataDirectory { directory in
            let server = try await ServerProcess(dataDirectory: directory)
            for round in 1...3 {
                try await server.start()
                let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.port))
                let acknowledged = Acknowledged()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for worker in 0..<50 {
                        group.addTask {
                            for index in 0..<40 {
                                let key = "r\(round)-w\(worker)-\(index)"
                                guard let revision = try? await Self.put(connection, key, key) else { return }
                                acknowledged.writes.withLock { $0[key] = revision }
                            }
                        }
                    }
                    group.addTask {
                        let deadline = ContinuousClock.now + .seconds(60)
                        while acknowledged.writes.withLock({ $0.count }) < 300, ContinuousClock.now < deadline {
                            try await Task.sleep(for: .milliseconds(5))
                        }
                        server.kill9()
                    }
                    try await group.waitForAll()
                }
                await connection.close()
                let acked = acknowledged.writes.withLock { $0 }
                #expect(acked.count >= 300, "round \(round)")

                try await server.start()
                let check = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.port))
                var lost: [String] = []
                for (key, revision) in acked {
                    let response = try await Self.get(check, key)
                    if response.kvs.first?.modRevision != revision || response.kvs.first?.value != Data(key.utf8) {
                        lost.append(key)
                    }
                }
                #expect(lost.isEmpty, "round \(round): \(lost.count) acknowledged writes lost or changed, e.g. \(lost.prefix(3))")
                let status = try await check.unary(
                    Etcdserverpb_MaintenanceRPCs.status.path, Etcdserverpb_StatusRequest(),
                    responseType: Etcdserverpb_StatusResponse.self)
                #expect(status.header.revision >= acked.values.max() ?? 0)
                await check.close()
                server.kill9()
            }
        }
    }
}

/// Acknowledged puts (key to revision), recorded from many tasks.
private final class Acknowledged: Sendable {
    let writes = Locked<[String: Int64]>([:])
}
