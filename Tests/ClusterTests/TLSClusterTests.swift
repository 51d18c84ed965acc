import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import NIOCore
import NIOSSL
import Testing
import TestSupport

/// Three `swift-etcd` processes started as kubeadm starts etcd: client and peer certificates,
/// `--client-cert-auth`, `--peer-client-cert-auth`, `https` everywhere.
@Suite("A TLS cluster as kubeadm runs etcd", .cluster, .serialized)
struct TLSClusterTests {
    /// Waits until member `index`'s own (serializable) view holds `key`, at most 30 s.
    func waitUntil(_ cluster: ClusterProcesses, member index: Int, holds key: String) async throws -> Bool {
        let client = try cluster.client([index])
        defer { Task { await client.close() } }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let response = try? await client.get(key, serializable: true), !response.kvs.isEmpty { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    @Test("writes replicate over peer TLS; a killed leader and a paused leader are replaced and catch up")
    func killedAndPausedLeaders() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers, tls: .kubeadm())
        defer { cluster.destroy() }
        let leader = try await cluster.startAndElect()
        let everyone = try cluster.client()
        defer { Task { await everyone.close() } }
        for index in 0..<20 { try await everyone.put("before-\(index)", "\(index)") }
        for member in 0..<3 { #expect(try await waitUntil(cluster, member: member, holds: "before-19")) }

        let members = try await cluster.etcdctl(["member", "list"], endpoints: [0, 1, 2])
        #expect(members.status == 0)
        #expect(members.output.split(separator: "\n").filter { $0.contains(", started, m") && $0.contains("https://127.0.0.1:") }.count == 3)
        let health = try await cluster.etcdctl(["endpoint", "health"], endpoints: [0, 1, 2])
        #expect(health.status == 0, "\(health.output)")

        cluster.members[leader].kill9()
        let survivors = (0..<3).filter { $0 != leader }
        let newLeader = try await cluster.waitForLeader(among: survivors)
        let survivorClient = try cluster.client(survivors)
        defer { Task { await survivorClient.close() } }
        for index in 0..<20 { try await survivorClient.put("after-kill-\(index)", "\(index)") }
        try await cluster.start(leader)
        #expect(try await waitUntil(cluster, member: leader, holds: "after-kill-19"))

        // A paused leader (SIGSTOP) is as good as cut off: the others elect, and when it resumes
        // it steps down and catches up over new TLS connections.
        let current = try await cluster.waitForLeader()
        cluster.members[current].signal(SIGSTOP)
        let others = (0..<3).filter { $0 != current }
        _ = try await cluster.waitForLeader(among: others)
        let othersClient = try cluster.client(others)
        defer { Task { await othersClient.close() } }
        for index in 0..<20 { try await othersClient.put("during-pause-\(index)", "\(index)") }
        cluster.members[current].signal(SIGCONT)
        #expect(try await waitUntil(cluster, member: current, holds: "during-pause-19"))
        _ = try await cluster.waitForLeader()

        // Every member ends with the same keyspace.
        var hashes: Set<UInt32> = []
        let revision = try await everyone.get("during-pause-19").header.revision
        for member in 0..<3 {
            let client = try cluster.client([member])
            var request = Etcdserverpb_HashKVRequest()
            request.revision = revision
            hashes.insert(try await client.call(Etcdserverpb_MaintenanceRPCs.hashKV, request).hash)
            await client.close()
        }
        #expect(hashes.count == 1)
        #expect(try await everyone.get(Data("a".utf8), rangeEnd: Data("e".utf8)).count == 60)
        _ = newLeader
    }

    @Test("members with --auto-tls and --peer-auto-tls form a cluster over self-signed certificates")
    func automaticTLS() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers, tls: .automatic())
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        let client = try cluster.client()
        defer { Task { await client.close() } }
        try await client.put("self", "signed")
        for member in 0..<3 { #expect(try await waitUntil(cluster, member: member, holds: "self")) }
        for member in 0..<3 {
            for side in ["client", "peer"] {
                let file = cluster.members[member].dataDirectory.appendingPathComponent("fixtures/\(side)/cert.pem").path
                #expect(FileManager.default.fileExists(atPath: file))
            }
        }
    }

    @Test("a peer with a certificate from another CA, or from an address its certificate does not name, is refused and logged; the cluster keeps serving")
    func strangersAreRefusedOnThePeerPort() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers, tls: .kubeadm())
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        let target = cluster.members[0]
        for name in ["other-client", "faraway"] {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(TestCertificates.file("ca.pem")))
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(TestCertificates.file("\(name).pem")).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: TestCertificates.file("\(name)-key.pem"), format: .pem))
            // A gRPC connection is only a way to open TLS to the peer port; the handshake or the
            // checks after it must fail.
            // A call waits for the server's verdict (closing at once could reset the connection
            // before the server reads the certificate).
            if let connection = try? await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: target.peerPort, tls: tls)) {
                _ = try? await connection.unary(
                    Grpc_Health_V1_HealthRPCs.check.path, Grpc_Health_V1_HealthCheckRequest(), timeout: .seconds(2),
                    responseType: Grpc_Health_V1_HealthCheckResponse.self)
                await connection.close()
            }
        }
        let log = cluster.directory.appendingPathComponent("m0.log")
        let deadline = ContinuousClock.now + .seconds(10)
        var refusals: [String] = []
        while ContinuousClock.now < deadline {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            refusals = text.split(separator: "\n").map(String.init).filter { $0.contains("rejected connection on peer endpoint") }
            if refusals.count >= 2 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(refusals.contains { $0.contains("tls: failed to verify client certificate") }, "\(refusals)")
        #expect(refusals.contains { $0.contains("remote address 127.0.0.1 is not in the certificate's subject alternative names") }, "\(refusals)")
        let client = try cluster.client()
        defer { Task { await client.close() } }
        try await client.put("still", "serving")
        #expect(try await waitUntil(cluster, member: 0, holds: "still"))
    }
}
