import EtcdClient
import EtcdEmbed
import EtcdProto
import Foundation
import SwiftProtobuf
import TestSupport
import Testing

/// etcd's YAML configuration file: every key of etcd 3.6's sample read with its type, refusals
/// by key, and real members started from files (their flags and `ETCD_*` variables ignored).
@Suite("The configuration file (--config-file)", .server)
struct ConfigFileTests {
    /// etcd 3.6's `etcd.conf.yml.sample`, keys and values as etcd ships them.
    static let etcdSample = """
        name: 'default'
        data-dir:
        wal-dir:
        snapshot-count: 10000
        heartbeat-interval: 100
        election-timeout: 1000
        quota-backend-bytes: 0
        listen-peer-urls: http://localhost:2380
        listen-client-urls: http://localhost:2379
        max-snapshots: 5
        max-wals: 5
        cors:
        initial-advertise-peer-urls: http://localhost:2380
        advertise-client-urls: http://localhost:2379
        discovery:
        discovery-fallback: 'proxy'
        discovery-proxy:
        discovery-srv:
        initial-cluster:
        initial-cluster-token: 'etcd-cluster'
        initial-cluster-state: 'new'
        strict-reconfig-check: false
        enable-pprof: true
        proxy: 'off'
        proxy-failure-wait: 5000
        proxy-refresh-interval: 30000
        proxy-dial-timeout: 1000
        proxy-write-timeout: 5000
        proxy-read-timeout: 0
        client-transport-security:
          cert-file:
          key-file:
          client-cert-auth: false
          trusted-ca-file:
          auto-tls: false
        peer-transport-security:
          cert-file:
          key-file:
          client-cert-auth: false
          trusted-ca-file:
          auto-tls: false
          allowed-cn:
          allowed-hostname:
        self-signed-cert-validity: 1
        log-level: debug
        logger: zap
        log-outputs: [stderr]
        force-new-cluster: false
        auto-compaction-mode: periodic
        auto-compaction-retention: "1"
        cipher-suites: [
          TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
          TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        ]
        tls-min-version: 'TLS1.2'
        tls-max-version: 'TLS1.3'

        """

