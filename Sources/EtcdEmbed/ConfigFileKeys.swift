/// The keys of etcd 3.6's configuration file (its `embed.Config` JSON names), with their Go
/// types and the flags they set.
extension ConfigFile {
    private static func values(_ kind: ValueKind, _ names: [String]) -> [String: Key] {
        Dictionary(uniqueKeysWithValues: names.map { ($0, Key.value(kind, flag: $0)) })
    }

    static let topLevelKeys: [String: Key] = {
        var keys: [String: Key] = [:]
        keys.merge(values(.string, [
            "name", "data-dir", "wal-dir", "backend-bbolt-freelist-type", "tls-min-version", "tls-max-version",
            "initial-cluster-state", "discovery-srv", "discovery-srv-name", "discovery-proxy", "discovery", "initial-cluster",
            "initial-cluster-token", "auto-compaction-mode", "auto-compaction-retention", "auth-token", "metrics",
            "listen-metrics-urls", "experimental-distributed-tracing-address", "distributed-tracing-address",
            "experimental-distributed-tracing-service-name", "distributed-tracing-service-name",
            "experimental-distributed-tracing-instance-id", "distributed-tracing-instance-id", "logger", "log-level",
            "log-format", "log-rotation-config-json", "v2-deprecation", "listen-peer-urls", "listen-client-urls",
            "listen-client-http-urls", "initial-advertise-peer-urls", "advertise-client-urls", "cors", "host-whitelist",
            "feature-gates",
        ])) { $1 }
        keys.merge(values(.bool, [
            "initial-election-tick-advance", "strict-reconfig-check", "pre-vote", "experimental-initial-corrupt-check",
            "experimental-compact-hash-check-enabled", "experimental-enable-lease-checkpoint",
            "experimental-enable-lease-checkpoint-persist", "force-new-cluster", "enable-pprof",
            "experimental-enable-distributed-tracing", "enable-distributed-tracing",
            "experimental-peer-skip-client-san-verification", "enable-log-rotation", "enable-grpc-gateway", "unsafe-no-fsync",
            "memory-mlock", "experimental-memory-mlock", "experimental-txn-mode-write-with-shared-buffer",
            "experimental-stop-grpc-service-on-defrag",
        ])) { $1 }
        keys.merge(values(.unsigned(goType: "uint64"), ["snapshot-count", "snapshot-catchup-entries"])) { $1 }
        keys.merge(values(.unsigned(goType: "uint"), [
            "max-snapshots", "max-wals", "heartbeat-interval", "election-timeout", "max-txn-ops", "max-request-bytes",
            "self-signed-cert-validity", "bcrypt-cost", "auth-token-ttl", "experimental-bootstrap-defrag-threshold-megabytes",
            "bootstrap-defrag-threshold-megabytes",
        ])) { $1 }
        keys.merge(values(.unsigned(goType: "uint32"), ["max-concurrent-streams"])) { $1 }
        keys.merge(values(.signed(goType: "int64"), ["quota-backend-bytes"])) { $1 }
        keys.merge(values(.signed(goType: "int"), [
            "backend-batch-limit", "experimental-compaction-batch-limit", "compaction-batch-limit", "max-learners",
            "experimental-distributed-tracing-sampling-rate", "distributed-tracing-sampling-rate",
        ])) { $1 }
        keys.merge(values(.duration, [
            "backend-batch-interval", "grpc-keepalive-min-time", "grpc-keepalive-interval", "grpc-keepalive-timeout",
            "experimental-corrupt-check-time", "corrupt-check-time", "experimental-compact-hash-check-time",
            "compact-hash-check-time", "experimental-compaction-sleep-interval", "compaction-sleep-interval",
            "experimental-watch-progress-notify-interval", "watch-progress-notify-interval",
            "experimental-warning-apply-duration", "warning-apply-duration", "warning-unary-request-duration",
            "experimental-warning-unary-request-duration", "experimental-downgrade-check-time", "downgrade-check-time",
        ])) { $1 }
        keys.merge(values(.strings, ["cipher-suites", "log-outputs"])) { $1 }
        // The file spells this one differently from its flag.
        keys["experimental-snapshot-catch-up-entries"] = .value(.unsigned(goType: "uint64"), flag: "experimental-snapshot-catchup-entries")
        keys["experimental-max-learners"] = .value(.signed(goType: "int"), flag: "max-learners")
        keys["client-transport-security"] = .block(security(peer: false), structName: "securityConfig")
        keys["peer-transport-security"] = .block(security(peer: true), structName: "securityConfig")
        keys["socket-options"] = .block([
            "reuse-port": .value(.bool, flag: "socket-reuse-port"),
            "reuse-address": .value(.bool, flag: "socket-reuse-address"),
        ], structName: "transport.SocketOpts")
        keys["discovery-config"] = .block(discovery, structName: "v3discovery.DiscoveryConfig")
        let sampleOnly = "etcd 3.6 does not read it (etcd 2's proxy, left in etcd's sample file)"
        for key in ["proxy", "proxy-failure-wait", "proxy-refresh-interval", "proxy-dial-timeout", "proxy-write-timeout", "proxy-read-timeout"] {
            keys[key] = .ignoredByEtcd(sampleOnly)
        }
        keys["discovery-fallback"] = .ignoredByEtcd("etcd 3.6 reads it from the command line only")
        let removed = "an etcd 3.4 key that etcd 3.6 no longer reads"
        for key in ["enable-v2", "debug", "log-package-levels", "log-output", "experimental-enable-v2v3", "experimental-backend-bbolt-freelist-type"] {
            keys[key] = .ignoredByEtcd(removed)
        }
        return keys
    }()

