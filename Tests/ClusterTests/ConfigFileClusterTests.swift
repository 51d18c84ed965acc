import EtcdClient
import EtcdProto
import Foundation
import Testing
import TestSupport

/// A cluster started as a packaged etcd is: each member from its own `etcd.conf.yml`.
@Suite("A cluster from configuration files", .cluster, .serialized)
struct ConfigFileClusterTests {
    /// Member `index`'s configuration file, as kubeadm-style TLS deployments write it.
    private static func configuration(_ cluster: ClusterProcesses, member index: Int) throws -> String {
        let member = cluster.members[index]
        let file = TestCertificates.file
        let initialCluster = cluster.members.indices.map { "\(cluster.names[$0])=\(cluster.peerURL($0))" }.joined(separator: ",")
        return """
            name: \(cluster.names[index])
            data-dir: \(member.dataDirectory.path)
            listen-peer-urls: \(cluster.peerURL(index))
            initial-advertise-peer-urls: \(cluster.peerURL(index))
            listen-client-urls: \(member.clientURL)
            advertise-client-urls: \(member.clientURL)
            initial-cluster: \(initialCluster)
            initial-cluster-token: 'file-cluster'
            initial-cluster-state: 'new'
            heartbeat-interval: 50
            election-timeout: 500
            snapshot-count: 10000
            client-transport-security:
              cert-file: \(try file("server.pem"))
              key-file: \(try file("server-key.pem"))
              trusted-ca-file: \(try file("ca.pem"))
              client-cert-auth: true
            peer-transport-security:
              cert-file: \(try file("peer.pem"))
              key-file: \(try file("peer-key.pem"))
              trusted-ca-file: \(try file("ca.pem"))
              client-cert-auth: true
            log-level: info
            log-outputs: [stderr]

            """
    }

    @Test("three members, each from its etcd.conf.yml with client and peer TLS blocks: they elect, replicate, and etcdctl lists them over TLS")
    func threeMembersFromTheirFiles() async throws {
        let cluster = try await ClusterProcesses(size: 3, tls: .kubeadm())
        defer { cluster.destroy() }
        var files: [URL] = []
        for index in 0..<3 {
            let url = cluster.directory.appendingPathComponent("m\(index).conf.yml")
            try Self.configuration(cluster, member: index).write(to: url, atomically: true, encoding: .utf8)
            files.append(url)
        }
        try await cluster.start { ["--config-file", files[$0].path] }
        _ = try await cluster.waitForLeader()

        let members = try await cluster.etcdctl(["member", "list"], endpoints: [0, 1, 2])
        #expect(members.status == 0)
        for index in 0..<3 {
            #expect(members.output.contains(", started, m\(index), \(cluster.peerURL(index)), \(cluster.members[index].clientURL), false"))
        }
        let client = try cluster.client()
        defer { Task { await client.close() } }
        try await client.put("from-files", "yes")
        for index in 0..<3 {
            let view = try cluster.client([index])
            #expect(try await view.get("from-files").kvs.first?.value == Data("yes".utf8))
            await view.close()
        }
        // The client TLS block is in force: a plain-text client is refused.
        let plain = try await runTool(
            URL(fileURLWithPath: "/usr/bin/etcdctl"), ["--endpoints", "127.0.0.1:\(cluster.members[0].port)", "--dial-timeout", "2s", "get", "x"],
            environment: ["ETCDCTL_API": "3"])
        #expect(plain.status != 0)
    }
}
