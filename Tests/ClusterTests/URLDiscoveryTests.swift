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

        /// `publicURL`: where the discovery URLs it makes point (default: the service itself).
        init(directory: URL, publicURL: String? = nil) async throws {
            store = try await ServerProcess(
                dataDirectory: directory.appendingPathComponent("store"), kind: .etcd, logFile: directory.appendingPathComponent("store.log"))
            try await store.start(arguments: ["--enable-v2"])
            let port = try await ServerProcess.freePort()
            url = "http://127.0.0.1:\(port)"
            process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/discovery.etcd.io")
            process.arguments = ["--addr", "127.0.0.1:\(port)", "--etcd", store.clientURL, "--host", publicURL ?? url]
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

    /// A small Python HTTP server in front of the discovery service, logging each request line
    /// and status on standard error: `port` alone, an HTTP proxy for absolute-URI requests (what
    /// `--discovery-proxy` sends for `http` services) and for `CONNECT` tunnels (for `https`);
    /// `port upstream cert key`, an `https` front forwarding each request to `upstream`.
    private static let front = """
        import http.server, select, socket, ssl, sys, urllib.error, urllib.request
        class Forward(http.server.BaseHTTPRequestHandler):
            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                url = self.path if self.path.startswith("http") else sys.argv[2] + self.path
                request = urllib.request.Request(url, data=self.rfile.read(length) if length else None, method=self.command)
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
            def do_CONNECT(self):
                host, _, port = self.path.rpartition(":")
                target = socket.create_connection((host, int(port)), timeout=10)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.close_connection = True
                ends = [self.connection, target]
                while True:
                    readable, _, _ = select.select(ends, [], [], 120)
                    chunks = [(end, end.recv(65536)) for end in readable]
                    if not readable or any(not chunk for _, chunk in chunks):
                        break
                    for end, chunk in chunks:
                        (target if end is self.connection else self.connection).sendall(chunk)
                target.close()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Forward)
        if len(sys.argv) > 4:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[3], sys.argv[4])
            server.socket = context.wrap_socket(server.socket, server_side=True)
        server.serve_forever()
        """

    /// Starts ``front`` on `port` (default: a free one) with `arguments`, logging to `log`;
    /// returns its port and the process, for the caller to kill.
    private static func startFront(_ arguments: [String], log: URL, port: Int? = nil) async throws -> (port: Int, process: Process) {
        let chosen: Int
        if let port { chosen = port } else { chosen = try await ServerProcess.freePort() }
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", front, "\(chosen)"] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: log)
        try ChildProcesses.launch(process)
        for _ in 0..<50 {
            if (try? await runTool(URL(fileURLWithPath: "/usr/bin/python3"), [
                "-c", "import socket, sys; socket.create_connection(('127.0.0.1', \(chosen)), timeout=1)",
            ]).status) == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        return (chosen, process)
    }

    private static func stop(_ process: Process) {
        kill(process.processIdentifier, SIGKILL)
        ChildProcesses.waitForExit(process)
    }

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

        // The first member registers through an HTTP proxy (`--discovery-proxy`).
        let proxyLog = cluster.directory.appendingPathComponent("proxy.log")
        let proxy = try await Self.startFront([], log: proxyLog)
        defer { Self.stop(proxy.process) }
        try await cluster.members[0].start(
            arguments: Self.arguments(cluster, 0, token: token) + ["--discovery-proxy", "127.0.0.1:\(proxy.port)"])
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

    @Test("an https discovery service is checked against the CAs SSL_CERT_FILE names, directly and through a CONNECT tunnel")
    func httpsServiceDirectlyAndThroughATunnel() async throws {
        let cluster = try await ClusterProcesses(size: 3)
        defer { cluster.destroy() }
        // The service's URLs point at an https front (the test PKI's server certificate, for
        // localhost and 127.0.0.1) that forwards to it.
        let frontPort = try await ServerProcess.freePort()
        let service = try await DiscoveryService(directory: cluster.directory, publicURL: "https://localhost:\(frontPort)")
        defer { service.stop() }
        let frontLog = cluster.directory.appendingPathComponent("front.log")
        let front = try await Self.startFront(
            [service.url, try TestCertificates.file("server.pem"), try TestCertificates.file("server-key.pem")], log: frontLog,
            port: frontPort)
        defer { Self.stop(front.process) }
        let token = try await service.newToken(size: 3)
        #expect(token.hasPrefix("https://localhost:\(frontPort)/"), "\(token)")
        let proxyLog = cluster.directory.appendingPathComponent("proxy.log")
        let proxy = try await Self.startFront([], log: proxyLog)
        defer { Self.stop(proxy.process) }

        // Member 0 through the proxy's tunnel, the others directly; all trust the test CA
        // through SSL_CERT_FILE, as Go programs do.
        let environment = ["SSL_CERT_FILE": try TestCertificates.file("ca.pem")]
        for index in 0..<3 {
            let tunnel = index == 0 ? ["--discovery-proxy", "127.0.0.1:\(proxy.port)"] : []
            try await cluster.members[index].start(
                environment: environment, arguments: Self.arguments(cluster, index, token: token) + tunnel, waitUntilServing: false)
        }
        for member in cluster.members { try await member.waitUntilServing() }
        let client = try await expectFormedCluster(cluster, writing: "over https")
        await client.close()
        let tunnelled = try String(contentsOf: proxyLog, encoding: .utf8)
        #expect(tunnelled.contains("\"CONNECT localhost:\(frontPort) HTTP/1.1\" 200"), "\(tunnelled)")
        #expect(!tunnelled.contains("GET "), "the proxy saw a request it should only have tunnelled: \(tunnelled)")
        let served = try String(contentsOf: frontLog, encoding: .utf8)
        let path = String(token.dropFirst("https://localhost:\(frontPort)".count))
        #expect(served.contains("\"GET \(path)/_config/size HTTP/1.1\" 200"), "\(served)")
        #expect(served.components(separatedBy: "\"PUT \(path)/").count - 1 == 3, "\(served)")

        // An address through a tunnel cannot be checked against the certificate: refused at start.
        let refused = try await runTool(ServerProcess.binary, [
            "--discovery", "https://127.0.0.1:\(frontPort)/\(path)", "--discovery-proxy", "127.0.0.1:\(proxy.port)",
            "--data-dir", cluster.directory.appendingPathComponent("refused").path,
        ], environment: ["PATH": "/usr/bin:/bin"])
        #expect(refused.status == 1)
        #expect(
            refused.output.contains("an https discovery URL reached through --discovery-proxy needs a host name, not an address"),
            "\(refused.output)")
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
