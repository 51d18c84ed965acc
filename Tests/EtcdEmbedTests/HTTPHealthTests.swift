import EtcdClient
import EtcdProto
import EtcdServer
import Foundation
import NIOCore
import Testing
import TestSupport

@testable import EtcdEmbed

/// The HTTP/1.1 side of the client port: etcd 3.6's health and version endpoints beside gRPC.
@Suite("HTTP health and version endpoints on the client port", .server)
struct HTTPHealthTests {
    @Test func endpointsAnswerAsEtcdsDoBesideGRPC() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("http-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let etcd = try await EmbeddedEtcd.start(try await EmbeddedEtcdTests().configuration(directory: directory))
        let port = try #require(etcd.clientAddresses.first?.port)
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(port)"])
        try await client.put("k", "v")

        let health = try await HTTPProbe.request("/health", port: port)
        #expect(health.status == 200)
        #expect(health.body == #"{"health":"true","reason":""}"#)
        #expect(health.headers["access-control-allow-origin"] == "*")
        #expect(try await HTTPProbe.request("/health?serializable=true", port: port).body == #"{"health":"true","reason":""}"#)
        let livez = try await HTTPProbe.request("/livez", port: port)
        #expect(livez.status == 200 && livez.body == "ok\n")
        #expect(livez.headers["x-content-type-options"] == "nosniff")
        let verbose = try await HTTPProbe.request("/readyz?verbose", port: port)
        #expect(verbose.body == "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n")
        #expect(try await HTTPProbe.request("/readyz?verbose&exclude=linearizable_read&exclude=non_learner", port: port).body
            == "[+]data_corruption ok\n[+]serializable_read ok\nok\n")
        #expect(try await HTTPProbe.request("/readyz/non_learner?verbose", port: port).body == "[+]non_learner ok\nok\n")
        let version = try await HTTPProbe.request("/version", port: port)
        #expect(version.body == #"{"etcdserver":"3.6.0","etcdcluster":"3.6.0","storage":"3.6.0"}"#)
        #expect(version.headers["content-type"] == "application/json")

        for method in ["POST", "PUT", "DELETE", "HEAD"] {
            let refused = try await HTTPProbe.request(method, "/health", port: port)
            #expect(refused.status == 405 && refused.headers["allow"] == "GET", "\(method)")
        }
        #expect(try await HTTPProbe.request("POST", "/version", port: port).status == 405)
        #expect(try await HTTPProbe.request("OPTIONS", "/anything", port: port).status == 200)
        let missing = try await HTTPProbe.request("/readyz/nope", port: port)
        #expect(missing.status == 404 && missing.body == "404 page not found\n")
        #expect(try await HTTPProbe.request("/nothing", port: port).status == 404)

        // HTTP/1.0, and two requests on one kept-alive connection.
        let old = try await HTTPProbe.exchange(Array("GET /version HTTP/1.0\r\n\r\n".utf8), port: port)
        #expect(old.raw.hasPrefix("HTTP/1.0 200 OK"))
        let twice = try await HTTPProbe.exchange(
            Array("GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8), port: port)
        #expect(twice.raw.components(separatedBy: "HTTP/1.1 200 OK").count == 3)

        // Prometheus' text format with etcd's names, read fresh at each scrape.
        let metrics = try await HTTPProbe.request("/metrics", port: port)
        #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        let lines = Set(metrics.body.split(separator: "\n").map(String.init))
        for expected in [
            "# TYPE etcd_server_has_leader gauge", "etcd_server_has_leader 1.0", "etcd_server_is_leader 1.0",
            "# TYPE etcd_server_leader_changes_seen_total counter", "etcd_server_leader_changes_seen_total 1",
            "# TYPE etcd_disk_wal_fsync_duration_seconds histogram", "# TYPE grpc_server_handled_total counter",
            #"grpc_server_handled_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="OK"} 1"#,
            #"grpc_server_started_total{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"} 1"#,
            "etcd_server_health_success 2", "etcd_server_quota_backend_bytes 2147483648.0", "etcd_server_proposals_pending 0.0",
            #"etcd_server_version{server_version="3.6.0"} 1.0"#,
        ] {
            #expect(lines.contains(expected), "\(expected)")
        }
        #expect(lines.contains { $0.hasPrefix("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}") })
        #expect(lines.contains { $0.hasPrefix("process_resident_memory_bytes ") })

        // Neither protocol: that connection closes; gRPC and HTTP go on.
        let garbage = try await HTTPProbe.exchange(Array("\u{1}\u{2}garbage\r\n\r\n".utf8), port: port, timeout: .seconds(5))
        #expect(garbage.raw.isEmpty)
        #expect(try await client.get("k").count == 1)
        #expect(try await HTTPProbe.request("/health", port: port).status == 200)
        await client.close()
        await etcd.stop()
    }

    @Test func metricsListenersServeMetricsAndHealthOnly() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("http-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = try await EmbeddedEtcdTests().configuration(directory: directory)
        configuration.listenMetricsURLs = ["http://127.0.0.1:0"]
        let etcd = try await EmbeddedEtcd.start(configuration)
        let port = try #require(etcd.metricsAddresses.first?.port)
        // What kubeadm's probes ask.
        let health = try await HTTPProbe.request("/health?exclude=NOSPACE&serializable=true", port: port)
        #expect(health.status == 200 && health.body == #"{"health":"true","reason":""}"#)
        #expect(health.headers["access-control-allow-origin"] == nil)
        #expect(try await HTTPProbe.request("/readyz", port: port).body == "ok\n")
        #expect(try await HTTPProbe.request("/livez", port: port).body == "ok\n")
        let metrics = try await HTTPProbe.request("/metrics", port: port)
        #expect(metrics.status == 200 && metrics.body.contains("etcd_server_has_leader 1.0"))
        #expect(try await HTTPProbe.request("/version", port: port).status == 404)
        // No gRPC here: the HTTP/2 preface is closed.
        let preface = try await HTTPProbe.exchange(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8), port: port, timeout: .seconds(5))
        #expect(preface.raw.isEmpty)
        await etcd.stop()
    }

