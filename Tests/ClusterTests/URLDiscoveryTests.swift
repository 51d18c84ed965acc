import EtcdClient
import EtcdProto
import Foundation
import Testing
import TestSupport

/// The three members of `cluster` elect a leader, list one another with their names and peer
/// URLs (the real `etcdctl member list`) and serve a write of `value` and its read; returns a
/// client of all three, for the caller to close.
private func expectFormedCluster(_ cluster: ClusterProcesses, writing value: String) async throws -> EtcdClient {
    _ = try await cluster.waitForLeader()
    let members = try await cluster.etcdctl(["member", "list"], endpoints: [0, 1, 2])
    #expect(members.status == 0)
    for index in 0..<3 {
        #expect(members.output.contains(", started, m\(index), \(cluster.peerURL(index)), "), "\(members.output)")
    }
    let client = try cluster.client()
    try await client.put("found", value)
    #expect(try await client.get("found").kvs.first?.value == Data(value.utf8))
    return client
}

/// `--discovery <url>`: members find each other through a real discovery service — Debian's
/// `etcd-discovery` (`discovery.etcd.io`, the service etcd's docs point to) in front of Debian's
/// etcd with its v2 API, both on loopback ports the test picks.
@Suite(
    "A cluster bootstrapped through a discovery service", .cluster, .serialized,
    .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/discovery.etcd.io")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/curl")))
struct URLDiscoveryTests {
    /// The discovery service and the etcd that stores its registrations.
    private final class DiscoveryService: Sendable {
        let store: ServerProcess
        let process: Process
        let url: String

