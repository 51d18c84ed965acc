import EtcdServer
import Foundation

/// Every flag of etcd 3.6's server and what swift-etcd does with it. A flag swift-etcd
/// declares (``ServerFlags``) is honoured; the rest are taken only at the value that describes
/// what swift-etcd always does (etcd's default, usually), or refused at start with a message
/// that names the flag — never accepted and ignored. docs/FLAGS.md is printed from this table
/// (`swift-etcd --print-flag-table`), and a test runs the binary against every row.
public enum EtcdFlagTable {
    /// What swift-etcd does with a flag it does not declare.
    public enum Treatment: Sendable, Equatable {
        /// Declared in ``ServerFlags``.
        case honoured
        /// Taken at this value only, which is swift-etcd's fixed behaviour; `reason` says why
        /// other values are refused.
        case onlyAt(String, reason: String)
        /// Refused at any value.
        case refused(String)
    }

    /// etcd 3.6's server flags, in the order of its `--help`.
    public static let etcdFlags: [String] = [
        "name", "data-dir", "wal-dir", "snapshot-count", "heartbeat-interval", "election-timeout", "initial-election-tick-advance",
        "listen-peer-urls", "listen-client-urls", "listen-client-http-urls", "max-snapshots", "max-wals", "memory-mlock",
        "quota-backend-bytes", "backend-bbolt-freelist-type", "backend-batch-interval", "backend-batch-limit", "max-txn-ops",
        "max-request-bytes", "max-concurrent-streams", "grpc-keepalive-min-time", "grpc-keepalive-interval",
        "grpc-keepalive-timeout", "socket-reuse-port", "socket-reuse-address", "enable-grpc-gateway", "raft-read-timeout",
        "raft-write-timeout", "feature-gates", "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state",
        "initial-cluster-token", "advertise-client-urls", "discovery", "discovery-token", "discovery-endpoints",
        "discovery-dial-timeout", "discovery-request-timeout", "discovery-keepalive-time", "discovery-keepalive-timeout",
        "discovery-insecure-transport", "discovery-insecure-skip-tls-verify", "discovery-cert", "discovery-key",
        "discovery-cacert", "discovery-user", "discovery-password", "discovery-fallback", "discovery-proxy", "discovery-srv",
        "discovery-srv-name", "strict-reconfig-check", "pre-vote", "auto-compaction-retention", "auto-compaction-mode",
        "v2-deprecation", "cert-file", "key-file", "client-cert-auth", "client-cert-file", "client-key-file", "client-crl-file",
        "client-cert-allowed-hostname", "trusted-ca-file", "auto-tls", "peer-cert-file", "peer-key-file", "peer-client-cert-auth",
        "peer-client-cert-file", "peer-client-key-file", "peer-trusted-ca-file", "peer-cert-allowed-cn",
        "peer-cert-allowed-hostname", "peer-auto-tls", "self-signed-cert-validity", "peer-crl-file", "cipher-suites", "cors",
        "host-whitelist", "tls-min-version", "tls-max-version", "auth-token", "bcrypt-cost", "auth-token-ttl", "enable-pprof",
        "metrics", "listen-metrics-urls", "logger", "log-outputs", "log-level", "log-format", "enable-log-rotation",
        "log-rotation-config-json", "warning-unary-request-duration", "experimental-enable-distributed-tracing",
        "enable-distributed-tracing", "experimental-distributed-tracing-address", "distributed-tracing-address",
        "experimental-distributed-tracing-service-name", "distributed-tracing-service-name",
        "experimental-distributed-tracing-instance-id", "distributed-tracing-instance-id",
        "experimental-distributed-tracing-sampling-rate", "distributed-tracing-sampling-rate",
        "experimental-initial-corrupt-check", "experimental-corrupt-check-time", "corrupt-check-time",
        "experimental-compact-hash-check-enabled", "experimental-compact-hash-check-time", "compact-hash-check-time",
        "experimental-enable-lease-checkpoint", "experimental-compaction-batch-limit", "compaction-batch-limit",
        "experimental-peer-skip-client-san-verification", "peer-skip-client-san-verification",
        "experimental-watch-progress-notify-interval", "watch-progress-notify-interval", "experimental-warning-apply-duration",
        "warning-apply-duration", "experimental-txn-mode-write-with-shared-buffer",
        "experimental-bootstrap-defrag-threshold-megabytes", "bootstrap-defrag-threshold-megabytes",
        "experimental-warning-unary-request-duration", "max-learners", "experimental-compaction-sleep-interval",
        "compaction-sleep-interval", "experimental-downgrade-check-time", "downgrade-check-time",
        "experimental-enable-lease-checkpoint-persist", "experimental-memory-mlock", "experimental-snapshot-catchup-entries",
        "snapshot-catchup-entries", "experimental-stop-grpc-service-on-defrag", "force-new-cluster", "unsafe-no-fsync",
        "config-file", "version",
        // etcd 2's flags, which etcd 3.6 still takes and ignores.
        "cluster-active-size", "cluster-remove-delay", "cluster-sync-interval", "config", "force", "max-result-buffer",
        "max-retry-attempts", "peer-heartbeat-interval", "peer-election-timeout", "retry-interval", "snapshot", "v", "vv",
    ]