    /// `--cors` and `--host-whitelist`, as etcd's access controller applies them to the client
    /// port's HTTP side (the `/v3` gateway included); gRPC is not concerned.
    @Test func corsAndHostWhitelistDecideWhoMayUseTheHTTPSide() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("http-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = try await EmbeddedEtcdTests().configuration(directory: directory)
        // etcd's flag wants a port; a browser leaves the default one out of `Origin`.
        configuration.corsOrigins = ["https://ui.example.com:443", "http://localhost:8080"]
        configuration.hostWhitelist = ["localhost", "127.0.0.1"]
        let etcd = try await EmbeddedEtcd.start(configuration)
        let port = try #require(etcd.clientAddresses.first?.port)
        func get(_ path: String, host: String, origin: String? = nil) async throws -> HTTPProbe.Answer {
            let head = ["GET \(path) HTTP/1.1", "Host: \(host)", "Connection: close"] + (origin.map { ["Origin: \($0)"] } ?? [])
            return try await HTTPProbe.exchange(Array((head.joined(separator: "\r\n") + "\r\n\r\n").utf8), port: port)
        }

        // A listed origin is named back; any other gets no CORS headers (and its answer).
        let listed = try await get("/health", host: "127.0.0.1:\(port)", origin: "https://ui.example.com")
        #expect(listed.status == 200)
        #expect(listed.headers["access-control-allow-origin"] == "https://ui.example.com")
        #expect(listed.headers["access-control-allow-methods"] == "POST, GET, OPTIONS, PUT, DELETE")
        #expect(listed.headers["access-control-allow-headers"] == "accept, content-type, authorization")
        let withPort = try await get("/version", host: "localhost", origin: "http://localhost:8080")
        #expect(withPort.headers["access-control-allow-origin"] == "http://localhost:8080")
        let unlisted = try await get("/version", host: "localhost", origin: "https://evil.example")
        #expect(unlisted.status == 200)
        #expect(unlisted.headers["access-control-allow-origin"] == nil && unlisted.headers["access-control-allow-methods"] == nil)

        // A host not listed gets 421 and etcd's explanation, before anything else is done.
        let rebound = try await get("/health", host: "rebind.example:\(port)", origin: "https://ui.example.com")
        #expect(rebound.status == 421)
        #expect(rebound.headers["content-type"] == "text/plain; charset=utf-8")
        #expect(rebound.headers["access-control-allow-origin"] == nil)
        #expect(rebound.body == """

            etcd received your request, but the Host header was unrecognized.

            To fix this, choose one of the following options:
            - Enable TLS, then any HTTPS request will be allowed.
            - Add the hostname you want to use to the whitelist in settings.
              - e.g. etcd --host-whitelist "rebind.example"

            This requirement has been added to help prevent "DNS Rebinding" attacks (CVE-2018-5702).


            """)
        let gateway = try await HTTPProbe.exchange(Array("""
            POST /v3/kv/range HTTP/1.1\r\nHost: rebind.example\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}
            """.utf8), port: port)
        #expect(gateway.status == 421)
        let watch = try await HTTPProbe.exchange(Array("""
            POST /v3/watch HTTP/1.1\r\nHost: [::1]:\(port)\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}
            """.utf8), port: port)
        #expect(watch.status == 421 && watch.body.contains("etcd --host-whitelist \"::1\""), "\(watch.raw)")

        // gRPC does not look at either list.
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(port)"])
        try await client.put("k", "v")
        #expect(try await client.get("k").count == 1)
        await client.close()
        await etcd.stop()
    }

    /// `--warning-apply-duration`: an apply that takes longer counts in
    /// `etcd_server_slow_apply_total` (and is logged); at 1 ns every one does.
    @Test func slowAppliesAreCounted() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("http-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = try await EmbeddedEtcdTests().configuration(directory: directory)
        configuration.warningApplyDuration = .nanoseconds(1)
        let etcd = try await EmbeddedEtcd.start(configuration)
        let port = try #require(etcd.clientAddresses.first?.port)
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(port)"])
        for index in 0..<3 { _ = try await client.put("slow", "\(index)") }
        let metrics = try await HTTPProbe.request("/metrics", port: port).body
        let line = metrics.split(separator: "\n").first { $0.hasPrefix("etcd_server_slow_apply_total ") }
        let counted = try #require(line.flatMap { Double($0.split(separator: " ")[1]) })
        #expect(counted >= 3)
        // Ranges count as well, as etcd counts its expensive read-only ranges.
        for serializable in [false, true, false] { _ = try await client.get("slow", serializable: serializable) }
        let after = try await HTTPProbe.request("/metrics", port: port).body.split(separator: "\n")
            .first { $0.hasPrefix("etcd_server_slow_apply_total ") }.flatMap { Double($0.split(separator: " ")[1]) }
        #expect(try #require(after) >= counted + 3)
        await client.close()
        await etcd.stop()
    }

    /// etcd's `--listen-client-http-urls`: the HTTP side of the client port on a listener of
    /// its own (health, version, metrics, the gateway), and the client URLs serve gRPC alone.
    @Test func clientHTTPListenersTakeTheHTTPSideOffTheClientURLs() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("http-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = try await EmbeddedEtcdTests().configuration(directory: directory)
        let httpPort = try await ServerProcess.freePort()
        configuration.listenClientHTTPURLs = ["http://127.0.0.1:\(httpPort)"]
        let etcd = try await EmbeddedEtcd.start(configuration)
        #expect(etcd.clientAddresses.count == 2)
        #expect(etcd.clientAddresses.last?.port == httpPort)
        let grpcPort = try #require(etcd.clientAddresses.first?.port)
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(grpcPort)"])
        _ = try await client.put("split", "yes")
        let health = try await HTTPProbe.request("/health", port: httpPort)
        #expect(health.status == 200 && health.body == #"{"health":"true","reason":""}"#)
        #expect(try await HTTPProbe.request("/version", port: httpPort).body.contains(#""etcdserver":"3.6.0""#))
        #expect(try await HTTPProbe.request("/metrics", port: httpPort).body.contains("etcd_server_has_leader 1.0"))
        let range = try await HTTPProbe.post("/v3/kv/range", #"{"key":"c3BsaXQ="}"#, port: httpPort)
        #expect(range.status == 200 && range.body.contains(#""value":"eWVz""#))
        // HTTP/1.1 is closed on the gRPC port, gRPC on the HTTP port.
        #expect(try await HTTPProbe.exchange(Array("GET /health HTTP/1.1\r\nHost: x\r\n\r\n".utf8), port: grpcPort, timeout: .seconds(5)).raw.isEmpty)
        let preface = try await HTTPProbe.exchange(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8), port: httpPort, timeout: .seconds(5))
        #expect(preface.raw.isEmpty)
        #expect(try await client.get("split").kvs.count == 1)
        await client.close()
        await etcd.stop()

        configuration.listenClientHTTPURLs = configuration.listenClientURLs
        #expect(throws: ConfigurationError(
            "cannot bind both --listen-client-urls and --listen-client-http-urls on the same url \(configuration.listenClientURLs[0])"))
        {
            try configuration.validate()
        }
    }
}