        init(directory: URL) async throws {
            store = try await ServerProcess(
                dataDirectory: directory.appendingPathComponent("store"), kind: .etcd, logFile: directory.appendingPathComponent("store.log"))
            try await store.start(arguments: ["--enable-v2"])
            let port = try await ServerProcess.freePort()
            url = "http://127.0.0.1:\(port)"
            process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/discovery.etcd.io")
            process.arguments = ["--addr", "127.0.0.1:\(port)", "--etcd", store.clientURL, "--host", url]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try ChildProcesses.launch(process)
            // Serving once it answers.
            for _ in 0..<100 {
                if try await Self.curl(["\(url)/health"]).status == 0 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
        }

        /// A new discovery URL for a cluster of `size`, as `curl -X PUT <service>/new?size=N` makes.
        func newToken(size: Int) async throws -> String {
            let made = try await Self.curl(["-X", "PUT", "\(url)/new?size=\(size)"])
            #expect(made.status == 0, "\(made.output)")
            return made.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        static func curl(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            try await runTool(URL(fileURLWithPath: "/usr/bin/curl"), ["-sS", "--fail", "--max-time", "10"] + arguments)
        }

        func stop() {
            kill(process.processIdentifier, SIGKILL)
            ChildProcesses.waitForExit(process)
            store.kill9()
        }
    }

    /// An HTTP proxy for absolute-URI requests (what `--discovery-proxy` sends), logging each
    /// request line and status on standard error.
    private static let forwardingProxy = """
        import http.server, sys, urllib.error, urllib.request
        class Forward(http.server.BaseHTTPRequestHandler):
            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = urllib.request.Request(self.path, data=self.rfile.read(length) if length else None, method=self.command)
                if self.headers.get("Content-Type"):
                    request.add_header("Content-Type", self.headers["Content-Type"])
                try:
                    answer = urllib.request.urlopen(request, timeout=60)
                    status, body, headers = answer.status, answer.read(), answer.headers
                except urllib.error.HTTPError as error:
                    status, body, headers = error.code, error.read(), error.headers
                self.send_response(status)
                for name in ("Content-Type", "X-Etcd-Index"):
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            do_GET = do_PUT = forward
        http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Forward).serve_forever()
        """

    /// Arguments of member `index` of `cluster` bootstrapping through `token`.
    private static func arguments(_ cluster: ClusterProcesses, _ index: Int, token: String) -> [String] {
        let peer = cluster.peerURL(index)
        return ["--name", "m\(index)", "--discovery", token, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer]
            + ClusterTests.timers
    }

    @Test("three members register, wait for each other and form the cluster; a restart needs no service")
    func threeMembersThroughTheService() async throws {
        let cluster = try await ClusterProcesses(size: 3)
        defer { cluster.destroy() }
        let service = try await DiscoveryService(directory: cluster.directory)
        defer { service.stop() }
        let token = try await service.newToken(size: 3)

        try await cluster.start { Self.arguments(cluster, $0, token: token) }
        let client = try await expectFormedCluster(cluster, writing: "through the service")
        defer { Task { await client.close() } }

        // The service holds the three registrations, each `name=peer-url` under its member ID.
        let registry = try await DiscoveryService.curl([token]).output
        for index in 0..<3 { #expect(registry.contains("\"value\":\"m\(index)=\(cluster.peerURL(index))\"")) }
        let log = try String(contentsOf: cluster.members[0].logFile!, encoding: .utf8)
        #expect(log.contains("\"msg\":\"found all needed peers from discovery server\""))

        // A member with a log starts from it, as etcd does: the service is not asked again.
        service.stop()
        cluster.members[1].kill9()
        try await cluster.members[1].start(arguments: Self.arguments(cluster, 1, token: token))
        let restarted = try cluster.client([1])
        #expect(try await restarted.get("found").kvs.first?.value == Data("through the service".utf8))
        await restarted.close()
    }

    @Test("a member finding the cluster full, a token without a size, and contradicting flags stop the start with etcd's messages and leave no data")
    func refusalsNameTheProblemAndWriteNothing() async throws {
        let cluster = try await ClusterProcesses(size: 2)
        defer { cluster.destroy() }
        let service = try await DiscoveryService(directory: cluster.directory)
        defer { service.stop() }
        let token = try await service.newToken(size: 1)

        // The first member registers through an HTTP proxy (`--discovery-proxy`): a small
        // forwarding proxy in Python that logs each request line it forwards.
        let proxyPort = try await ServerProcess.freePort()
        let proxyLog = cluster.directory.appendingPathComponent("proxy.log")
        _ = FileManager.default.createFile(atPath: proxyLog.path, contents: nil)
        let proxy = Process()
        proxy.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        proxy.arguments = ["-c", Self.forwardingProxy, "\(proxyPort)"]
        proxy.standardOutput = FileHandle.nullDevice
        proxy.standardError = try FileHandle(forWritingTo: proxyLog)
        try ChildProcesses.launch(proxy)
        defer {
            kill(proxy.processIdentifier, SIGKILL)
            ChildProcesses.waitForExit(proxy)
        }
        try await Task.sleep(for: .milliseconds(500))
        try await cluster.members[0].start(
            arguments: Self.arguments(cluster, 0, token: token) + ["--discovery-proxy", "127.0.0.1:\(proxyPort)"])
        let forwarded = try String(contentsOf: proxyLog, encoding: .utf8)
        #expect(forwarded.contains("\"GET \(token)/_config/size HTTP/1.1\" 200"), "\(forwarded)")
        #expect(forwarded.contains("\"PUT \(token)/"), "\(forwarded)")
        func second(_ extra: [String]) async throws -> (status: Int32, output: String) {
            let client = try await ServerProcess.freePort()
            return try await runTool(ServerProcess.binary, [
                "--data-dir", cluster.members[1].dataDirectory.path,
                "--listen-client-urls", "http://127.0.0.1:\(client)", "--advertise-client-urls", "http://127.0.0.1:\(client)",
            ] + extra, environment: ["PATH": "/usr/bin:/bin"])
        }
        let full = try await second(Self.arguments(cluster, 1, token: token))
        #expect(full.status == 1)
        #expect(full.output.contains("failed to join discovery cluster (discovery: cluster is full)"), "\(full.output)")
        #expect(full.output.contains("do not reuse discovery token; generate a new one to bootstrap a cluster"))

        // A token the service never made (well-formed: it routes only 32 hex digits).
        let sizeless = try await second(Self.arguments(cluster, 1, token: "\(service.url)/0123456789abcdef0123456789abcdef"))
        #expect(sizeless.status == 1)
        #expect(sizeless.output.contains("failed to join discovery cluster (discovery: size key not found)"), "\(sizeless.output)")
        #expect(!FileManager.default.fileExists(atPath: cluster.members[1].dataDirectory.appendingPathComponent("member").path))

        let twoWays = try await second(["--discovery", token, "--initial-cluster", "m1=\(cluster.peerURL(1))"])
        #expect(twoWays.status != 0)
        #expect(twoWays.output.contains("multiple discovery or bootstrap flags are set"))
        let proxyFallback = try await second(Self.arguments(cluster, 1, token: token) + ["--discovery-fallback", "proxy"])
        #expect(proxyFallback.status == 1)
        #expect(proxyFallback.output.contains("--discovery-fallback=proxy is not supported by swift-etcd"), "\(proxyFallback.output)")
    }
}

/// `--discovery-endpoints` and `--discovery-token`: etcd 3.6's v3 discovery, with Debian's etcd
/// and with swift-etcd as the discovery service (on loopback ports the test picks).
@Suite(
    "A cluster bootstrapped through an etcd cluster (v3 discovery)", .cluster, .serialized,
    .enabled(if: FileManager.default.isExecutableFile(atPath: ServerProcess.etcdBinary.path)))
struct V3DiscoveryTests {
    private static func arguments(_ cluster: ClusterProcesses, _ index: Int, service: ServerProcess, token: String) -> [String] {
        let peer = cluster.peerURL(index)
        return [
            "--name", "m\(index)", "--discovery-endpoints", service.clientURL, "--discovery-token", token,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        ] + ClusterTests.timers
    }

    @Test(
        "three members register in the service, watch for each other and form the cluster; a fourth finds it full; a token without a size is refused",
        arguments: [ServerProcess.Kind.etcd, .swiftEtcd])
    func threeMembersThroughAnEtcdCluster(service kind: ServerProcess.Kind) async throws {
        let cluster = try await ClusterProcesses(size: 3)
        defer { cluster.destroy() }
        let service = try await ServerProcess(dataDirectory: cluster.directory.appendingPathComponent("service"), kind: kind)
        try await service.start()
        defer { service.kill9() }
        let registry = try EtcdClient(endpoints: [service.clientURL])
        defer { Task { await registry.close() } }
        try await registry.put("/_etcd/registry/v3-test/_config/size", "3")

        try await cluster.start { Self.arguments(cluster, $0, service: service, token: "v3-test") }
        let client = try await expectFormedCluster(cluster, writing: "through etcd")
        defer { Task { await client.close() } }
        // Each member registered `name=peer-url` under its ID, which the cluster reports too.
        let registered = try await registry.get(
            Data("/_etcd/registry/v3-test/members/".utf8), rangeEnd: prefixEnd("/_etcd/registry/v3-test/members/"))
        let values: Set<String> = Set(registered.kvs.map { String(decoding: $0.value, as: UTF8.self) })
        let entries: Set<String> = Set((0..<3).map { "m\($0)=\(cluster.peerURL($0))" })
        #expect(values == entries)
        let ids: [UInt64] = try await client.call(Etcdserverpb_ClusterRPCs.memberList, Etcdserverpb_MemberListRequest()).members.map(\.id)
        let keys: Set<String> = Set(registered.kvs.map { String(String(decoding: $0.key, as: UTF8.self).split(separator: "/").last ?? "") })
        let hexIDs: Set<String> = Set(ids.map { String($0, radix: 16) })
        #expect(keys == hexIDs)

        // A fourth member finds the cluster full; a token without a size key is refused.
        let extra = try await ServerProcess.freePort()
        func fourth(token: String) async throws -> (status: Int32, output: String) {
            let client = try await ServerProcess.freePort()
            return try await runTool(ServerProcess.binary, [
                "--name", "m3", "--data-dir", cluster.directory.appendingPathComponent("m3").path,
                "--discovery-endpoints", service.clientURL, "--discovery-token", token,
                "--listen-peer-urls", "http://127.0.0.1:\(extra)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(extra)",
                "--listen-client-urls", "http://127.0.0.1:\(client)", "--advertise-client-urls", "http://127.0.0.1:\(client)",
            ], environment: ["PATH": "/usr/bin:/bin"])
        }
        let full = try await fourth(token: "v3-test")
        #expect(full.status == 1)
        #expect(full.output.contains("failed to join discovery cluster (discovery: cluster is full)"), "\(full.output)")
        let sizeless = try await fourth(token: "never-sized")
        #expect(sizeless.status == 1)
        #expect(sizeless.output.contains("failed to join discovery cluster (discovery: size key not found)"), "\(sizeless.output)")
        #expect(!FileManager.default.fileExists(atPath: cluster.directory.appendingPathComponent("m3/member").path))
        let tokenless = try await runTool(ServerProcess.binary, ["--discovery-endpoints", service.clientURL], environment: ["PATH": "/usr/bin:/bin"])
        #expect(tokenless.status != 0)
        #expect(tokenless.output.contains("--discovery-token must be set when --discovery-endpoints is set"), "\(tokenless.output)")
    }
}
