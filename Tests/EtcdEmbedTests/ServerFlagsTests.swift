import ArgumentParser
import EtcdServer
import Foundation
import Logging
import Testing

@testable import EtcdEmbed

@Suite("Server flags, ETCD_* variables and the embed configuration")
struct ServerFlagsTests {
    @Test func flagNamesAreReadOffTheDeclarations() {
        #expect(ServerFlags.flagNames == [
            "name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
            "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-token", "initial-cluster-state",
            "max-request-bytes", "max-txn-ops", "quota-backend-bytes", "logger", "log-level", "log-outputs",
            "snapshot-count", "max-snapshots", "max-wals", "wal-dir", "wal-segment-bytes", "heartbeat-interval",
            "election-timeout", "experimental-snapshot-catchup-entries", "experimental-watch-progress-notify-interval",
            "strict-reconfig-check", "auto-promote-learners",
        ])
    }

    @Test func variablesAddFlagsTheCommandLineLacks() {
        var warnings: [String] = []
        let arguments = EnvironmentFlags.arguments(
            ["--name", "a"],
            environment: ["ETCD_NAME": "b", "ETCD_DATA_DIR": "/tmp/x", "ETCD_NOPE": "1", "HOME": "/root"],
            knownFlags: ServerFlags.flagNames, warn: { warnings.append($0) })
        #expect(arguments == ["--name", "a", "--data-dir", "/tmp/x"])
        #expect(warnings == [
            "recognized environment variable ETCD_NAME, but unused: shadowed by corresponding flag",
            "unrecognized environment variable ETCD_NOPE=1",
        ])
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

    @Test(arguments: [
        (["--logger", "capnslog"], "--logger: only 'zap' is supported, got 'capnslog'"),
        (["--log-level", "loud"], "--log-level: 'loud' is not one of debug, info, warn, error, panic, fatal"),
        (["--initial-cluster-state", "old"], "--initial-cluster-state: 'old' is not 'new' or 'existing'"),
        (["--experimental-watch-progress-notify-interval", "soon"], "--experimental-watch-progress-notify-interval: 'soon' is not a positive duration"),
        (["--election-timeout", "400"], "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"),
        (["--election-timeout", "60000"], "--election-timeout[60000ms] is too long, and should be set less than 50 seconds"),
        (["--listen-client-urls", "https://127.0.0.1:2379"], "--listen-client-urls: https://127.0.0.1:2379 is not an http://host:port URL (TLS is not supported yet)"),
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
