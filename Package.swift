// swift-tools-version: 6.1
import PackageDescription

/// Every target compiles in Swift 6 language mode with strict concurrency and these upcoming features.
let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "swift-etcd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "swift-etcd", targets: ["swift-etcd"]),
        .executable(name: "swift-etcdutl", targets: ["swift-etcdutl"]),
        .executable(name: "grpc-bench", targets: ["grpc-bench"]),
        .executable(name: "raft-bench", targets: ["raft-bench"]),
        .executable(name: "wal-bench", targets: ["wal-bench"]),
        .library(name: "Raft", targets: ["Raft"]),
        .library(name: "EtcdClient", targets: ["EtcdClient"]),
        .executable(name: "swift-etcd-benchmark", targets: ["swift-etcd-benchmark"]),
        .library(name: "GRPCWire", targets: ["GRPCWire"]),
        .library(name: "EtcdProto", targets: ["EtcdProto"]),
        .library(name: "EtcdEmbed", targets: ["EtcdEmbed"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        // A value guarded by a lock: the standard library's Mutex, or a pthread lock that
        // ThreadSanitizer can see in sanitizer builds (-DSANITIZE_THREAD); a value computed on
        // a thread of its own.
        .target(
            name: "Locking",
            swiftSettings: strictSettings
        ),
        // CRC-32C, the checksum of the log's records and the backend's rows.
        .target(
            name: "Checksum",
            swiftSettings: strictSettings
        ),
        // Listen addresses bound at start, before anything is written, and handed to servers.
        .target(
            name: "BoundSockets",
            dependencies: ["Locking", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        // etcd's backend file format (bbolt), read-only: how an etcd snapshot is imported.
        .target(
            name: "BoltReader",
            swiftSettings: strictSettings
        ),
        // Generated messages for etcd's v3 API (regenerate with scripts/generate-protos.sh).
        .target(
            name: "EtcdProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: strictSettings
        ),
        // gRPC over HTTP/2 on swift-nio-http2: server, client, framing, status, deadlines, TLS.
        .target(
            name: "GRPCWire",
            dependencies: [
                "BoundSockets", "Locking",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        // TLS as etcd configures it: certificate files checked and re-read when they change,
        // auto TLS, revocation lists, peer certificate rules, handshake deadlines.
        .target(
            name: "TransportSecurity",
            dependencies: [
                "Locking",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // The Raft consensus state machine: pure, no I/O, no clock, no threads, standard library only.
        .target(
            name: "Raft",
            swiftSettings: strictSettings
        ),
        // Commits entries through a 3-node in-process cluster to measure the Raft library alone.
        .executableTarget(
            name: "raft-bench",
            dependencies: ["Raft"],
            swiftSettings: strictSettings
        ),
        // Measures write-ahead log append throughput next to a plain fdatasync loop.
        .executableTarget(
            name: "wal-bench",
            dependencies: ["WAL"],
            swiftSettings: strictSettings
        ),
        // The storage records and the SQLite backend: key revisions, meta, leases, documents.
        .target(
            name: "Backend",
            dependencies: ["Checksum", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "GRDBSQLite", package: "GRDB.swift")],
            swiftSettings: strictSettings
        ),
        // The revisioned keyspace: revisions, per-key generations, the in-memory ordered index, watchers.
        .target(
            name: "MVCC",
            dependencies: [
                "Locking",
                "Backend",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: strictSettings
        ),
        // The write-ahead log: CRC-protected records in segment files, fsynced per append.
        .target(
            name: "WAL",
            dependencies: ["Checksum", "Locking", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strictSettings
        ),
        // Leases: which exist, their TTLs and keys, expiry on the leader (etcd's lessor).
        .target(
            name: "Lease",
            dependencies: ["Locking", "Backend", .product(name: "HeapModule", package: "swift-collections")],
            swiftSettings: strictSettings
        ),
        // Users, roles and key-range grants; simple and JWT tokens; bcrypt password hashing.
        .target(
            name: "Auth",
            dependencies: [
                "Locking",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
            ],
            swiftSettings: strictSettings
        ),
        // etcd's lock and election recipes over any store: the client's and the member's own.
        .target(
            name: "Coordination",
            dependencies: ["EtcdProto"],
            swiftSettings: strictSettings
        ),
        // One member: the apply loop, etcd's apply rules, reads, status and membership.
        .target(
            name: "EtcdServer",
            dependencies: [
                "BoundSockets", "Locking",
                "Auth", "Backend", "BoltReader", "Checksum", "EtcdProto", "Lease", "MVCC", "Raft", "TransportSecurity", "WAL",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // etcd's gRPC services mapped onto the server.
        .target(
            name: "EtcdAPI",
            dependencies: [
                "Locking",
                "Auth", "Backend", "Coordination", "EtcdProto", "EtcdServer", "GRPCWire", "MVCC", "TransportSecurity",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        // etcd's Prometheus metrics for one member: its registry, what the loop and disk report,
        // the gRPC server metrics (an interceptor), the process metrics.
        .target(
            name: "EtcdMetrics",
            dependencies: [
                "Locking",
                "EtcdProto",
                "EtcdServer",
                "MVCC",
                "GRPCWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings
        ),
        // The HTTP/1.1 side of the client port: health and version (metrics and the /v3 gateway next).
        .target(
            name: "EtcdHTTP",
            dependencies: [
                "EtcdMetrics",
                "EtcdProto",
                "EtcdServer",
                "GRPCWire",
                "TransportSecurity",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // etcd's JSON gateway: /v3 HTTP requests as gRPC calls to the member, streams included.
        .target(
            name: "EtcdGateway",
            dependencies: [
                "Locking",
                "EtcdAPI",
                "EtcdHTTP",
                "EtcdProto",
                "GRPCWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        // An embeddable server (etcd's embed): flags, ETCD_* variables, logs, listeners, lifecycle.
        .target(
            name: "EtcdEmbed",
            dependencies: [
                "BoundSockets", "Locking",
                "Auth",
                "EtcdAPI",
                "EtcdGateway",
                "EtcdHTTP",
                "EtcdMetrics",
                "EtcdServer",
                "GRPCWire",
                "TransportSecurity",
                "Coordination",
                "EtcdClient",
                "EtcdProto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // The server executable: a few lines over EtcdEmbed.
        .executableTarget(
            name: "swift-etcd",
            dependencies: [
                "EtcdEmbed",
                "EtcdServer",
                "GRPCWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // etcdutl for swift-etcd data: restore and inspect backups, defragment a stopped member.
        .executableTarget(
            name: "swift-etcdutl",
            dependencies: [
                "Backend",
                "EtcdServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        // The Swift client library for etcd's v3 API (etcd or swift-etcd).
        .target(
            name: "EtcdClient",
            dependencies: [
                "Locking",
                "Coordination",
                "EtcdProto",
                "GRPCWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        // Load generator modelled on etcd's tools/benchmark.
        .executableTarget(
            name: "swift-etcd-benchmark",
            dependencies: [
                "Locking",
                "EtcdClient",
                "EtcdProto",
                "GRPCWire",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strictSettings
        ),
        // Echo server and load generator for measuring the gRPC layer and the real etcd's RPC cost.
        .executableTarget(
            name: "grpc-bench",
            dependencies: [
                "GRPCWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "GRPCWireTests",
            dependencies: [
                "Locking",
                "GRPCWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        // Helpers shared by test targets.
        .target(
            name: "TestSupport",
            dependencies: [
                "Locking",
                "EtcdClient",
                "EtcdProto",
                "EtcdServer",
                "GRPCWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "EtcdClientTests",
            dependencies: [
                "EtcdClient",
                "EtcdProto",
                "GRPCWire",
                "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        // Multi-process clusters of real swift-etcd members.
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "Backend", "EtcdClient", "EtcdProto", "GRPCWire", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "EtcdEmbedTests",
            dependencies: [
                "Locking",
                "Auth", "EtcdClient", "EtcdEmbed", "EtcdHTTP", "EtcdProto", "EtcdServer", "GRPCWire", "TestSupport", "TransportSecurity",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "TransportSecurityTests",
            dependencies: [
                "Locking",
                "TestSupport", "TransportSecurity",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AuthTests",
            dependencies: ["Auth"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "LeaseTests",
            dependencies: ["Backend", "Lease", "MVCC"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "RaftTests",
            dependencies: ["Raft", "TestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "MVCCTests",
            dependencies: ["Locking", "Backend", "MVCC", "TestSupport", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "WALTests",
            dependencies: ["Checksum", "Locking", "WAL"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "EtcdServerTests",
            dependencies: [
                "Locking",
                "Backend", "EtcdServer", "EtcdProto", "MVCC", "Raft", "WAL", "TestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "EtcdAPITests",
            dependencies: [
                "Locking",
                "Backend",
                "EtcdAPI",
                "TestSupport",
                "EtcdProto",
                "EtcdServer",
                "GRPCWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