    /// `client-transport-security` and `peer-transport-security` (etcd's `securityConfig`).
    private static func security(peer: Bool) -> [String: Key] {
        let prefix = peer ? "peer-" : ""
        var keys: [String: Key] = [
            "cert-file": .value(.string, flag: prefix + "cert-file"),
            "key-file": .value(.string, flag: prefix + "key-file"),
            "client-cert-file": .value(.string, flag: prefix + "client-cert-file"),
            "client-key-file": .value(.string, flag: prefix + "client-key-file"),
            "client-cert-auth": .value(.bool, flag: prefix + "client-cert-auth"),
            "trusted-ca-file": .value(.string, flag: prefix + "trusted-ca-file"),
            "auto-tls": .value(.bool, flag: prefix + "auto-tls"),
        ]
        if peer {
            keys["allowed-cn"] = .value(.strings, flag: "peer-cert-allowed-cn")
            keys["allowed-hostname"] = .value(.strings, flag: "peer-cert-allowed-hostname")
            keys["skip-client-san-verification"] = .value(.bool, flag: "peer-skip-client-san-verification")
        } else {
            keys["allowed-cn"] = .unsupported(.strings, why: "client certificates are not restricted by common name")
            keys["allowed-hostname"] = .value(.strings, flag: "client-cert-allowed-hostname")
            keys["skip-client-san-verification"] = .unsupported(.bool, why: "client certificates' addresses are never checked")
        }
        return keys
    }

    /// `discovery-config`: etcd 3.6's v3 discovery.
    private static let discovery: [String: Key] = [
        "token": .value(.string, flag: "discovery-token"),
        "client": .block([
            "endpoints": .value(.strings, flag: "discovery-endpoints"),
            "dial-timeout": .value(.duration, flag: "discovery-dial-timeout"),
            "request-timeout": .value(.duration, flag: "discovery-request-timeout"),
            "keepalive-time": .value(.duration, flag: "discovery-keepalive-time"),
            "keepalive-timeout": .value(.duration, flag: "discovery-keepalive-timeout"),
            "max-request-bytes": .unsupported(.signed(goType: "int"), why: "it has no flag in etcd either"),
            "max-recv-bytes": .unsupported(.signed(goType: "int"), why: "it has no flag in etcd either"),
            "secure": .block([
                "cert": .value(.string, flag: "discovery-cert"),
                "key": .value(.string, flag: "discovery-key"),
                "cacert": .value(.string, flag: "discovery-cacert"),
                "server-name": .unsupported(.string, why: "it has no flag in etcd either"),
                "insecure-transport": .value(.bool, flag: "discovery-insecure-transport"),
                "insecure-skip-tls-verify": .value(.bool, flag: "discovery-insecure-skip-tls-verify"),
            ], structName: "v3discovery.DiscoveryConfig"),
            "auth": .block([
                "username": .value(.string, flag: "discovery-user"),
                "password": .value(.string, flag: "discovery-password"),
            ], structName: "v3discovery.DiscoveryConfig"),
        ], structName: "v3discovery.DiscoveryConfig"),
    ]
}