    @Test func etcdsSampleReadsAsTheFlagsItStandsFor() throws {
        let file = try ConfigFile.parse(Self.etcdSample)
        #expect(file.arguments == [
            "--name=default", "--snapshot-count=10000", "--heartbeat-interval=100", "--election-timeout=1000",
            "--quota-backend-bytes=0", "--listen-peer-urls=http://localhost:2380", "--listen-client-urls=http://localhost:2379",
            "--max-snapshots=5", "--max-wals=5", "--initial-advertise-peer-urls=http://localhost:2380",
            "--advertise-client-urls=http://localhost:2379", "--initial-cluster-token=etcd-cluster",
            "--initial-cluster-state=new", "--strict-reconfig-check=false", "--enable-pprof=true",
            "--client-cert-auth=false", "--auto-tls=false", "--peer-client-cert-auth=false", "--peer-auto-tls=false",
            "--self-signed-cert-validity=1", "--log-level=debug", "--logger=zap", "--log-outputs=stderr",
            "--force-new-cluster=false", "--auto-compaction-mode=periodic", "--auto-compaction-retention=1",
            "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "--tls-min-version=TLS1.2", "--tls-max-version=TLS1.3",
        ])
        // etcd 3.6 reads neither etcd 2's proxy keys nor discovery-fallback from a file.
        #expect(file.warnings.count == 7)
        #expect(file.warnings.contains("configuration file key \"proxy\" is ignored: etcd 3.6 does not read it (etcd 2's proxy, left in etcd's sample file)"))
        // pprof cannot be honoured: refused by its key, as the flag is.
        #expect(throws: ConfigFileError.self) { try file.checkedArguments() }
        do {
            _ = try file.checkedArguments()
        } catch {
            #expect(error.description.hasPrefix("configuration file key \"enable-pprof\": --enable-pprof=true is not supported by swift-etcd"))
        }
        let edited = try ConfigFile.parse(Self.etcdSample.replacingOccurrences(of: "enable-pprof: true", with: "enable-pprof: false"))
        #expect(try edited.checkedArguments().count == 29)
    }

    @Test func durationsAreNanosecondsBlocksSetTheirFlagsAndKeysIgnoreCase() throws {
        let file = try ConfigFile.parse("""
            Name: member-1
            watch-progress-notify-interval: 1500000000
            corrupt-check-time: 5e9
            grpc-keepalive-min-time: 5000000000
            experimental-snapshot-catch-up-entries: 100
            feature-gates: "InitialCorruptCheck=true"
            client-transport-security:
              cert-file: /pki/server.pem
              key-file: /pki/server-key.pem
              trusted-ca-file: /pki/ca.pem
              client-cert-auth: true
            peer-transport-security:
              cert-file: /pki/peer.pem
              key-file: /pki/peer-key.pem
              allowed-cn: [etcd-peer, etcd-peer-2]
            socket-options:
              reuse-address: false
            log-outputs: [stdout, /var/log/etcd.log]
            """)
        #expect(file.arguments == [
            "--name=member-1", "--watch-progress-notify-interval=1500ms", "--corrupt-check-time=5s",
            "--grpc-keepalive-min-time=5s", "--experimental-snapshot-catchup-entries=100",
            "--feature-gates=InitialCorruptCheck=true", "--cert-file=/pki/server.pem", "--key-file=/pki/server-key.pem",
            "--trusted-ca-file=/pki/ca.pem", "--client-cert-auth=true", "--peer-cert-file=/pki/peer.pem",
            "--peer-key-file=/pki/peer-key.pem", "--peer-cert-allowed-cn=etcd-peer,etcd-peer-2", "--socket-reuse-address=false",
            "--log-outputs=stdout,/var/log/etcd.log",
        ])
        #expect(file.warnings.isEmpty)
        #expect(try file.checkedArguments() == file.arguments)
        #expect(try ConfigFile.parse("corrupt-check-time: 250000\ncompact-hash-check-time: 7").arguments == [
            "--corrupt-check-time=250us", "--compact-hash-check-time=7ns",
        ])
    }

    /// etcd's own wording for a value of the wrong type (Go's JSON decoder behind its YAML reader).
    @Test(arguments: [
        ("watch-progress-notify-interval: 5s", "cannot unmarshal string into Go struct field configYAML.watch-progress-notify-interval of type time.Duration"),
        ("heartbeat-interval: -1", "cannot unmarshal number -1 into Go struct field configYAML.heartbeat-interval of type uint"),
        ("name: 123", "cannot unmarshal number 123 into Go struct field configYAML.name of type string"),
        ("initial-cluster-state: true", "cannot unmarshal bool into Go struct field configYAML.initial-cluster-state of type string"),
        ("log-outputs: stderr", "cannot unmarshal string into Go struct field configYAML.log-outputs of type []string"),
        ("feature-gates: {InitialCorruptCheck: true}", "cannot unmarshal object into Go struct field configYAML.feature-gates of type string"),
        ("client-transport-security:\n  client-cert-auth: 'yes'", "cannot unmarshal string into Go struct field securityConfig.client-transport-security.client-cert-auth of type bool"),
    ])
    func aValueOfTheWrongTypeGetsEtcdsMessage(yaml: String, message: String) throws {
        let refusal = try #require(Self.refusal(yaml), "\(yaml) was accepted")
        #expect(refusal.hasPrefix("error unmarshaling JSON: while decoding JSON: json: \(message)"))
    }

    /// Why `yaml` is refused; nil if it is not.
    private static func refusal(_ yaml: String) -> String? {
        do {
            _ = try ConfigFile.parse(yaml)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func unknownKeysBadYAMLAndRefusedBlockKeysAreReportedByName() throws {
        let misspelt = "(etcd 3.6 would ignore it; swift-etcd refuses it so a misspelt setting never passes unnoticed)"
        #expect(Self.refusal("heartbeat-intreval: 100") == "unknown key \"heartbeat-intreval\" in the configuration file \(misspelt)")
        #expect(Self.refusal("client-transport-security:\n  cert: /x.pem") == "unknown key \"client-transport-security.cert\" in the configuration file \(misspelt)")
        #expect(Self.refusal("name: a\n  data-dir: b: c")?.hasPrefix("error converting YAML to JSON: yaml: ") == true)
        #expect(Self.refusal("client-transport-security:\n  allowed-cn: [admin]")
            == "configuration file key \"client-transport-security.allowed-cn\" is not supported by swift-etcd: client certificates are not restricted by common name")
        // An empty file is etcd's defaults.
        #expect(try ConfigFile.parse("").arguments.isEmpty)
        #expect(try ConfigFile.parse("# nothing\n").arguments.isEmpty)
    }

    @Test func theFileIsFoundAsEtcdFindsItAndEverythingElseIsIgnored() {
        #expect(ConfigFile.path(commandLine: ["--config-file", "/a.yml", "--name", "x"], environment: ["ETCD_CONFIG_FILE": "/b.yml"]) == "/a.yml")
        #expect(ConfigFile.path(commandLine: ["--config-file=/a.yml"], environment: [:]) == "/a.yml")
        #expect(ConfigFile.path(commandLine: ["--name", "x"], environment: ["ETCD_CONFIG_FILE": "/b.yml"]) == "/b.yml")
        #expect(ConfigFile.path(commandLine: ["--name", "x"], environment: ["ETCD_NAME": "y"]) == nil)
        #expect(ConfigFile.ignored(
            commandLine: ["--config-file", "/a.yml", "--name", "x", "--auto-tls"],
            environment: ["ETCD_CONFIG_FILE": "/a.yml", "ETCD_DATA_DIR": "/d", "HOME": "/root"]) == ["--name", "--auto-tls", "ETCD_DATA_DIR"])
    }

    /// A member started from a file, with flags and `ETCD_*` variables that would say otherwise:
    /// the file's name, data directory, URLs and timers are what it runs with; etcdctl sees them.
    @Test func aMemberStartsFromTheFileAloneAndEtcdctlSeesIt() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("config-file-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let dataDirectory = directory.appendingPathComponent("data")
        let log = directory.appendingPathComponent("member.log")
        // ServerProcess passes its own --data-dir and URLs: all to be ignored, so the file repeats the URLs.
        let server = try await ServerProcess(dataDirectory: directory.appendingPathComponent("ignored"), logFile: log)
        defer { server.kill9() }
        let peer = "http://127.0.0.1:\(server.peerPort)"
        let configFile = directory.appendingPathComponent("etcd.conf.yml")
        try """
            name: 'from-the-file'
            data-dir: \(dataDirectory.path)
            listen-client-urls: \(server.clientURL)
            advertise-client-urls: \(server.clientURL)
            listen-peer-urls: \(peer)
            initial-advertise-peer-urls: \(peer)
            initial-cluster: from-the-file=\(peer)
            initial-cluster-token: 'file-cluster'
            heartbeat-interval: 50
            election-timeout: 500
            max-txn-ops: 3
            proxy: 'off'
            log-outputs: [stderr]

            """.write(to: configFile, atomically: true, encoding: .utf8)
        try await server.start(environment: ["ETCD_NAME": "from-the-environment", "ETCD_MAX_TXN_OPS": "1000"], arguments: ["--config-file", configFile.path, "--max-txn-ops", "500"])

        let etcdctl = try await runTool(
            URL(fileURLWithPath: "/usr/bin/etcdctl"), ["--endpoints", server.clientURL, "member", "list", "-w", "simple"],
            environment: ["ETCDCTL_API": "3"])
        #expect(etcdctl.status == 0)
        #expect(etcdctl.output.contains(", started, from-the-file, \(peer), \(server.clientURL), false"))
        #expect(FileManager.default.fileExists(atPath: dataDirectory.appendingPathComponent("member/wal").path))
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("ignored").path))
        // max-txn-ops: 3 from the file, not 500 (flag) nor 1000 (variable).
        let client = try EtcdClient(endpoints: [server.clientURL])
        defer { Task { await client.close() } }
        let puts = (0..<4).map { n in Etcdserverpb_RequestOp.with { $0.requestPut = .with { $0.key = Data("k\(n)".utf8) } } }
        await #expect(throws: EtcdClientError.self) { try await client.txn(.with { $0.success = puts }) }
        _ = try await client.txn(.with { $0.success = Array(puts.prefix(3)) })

        let text = try String(contentsOf: log, encoding: .utf8)
        #expect(text.contains("\"msg\":\"loaded server configuration, other configuration command line flags and environment variables will be ignored if provided\""))
        #expect(text.contains("\"ignored\":\"--data-dir,--listen-client-urls,--advertise-client-urls,--listen-peer-urls,--initial-advertise-peer-urls,--initial-cluster,--max-txn-ops,ETCD_MAX_TXN_OPS,ETCD_NAME\""))
        #expect(text.contains("configuration file key \\\"proxy\\\" is ignored"))
    }

    /// etcd's own sample, with this machine's ports and directory (and `enable-pprof: false`,
    /// which swift-etcd refuses), starts Debian's etcd 3.4 and swift-etcd alike; the same
    /// etcdctl commands then print the same thing against both.
    @Test func etcdsSampleStartsEtcdAndSwiftEtcdAndBothAnswerAlike() async throws {
        var transcripts: [ServerProcess.Kind: [String]] = [:]
        for kind in [ServerProcess.Kind.etcd, .swiftEtcd] {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("config-sample-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let server = try await ServerProcess(dataDirectory: directory.appendingPathComponent("data"), kind: kind)
            defer { server.kill9() }
            let peer = "http://127.0.0.1:\(server.peerPort)"
            let settings = [
                "name": "'sample'", "data-dir": server.dataDirectory.path, "listen-peer-urls": peer,
                "listen-client-urls": server.clientURL, "initial-advertise-peer-urls": peer,
                "advertise-client-urls": server.clientURL, "initial-cluster": "sample=\(peer)", "enable-pprof": "false",
            ]
            let file = Self.etcdSample.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                let key = String(line.prefix { $0 != ":" })
                return settings[key].map { "\(key): \($0)" } ?? String(line)
            }.joined(separator: "\n")
            let configFile = directory.appendingPathComponent("etcd.conf.yml")
            try file.write(to: configFile, atomically: true, encoding: .utf8)
            try await server.start(arguments: ["--config-file", configFile.path])
            var transcript: [String] = []
            for command in [
                ["put", "a", "1"], ["put", "b", "2"], ["get", "--prefix", ""], ["del", "a"], ["get", "--prefix", "", "-w", "simple"],
                ["compaction", "3"], ["member", "list", "-w", "simple"], ["endpoint", "health"],
            ] {
                let run = try await runTool(
                    URL(fileURLWithPath: "/usr/bin/etcdctl"), ["--endpoints", server.clientURL] + command,
                    environment: ["ETCDCTL_API": "3"])
                // Member IDs, ports and timings differ by nature.
                let normalised = run.output
                    .replacingOccurrences(of: #"^[0-9a-f]{1,16},"#, with: "ID,", options: .regularExpression)
                    .replacingOccurrences(of: "127.0.0.1:\(server.port)", with: "CLIENT")
                    .replacingOccurrences(of: "127.0.0.1:\(server.peerPort)", with: "PEER")
                    .replacingOccurrences(of: #"took = [0-9.]+[µm]?s"#, with: "took = T", options: .regularExpression)
                transcript.append("\(command.joined(separator: " ")) -> \(run.status): \(normalised)")
            }
            transcripts[kind] = transcript
        }
        #expect(transcripts[.swiftEtcd] == transcripts[.etcd])
        #expect(transcripts[.swiftEtcd]?.contains("member list -w simple -> 0: ID, started, sample, http://PEER, http://CLIENT, false\n") == true)
    }

    @Test func aFileWithARefusedValueStopsTheStartNamingTheKey() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("config-file-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let configFile = directory.appendingPathComponent("etcd.conf.yml")
        try Self.etcdSample.write(to: configFile, atomically: true, encoding: .utf8)
        // Through ETCD_CONFIG_FILE, as etcd also finds it.
        let refused = try await runTool(ServerProcess.binary, [], environment: ["ETCD_CONFIG_FILE": configFile.path, "PATH": "/usr/bin:/bin"])
        #expect(refused.status == 1)
        #expect(refused.output.contains("\"msg\":\"failed to verify flags\""))
        #expect(refused.output.contains("configuration file key \\\"enable-pprof\\\": --enable-pprof=true is not supported by swift-etcd"))
        try "election-timeout: 1s\n".write(to: configFile, atomically: true, encoding: .utf8)
        let mistyped = try await runTool(ServerProcess.binary, ["--config-file", configFile.path], environment: ["PATH": "/usr/bin:/bin"])
        #expect(mistyped.status == 1)
        #expect(mistyped.output.contains("cannot unmarshal string into Go struct field configYAML.election-timeout of type uint"))
        let missing = try await runTool(ServerProcess.binary, ["--config-file", directory.appendingPathComponent("none.yml").path], environment: ["PATH": "/usr/bin:/bin"])
        #expect(missing.status == 1)
        #expect(missing.output.contains("\"msg\":\"failed to verify flags\""))
    }
}
