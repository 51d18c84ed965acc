import EtcdClient
import EtcdProto
import Foundation
import Testing
import TestSupport

/// `--discovery-srv`: members find each other through DNS SRV records served by a real DNS
/// server (Debian's dnsmasq) bound to 127.0.0.1 on a port the test picks.
@Suite("A cluster bootstrapped from DNS SRV records", .cluster, .serialized, .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/dnsmasq")))
struct SRVDiscoveryTests {
    /// dnsmasq answering only for `etcd.test`, with the given `--srv-host` records.
    private static func dnsServer(port: Int, records: [String], log: URL) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/dnsmasq")
        process.arguments = [
            "--no-daemon", "--conf-file=/dev/null", "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces",
            "--no-resolv", "--no-hosts", "--local=/etcd.test/", "--log-queries", "--log-facility=-",
        ] + records.map { "--srv-host=\($0)" }
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: log)
        process.standardError = process.standardOutput
        try ChildProcesses.launch(process)
        return process
    }

    @Test("three members from _etcd-server._tcp records: they find themselves, elect, serve; a member not in the records and a second bootstrap flag are refused")
    func threeMembersFromSRVRecords() async throws {
        let cluster = try await ClusterProcesses(size: 3)
        defer { cluster.destroy() }
        let dnsPort = try await ServerProcess.freePort()
        let dns = try Self.dnsServer(
            port: dnsPort, records: cluster.members.map { "_etcd-server._tcp.etcd.test,localhost,\($0.peerPort)" },
            log: cluster.directory.appendingPathComponent("dnsmasq.log"))
        defer {
            // SIGKILL: the test process's blocked SIGTERM is inherited, and dnsmasq would ignore it.
            kill(dns.processIdentifier, SIGKILL)
            ChildProcesses.waitForExit(dns)
        }
        try await Task.sleep(for: .milliseconds(300))

        func arguments(_ index: Int) -> [String] {
            let peer = "http://127.0.0.1:\(cluster.members[index].peerPort)"
            return [
                "--name", "m\(index)", "--discovery-srv", "etcd.test", "--discovery-srv-resolver", "127.0.0.1:\(dnsPort)",
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster-token", "srv-cluster",
            ] + ClusterTests.timers
        }
        try await cluster.start(with: arguments)
        _ = try await cluster.waitForLeader()

        let members = try await cluster.etcdctl(["member", "list"], endpoints: [0, 1, 2])
        #expect(members.status == 0)
        for index in 0..<3 {
            // Peer URLs as the records name them; names as each member published its own.
            #expect(members.output.contains(", started, m\(index), http://localhost:\(cluster.members[index].peerPort), "))
        }
        let client = try cluster.client()
        defer { Task { await client.close() } }
        try await client.put("srv", "found")
        #expect(try await client.get("srv").kvs.first?.value == Data("found".utf8))
        let log = try String(contentsOf: cluster.members[0].logFile!, encoding: .utf8)
        #expect(log.contains("\"msg\":\"got bootstrap from DNS for etcd-server\""))

        // A member whose advertised peer URL no record names cannot find itself.
        let stranger = try await ServerProcess.freePort()
        let refused = try await runTool(ServerProcess.binary, [
            "--name", "m9", "--data-dir", cluster.directory.appendingPathComponent("m9").path, "--discovery-srv", "etcd.test",
            "--discovery-srv-resolver", "127.0.0.1:\(dnsPort)", "--listen-peer-urls", "http://127.0.0.1:\(stranger)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(stranger)",
            "--listen-client-urls", "http://127.0.0.1:\(try await ServerProcess.freePort())",
            "--advertise-client-urls", "http://127.0.0.1:\(stranger)",
        ], environment: ["PATH": "/usr/bin:/bin"])
        #expect(refused.status == 1)
        #expect(refused.output.contains("cannot find local etcd member \\\"m9\\\" in SRV records"))
        #expect(!FileManager.default.fileExists(atPath: cluster.directory.appendingPathComponent("m9/member").path))
        let twoWays = try await runTool(
            ServerProcess.binary, ["--discovery-srv", "etcd.test", "--initial-cluster", "a=http://127.0.0.1:1"], environment: ["PATH": "/usr/bin:/bin"])
        #expect(twoWays.status != 0)
        #expect(twoWays.output.contains("multiple discovery or bootstrap flags are set"))
    }
}