    /// How swift-etcd treats `flag` (an etcd flag or one of its own).
    public static func treatment(of flag: String) -> Treatment {
        if ServerFlags.flagNames.contains(flag) || flag == "version" || flag == "feature-gates" { return .honoured }
        return exceptions[flag] ?? .refused("not supported by swift-etcd")
    }

    private static let notBbolt = "the backend is SQLite, not bbolt"
    private static let noTracing = "swift-etcd exports no OpenTelemetry traces"
    private static let leasesCheckpointed =
        "leases always keep their remaining TTL across leader changes and restarts (followers count down from the leader's checkpoints, sent every 500 ms)"
    private static let legacy = "an etcd 2 flag that etcd 3.6 ignores; swift-etcd refuses it rather than ignore it"

    private static let exceptions: [String: Treatment] = {
        var table: [String: Treatment] = [
            "initial-election-tick-advance": .onlyAt("true", reason: "a fresh member always advances its election ticks"),
            "memory-mlock": .onlyAt("false", reason: "swift-etcd does not lock its memory"),
            "backend-bbolt-freelist-type": .onlyAt("map", reason: notBbolt),
            "socket-reuse-port": .onlyAt("false", reason: "listeners do not share ports"),
            "socket-reuse-address": .onlyAt("false", reason: "swift-etcd sets SO_REUSEADDR on its listeners as Go does"),
            "enable-grpc-gateway": .onlyAt("true", reason: "the /v3 JSON gateway is always served"),
            "raft-read-timeout": .onlyAt("5s", reason: "peer connections use fixed timeouts"),
            "raft-write-timeout": .onlyAt("5s", reason: "peer connections use fixed timeouts"),
            "pre-vote": .onlyAt("true", reason: "Raft always runs a pre-vote"),
            "v2-deprecation": .onlyAt("write-only", reason: "there is no v2 store"),
            "enable-pprof": .onlyAt("false", reason: "Go's profiler has no Swift counterpart"),
            "experimental-enable-lease-checkpoint": .onlyAt("true", reason: leasesCheckpointed),
            "experimental-enable-lease-checkpoint-persist": .onlyAt("true", reason: leasesCheckpointed),
            "compaction-batch-limit": .onlyAt("1000", reason: "compaction deletes in fixed batches"),
            "compaction-sleep-interval": .onlyAt("0s", reason: "compaction does not pause between batches"),
            "experimental-txn-mode-write-with-shared-buffer": .onlyAt("true", reason: "transactions always read what they wrote"),
            "bootstrap-defrag-threshold-megabytes": .onlyAt("0", reason: "defragmentation is online (docs/OPERATIONS.md)"),
            "downgrade-check-time": .onlyAt("5s", reason: "the downgrade check interval is fixed"),
            "experimental-stop-grpc-service-on-defrag": .onlyAt("false", reason: "defragmentation never stops serving"),
        ]
        // etcd 3.6 still takes these under their deprecated experimental names, meaning the same.
        for flag in [
            "memory-mlock", "compaction-batch-limit",
            "compaction-sleep-interval", "bootstrap-defrag-threshold-megabytes", "downgrade-check-time",
        ] {
            table["experimental-" + flag] = table[flag]
        }
        for flag in ["enable-distributed-tracing", "experimental-enable-distributed-tracing"] {
            table[flag] = .onlyAt("false", reason: noTracing)
        }
        for flag in [
            "distributed-tracing-address", "distributed-tracing-service-name", "distributed-tracing-instance-id",
            "distributed-tracing-sampling-rate",
        ] {
            table[flag] = .refused(noTracing)
            table["experimental-" + flag] = .refused(noTracing)
        }
        for (flag, value) in [("discovery-dial-timeout", "2s"), ("discovery-keepalive-time", "2s"), ("discovery-keepalive-timeout", "6s")] {
            table[flag] = .onlyAt(value, reason: "the discovery client's connection timings are fixed")
        }
        table["discovery-fallback"] = .onlyAt(
            "exit", reason: "there is no proxy mode to fall back to (etcd 3.6 has none either): a full discovery cluster stops the start")
        for flag in [
            "cluster-active-size", "cluster-remove-delay", "cluster-sync-interval", "config", "force", "max-result-buffer",
            "max-retry-attempts", "peer-heartbeat-interval", "peer-election-timeout", "retry-interval", "snapshot", "v", "vv",
        ] {
            table[flag] = .refused(legacy)
        }
        return table
    }()

