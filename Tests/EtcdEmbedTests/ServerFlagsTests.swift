import ArgumentParser
import EtcdServer
import Foundation
import GRPCWire
import Logging
import NIOCore
import Testing
import TransportSecurity

@testable import EtcdEmbed

@Suite("Server flags, ETCD_* variables and the embed configuration")
struct ServerFlagsTests {
    @Test func flagNamesAreReadOffTheDeclarations() {
        #expect(ServerFlags.flagNames == [
            "config-file", "name", "data-dir", "listen-client-urls", "listen-client-http-urls", "advertise-client-urls", "listen-peer-urls",
            "initial-advertise-peer-urls", "initial-cluster", "discovery", "discovery-proxy", "discovery-token", "discovery-endpoints",
            "discovery-request-timeout", "discovery-insecure-transport", "discovery-insecure-skip-tls-verify", "discovery-cert",
            "discovery-key", "discovery-cacert", "discovery-user", "discovery-password", "discovery-srv", "discovery-srv-name",
            "discovery-srv-resolver",
            "initial-cluster-token", "initial-cluster-state",
            "max-request-bytes", "max-txn-ops", "max-concurrent-streams", "grpc-keepalive-min-time", "grpc-keepalive-interval",
            "grpc-keepalive-timeout", "quota-backend-bytes", "backend-batch-interval", "backend-batch-limit", "logger", "log-level", "log-outputs",
            "log-format", "enable-log-rotation", "log-rotation-config-json",
            "snapshot-count", "max-snapshots", "max-wals", "wal-dir", "wal-segment-bytes", "heartbeat-interval",
            "election-timeout", "snapshot-catchup-entries", "experimental-snapshot-catchup-entries",
            "watch-progress-notify-interval", "experimental-watch-progress-notify-interval",
            "warning-apply-duration", "experimental-warning-apply-duration", "warning-unary-request-duration",
            "experimental-warning-unary-request-duration", "strict-reconfig-check", "max-learners", "auto-promote-learners", "force-new-cluster", "unsafe-no-fsync", "auto-compaction-mode",
            "auto-compaction-retention", "experimental-initial-corrupt-check", "experimental-corrupt-check-time",
            "corrupt-check-time", "experimental-compact-hash-check-enabled", "experimental-compact-hash-check-time",
            "compact-hash-check-time",
            "cert-file", "key-file", "client-cert-file", "client-key-file", "client-cert-auth", "client-crl-file",
            "client-cert-allowed-hostname",
            "trusted-ca-file", "auto-tls", "peer-cert-file", "peer-key-file", "peer-client-cert-file",
            "peer-client-key-file", "peer-client-cert-auth", "peer-trusted-ca-file", "peer-auto-tls", "peer-crl-file",
            "peer-cert-allowed-cn", "peer-cert-allowed-hostname", "peer-skip-client-san-verification",
            "experimental-peer-skip-client-san-verification", "self-signed-cert-validity", "cipher-suites", "cors",
            "host-whitelist", "tls-min-version", "tls-max-version", "auth-token", "auth-token-ttl", "bcrypt-cost", "listen-metrics-urls", "metrics",
        ])
        #expect(ServerFlags.booleanFlagNames == [
            "discovery-insecure-transport", "discovery-insecure-skip-tls-verify", "strict-reconfig-check", "auto-promote-learners",
            "client-cert-auth", "auto-tls", "peer-client-cert-auth",
            "peer-auto-tls", "peer-skip-client-san-verification", "experimental-peer-skip-client-san-verification",
            "force-new-cluster", "unsafe-no-fsync", "experimental-initial-corrupt-check", "experimental-compact-hash-check-enabled",
            "enable-log-rotation",
        ])
    }

    @Test func goBooleanSyntaxIsAccepted() throws {
        let arguments = ServerFlags.goBooleanSyntax([
            "--client-cert-auth=true", "--strict-reconfig-check=false", "--peer-auto-tls", "--name=x=true",
        ])
        #expect(arguments == ["--client-cert-auth", "--no-strict-reconfig-check", "--peer-auto-tls", "--name=x=true"])
        let configuration = try ServerFlags.parse(arguments).configuration()
        #expect(configuration.clientTLS.clientCertAuth)
        #expect(!configuration.strictReconfigCheck)
        #expect(configuration.peerTLS.autoTLS)
        #expect(configuration.name == "x=true")
    }

    @Test func tlsFlagsBecomeEachSidesSettings() throws {
        let flags = try ServerFlags.parse([
            "--cert-file", "s.pem", "--key-file", "s-key.pem", "--trusted-ca-file", "ca.pem", "--client-cert-auth",
            "--client-crl-file", "crl.pem", "--peer-cert-file", "p.pem", "--peer-key-file", "p-key.pem",
            "--peer-trusted-ca-file", "pca.pem", "--peer-client-cert-auth", "--peer-cert-allowed-cn", "a,b",
            "--experimental-peer-skip-client-san-verification", "--cipher-suites",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "--tls-max-version", "TLS1.3",
            "--self-signed-cert-validity", "3",
        ])
        let configuration = try flags.configuration()
        let client = configuration.clientTLS
        #expect(client.side == .client)
        #expect([client.certFile, client.keyFile, client.trustedCAFile, client.crlFile] == ["s.pem", "s-key.pem", "ca.pem", "crl.pem"])
        #expect(client.clientCertAuth)
        #expect(client.maximumVersion == .tls13 && client.minimumVersion == .tls12)
        let peer = configuration.peerTLS
        #expect([peer.certFile, peer.keyFile, peer.trustedCAFile] == ["p.pem", "p-key.pem", "pca.pem"])
        #expect(peer.clientCertAuth && peer.skipClientSANVerification)
        #expect(peer.allowedCommonNames == ["a", "b"])
        #expect(peer.cipherSuites.count == 2 && peer.selfSignedCertificateValidityYears == 3)
        #expect(peer.flag(.crlFile) == "--peer-crl-file" && client.flag(.crlFile) == "--client-crl-file")
        #expect(peer.flag(.clientCertAuth) == "--peer-client-cert-auth" && client.flag(.certFile) == "--cert-file")
    }

    @Test func variablesAddFlagsTheCommandLineLacks() {
        let outcome = EnvironmentFlags.arguments(
            ["--name", "a"], environment: ["ETCD_DATA_DIR": "/tmp/x", "ETCD_NOPE": "1", "HOME": "/root"], knownFlags: ServerFlags.flagNames)
        #expect(outcome == EnvironmentFlags.Outcome(arguments: ["--name", "a", "--data-dir=/tmp/x"], unrecognized: ["ETCD_NOPE=1"], conflicting: nil))
        // A variable and its flag both set: etcd refuses to start rather than pick one.
        let conflict = EnvironmentFlags.arguments(["--name", "a"], environment: ["ETCD_NAME": "b"], knownFlags: ServerFlags.flagNames)
        #expect(conflict.conflicting == "ETCD_NAME")
    }

    @Test func flagsBecomeTheConfiguration() throws {
        let flags = try ServerFlags.parse([
            "--name", "m1", "--listen-client-urls", "http://127.0.0.1:1,http://127.0.0.1:2", "--initial-cluster-state", "existing",
            "--experimental-watch-progress-notify-interval", "1m30s", "--log-level", "warn", "--heartbeat-interval", "50",
            "--election-timeout", "500",
        ])
        let configuration = try flags.configuration()
        #expect(configuration.name == "m1")
        #expect(configuration.listenClientURLs == ["http://127.0.0.1:1", "http://127.0.0.1:2"])
        #expect(configuration.initialClusterState == .existing)
        #expect(configuration.watchProgressNotifyInterval == .seconds(90))
        #expect(configuration.logLevel == .warning)
        let member = configuration.memberConfiguration
        #expect(member.dataDirectory == "m1.etcd")
        #expect(member.joinExistingCluster)
        #expect(member.heartbeatInterval == .milliseconds(50))
        #expect(member.electionTimeout == .milliseconds(500))
        #expect(member.initialAdvertisePeerURLs == ["http://localhost:2380"])
    }

    /// etcd passes these to gRPC-Go, whose own defaults apply to a zero: no enforcement
    /// policy means 5 minutes between pings, no server parameters mean 2 h and 20 s.
    @Test func grpcFlagsBecomeTheClientListenersPolicy() throws {
        let defaults = try ServerFlags.parse([]).configuration()
        #expect(defaults.maxConcurrentStreams == UInt32.max)
        #expect(defaults.keepalivePolicy == KeepalivePolicy())
        let set = try ServerFlags.parse([
            "--max-concurrent-streams", "8", "--grpc-keepalive-min-time", "1s", "--grpc-keepalive-interval", "3s",
            "--grpc-keepalive-timeout", "500ms",
        ]).configuration()
        #expect(set.maxConcurrentStreams == 8)
        #expect(set.keepalivePolicy.minimumPingInterval == .seconds(1))
        #expect(set.keepalivePolicy.pingInterval == .seconds(3))
        #expect(set.keepalivePolicy.pingTimeout == .milliseconds(500))
        let zeros = try ServerFlags.parse([
            "--grpc-keepalive-min-time", "0s", "--grpc-keepalive-interval", "0", "--grpc-keepalive-timeout", "1s",
        ]).configuration()
        #expect(zeros.keepalivePolicy.minimumPingInterval == .minutes(5))
        #expect(zeros.keepalivePolicy.pingInterval == .hours(2))
        #expect(zeros.keepalivePolicy.pingTimeout == .seconds(20))
        #expect(throws: ConfigurationError("--grpc-keepalive-timeout: 'soon' is not a duration")) {
            try ServerFlags.parse(["--grpc-keepalive-timeout", "soon"]).configuration()
        }
    }

    /// etcd's zeros mean its defaults (100 ms, 10,000 changes); a negative interval, which
    /// etcd's ticker would panic on, is refused.
    @Test func backendBatchFlagsScheduleTheBackendCommits() throws {
        let defaults = try ServerFlags.parse(["--backend-batch-interval", "0", "--backend-batch-limit", "0"]).configuration()
        #expect(defaults.memberConfiguration.backendBatchInterval == .milliseconds(100))
        #expect(defaults.memberConfiguration.backendBatchLimit == 10_000)
        let set = try ServerFlags.parse(["--backend-batch-interval", "5ms", "--backend-batch-limit", "200"]).configuration()
        #expect(set.memberConfiguration.backendBatchInterval == .milliseconds(5))
        #expect(set.memberConfiguration.backendBatchLimit == 200)
        #expect(throws: ConfigurationError("--backend-batch-interval: '-1s' is not a duration of 0 or more")) {
            try ServerFlags.parse(["--backend-batch-interval=-1s"]).configuration()
        }
    }

    @Test(arguments: [
        (["--logger", "capnslog"], "--logger: only 'zap' is supported, got 'capnslog'"),
        (["--log-level", "loud"], "--log-level: 'loud' is not one of debug, info, warn, error, panic, fatal"),
        (["--initial-cluster-state", "old"], "--initial-cluster-state: 'old' is not 'new' or 'existing'"),
        (["--experimental-watch-progress-notify-interval", "soon"], "--experimental-watch-progress-notify-interval: 'soon' is not a positive duration"),
        (["--election-timeout", "400"], "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"),
        (["--election-timeout", "60000"], "--election-timeout[60000ms] is too long, and should be set less than 50 seconds"),
        (["--listen-client-urls", "https://127.0.0.1:2379"], "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"),
        (["--listen-client-urls", "http://example.com:2379"], "expected IP in URL for binding (http://example.com:2379)"),
        (["--listen-peer-urls", "http://example.com:2380"], "expected IP in URL for binding (http://example.com:2380)"),
        (["--listen-client-urls", "ftp://127.0.0.1:2379"], "--listen-client-urls: URL scheme must be http, https, unix, or unixs: ftp://127.0.0.1:2379"),
        (["--tls-min-version", "TLS1.1"], "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"),
        (["--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"], "min version (TLS1.3) is greater than max version (TLS1.2)"),
        (["--tls-min-version", "TLS1.3", "--cipher-suites", "TLS_RSA_WITH_AES_128_CBC_SHA"], "cipher suites cannot be configured when only TLS1.3 is enabled"),
        (["--cipher-suites", "FOO"], "unexpected TLS cipher suite \"FOO\""),
        (["--cipher-suites", "TLS_RSA_WITH_RC4_128_SHA"], "--cipher-suites: TLS_RSA_WITH_RC4_128_SHA is an insecure cipher suite swift-etcd does not offer"),
    ])
    func badValuesAreRefusedByName(_ arguments: [String], _ expected: String) throws {
        let flags = try ServerFlags.parse(arguments)
        #expect(throws: ConfigurationError(expected)) { try flags.configuration() }
    }

    @Test(arguments: [("10m", Duration.seconds(600)), ("1.5s", .milliseconds(1500)), ("250us", .microseconds(250)), ("0", .zero)])
    func goDurationsParse(_ text: String, _ expected: Duration) {
        #expect(GoDuration.parse(text) == expected)
    }

    @Test(arguments: ["", "10", "5 s", "1d", "s"])
    func nonDurationsDoNot(_ text: String) {
        #expect(GoDuration.parse(text) == nil)
    }
}