    /// etcd 3.6's warnings for the deprecated names swift-etcd takes, worded as etcd words them.
    public static let deprecations: [String: String] = [
        "snapshot-count": "--snapshot-count is deprecated in 3.6 and will be decommissioned in 3.7.",
        "max-snapshots": "--max-snapshots is deprecated in 3.6 and will be decommissioned in 3.7.",
        "experimental-compact-hash-check-enabled":
            "--experimental-compact-hash-check-enabled is deprecated in 3.6 and will be decommissioned in 3.7. Use '--feature-gates=CompactHashCheck=true' instead.",
        "experimental-compact-hash-check-time":
            "--experimental-compact-hash-check-time is deprecated in 3.6 and will be decommissioned in 3.7. Use '--compact-hash-check-time' instead.",
        "experimental-corrupt-check-time":
            "--experimental-corrupt-check-time is deprecated in v3.6 and will be decommissioned in v3.7. Use '--corrupt-check-time' instead.",
        "experimental-watch-progress-notify-interval":
            "--experimental-watch-progress-notify-interval is deprecated in v3.6 and will be decommissioned in v3.7. Use '--watch-progress-notify-interval' instead.",
        "experimental-snapshot-catchup-entries":
            "--experimental-snapshot-catchup-entries is deprecated in v3.6 and will be decommissioned in v3.7. Use '--snapshot-catchup-entries' instead.",
        "experimental-warning-apply-duration":
            "--experimental-warning-apply-duration is deprecated in v3.6 and will be decommissioned in v3.7. Use '--warning-apply-duration' instead.",
        "experimental-warning-unary-request-duration":
            "--experimental-warning-unary-request-duration is deprecated, and will be decommissioned in v3.7. Use --warning-unary-request-duration instead.",
        "experimental-initial-corrupt-check":
            "--experimental-initial-corrupt-check is deprecated in 3.6 and will be decommissioned in 3.7. Use '--feature-gates=InitialCorruptCheck=true' instead.",
    ]

    /// etcd 3.6's feature gates: the value swift-etcd takes (etcd's default but for the lease
    /// checkpoints it always makes), and the flag it honours the gate with (nil: only that
    /// value is taken).
    static let featureGates: [String: (taken: Bool, flag: String?)] = [
        "AllAlpha": (false, nil), "AllBeta": (false, nil),
        "CompactHashCheck": (false, "experimental-compact-hash-check-enabled"),
        "InitialCorruptCheck": (false, "experimental-initial-corrupt-check"),
        "LeaseCheckpoint": (true, nil), "LeaseCheckpointPersist": (true, nil), "SetMemberLocalAddr": (false, nil),
        "StopGRPCServiceOnDefrag": (false, nil), "TxnModeWriteWithSharedBuffer": (true, nil),
    ]

    /// A flag given in the arguments: its name, its value, and the arguments it took.
    struct GivenFlag {
        var name: String
        var value: String
        var tokens: Range<Int>
    }

    /// Whether `flag` takes no separate value (a boolean: `--flag` alone means true).
    private static func isBoolean(_ flag: String) -> Bool {
        if ServerFlags.booleanFlagNames.contains(flag) || flag == "version" { return true }
        if case .onlyAt(let value, _) = treatment(of: flag) { return value == "true" || value == "false" }
        return false
    }

    /// The flags given in `arguments` (`--name=value`, `--name value`, or a boolean `--name`).
    static func given(_ arguments: [String]) -> [GivenFlag] {
        var given: [GivenFlag] = []
        var index = 0
        while index < arguments.count {
            let start = index
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--"), argument.count > 2 else { continue }
            let body = argument.dropFirst(2)
            if let equals = body.firstIndex(of: "=") {
                given.append(GivenFlag(name: String(body[..<equals]), value: String(body[body.index(after: equals)...]), tokens: start..<index))
            } else if isBoolean(String(body)) || index >= arguments.count || arguments[index].hasPrefix("--") {
                given.append(GivenFlag(name: String(body), value: "true", tokens: start..<index))
            } else {
                index += 1
                given.append(GivenFlag(name: String(body), value: arguments[index - 1], tokens: start..<index))
            }
        }
        return given
    }

    /// Checks `arguments` against the table. Returns what the parser should get — without the
    /// flags taken at swift-etcd's fixed value, and with `--feature-gates` turned into the
    /// flags that honour its gates — or a refusal worded for the user.
    public static func check(_ arguments: [String]) -> (arguments: [String], refusal: String?) {
        var dropped = IndexSet()
        var added: [String] = []
        for flag in given(arguments) {
            if flag.name == "feature-gates" {
                dropped.insert(integersIn: flag.tokens)
                for gate in flag.value.split(separator: ",") {
                    let parts = gate.split(separator: "=", maxSplits: 1).map(String.init)
                    guard parts.count == 2, let enabled = Bool(parts[1].lowercased()) else {
                        return (arguments, "--feature-gates: '\(gate)' is not GateName=true|false")
                    }
                    guard let known = featureGates[parts[0]] else {
                        return (arguments, "--feature-gates: unrecognized feature gate: \(parts[0])")
                    }
                    if let honouring = known.flag {
                        if enabled, !arguments.contains("--\(honouring)") { added.append("--\(honouring)") }
                    } else if enabled != known.taken {
                        return (arguments, "--feature-gates: \(parts[0])=\(enabled) is not supported by swift-etcd (only \(parts[0])=\(known.taken))")
                    }
                }
                continue
            }
            switch treatment(of: flag.name) {
            case .honoured:
                continue
            case .onlyAt(let fixed, let reason):
                guard normalised(flag.value) == normalised(fixed) else {
                    return (arguments, "--\(flag.name)=\(flag.value) is not supported by swift-etcd: \(reason) (only --\(flag.name)=\(fixed) is taken)")
                }
                dropped.insert(integersIn: flag.tokens)
            case .refused(let reason):
                guard etcdFlags.contains(flag.name) else { continue }  // not etcd's: the parser reports it
                return (arguments, "--\(flag.name) is not supported by swift-etcd: \(reason)")
            }
        }
        return (arguments.indices.filter { !dropped.contains($0) }.map { arguments[$0] } + added, nil)
    }

    /// A value as compared with a fixed one: booleans and durations in one spelling.
    private static func normalised(_ value: String) -> String {
        switch value.lowercased() {
        case "true", "t", "1": return "true"
        case "false", "f", "0": return value == "0" ? "0" : "false"
        default: break
        }
        if let duration = GoDuration.parse(value) { return "\(duration)" }
        return value
    }

    /// The warnings etcd 3.6 logs for the deprecated names in `arguments`.
    public static func deprecationWarnings(_ arguments: [String]) -> [String] {
        var seen = Set<String>()
        return given(arguments).compactMap { flag in seen.insert(flag.name).inserted ? deprecations[flag.name] : nil }
    }

    /// What `--version` prints: etcd's four lines, with swift-etcd's version and toolchain.
    public static let versionText: String = {
        #if arch(x86_64)
        let architecture = "amd64"
        #elseif arch(arm64)
        let architecture = "arm64"
        #else
        let architecture = "unknown"
        #endif
        return """
            etcd Version: \(EtcdServer.version)
            Git SHA: not recorded
            Go Version: none (swift-etcd is built with Swift 6)
            Go OS/Arch: linux/\(architecture)

            """
    }()

    /// docs/FLAGS.md's table: every etcd 3.6 flag and what swift-etcd does with it.
    public static func markdownTable() -> String {
        var lines = ["| etcd 3.6 flag | swift-etcd |", "|---|---|"]
        for flag in etcdFlags {
            let state: String
            switch treatment(of: flag) {
            case .honoured: state = deprecations[flag].map { "honoured (deprecated in etcd 3.6: \($0))" } ?? "honoured"
            case .onlyAt(let value, let reason): state = "only `\(value)`: \(reason)"
            case .refused(let reason): state = "refused: \(reason)"
            }
            lines.append("| `--\(flag)` | \(state) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
