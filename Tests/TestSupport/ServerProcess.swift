import EtcdProto
import Foundation
import GRPCWire
import Locking
import NIOCore
import NIOPosix
import SwiftProtobuf
import Synchronization

/// A real server process — `swift-etcd`, or Debian's etcd as the reference — started on free
/// loopback ports with its own data directory.
public final class ServerProcess: Sendable {
    public enum Kind: Sendable {
        case swiftEtcd
        /// `/usr/bin/etcd` (Debian's `etcd-server`).
        case etcd
    }

    public let dataDirectory: URL
    public let port: Int
    public let kind: Kind
    public let peerPort: Int
    /// When set, client and peer URLs are `https` and the server runs with these certificates.
    public let tls: TestTLS?
    private let process = Locked<Process?>(nil)

    /// The package's executable sits beside the test bundle in the build folder, unless
    /// `SWIFT_ETCD_BINARY` names another (the crash campaign script uses a release build).
    public static let binary = ProcessInfo.processInfo.environment["SWIFT_ETCD_BINARY"].map { URL(fileURLWithPath: $0) }
        ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("swift-etcd")

    /// Debian's etcd, when installed.
    public static let etcdBinary = URL(fileURLWithPath: "/usr/bin/etcd")

    /// Where the process's log goes (appended across restarts); nowhere when nil.
    public let logFile: URL?

    public init(dataDirectory: URL, kind: Kind = .swiftEtcd, logFile: URL? = nil, tls: TestTLS? = nil) async throws {
        self.dataDirectory = dataDirectory
        self.kind = kind
        self.logFile = logFile
        self.tls = tls
        port = try await Self.freePort()
        peerPort = try await Self.freePort()
    }

    /// A loopback port nothing listens on, never handed out twice in this process. Ports come
    /// from below the kernel's ephemeral range (32768 and up), so an outgoing connection of a
    /// test running in parallel cannot take the port between this probe and the server's bind.
    public static func freePort() async throws -> Int {
        for _ in 0..<portRange.count {
            let port = nextPort.withLock { next in
                defer { next = next == portRange.upperBound - 1 ? portRange.lowerBound : next + 1 }
                return next
            }
            guard let probe = try? await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: "127.0.0.1", port: port).get() else { continue }
            try await probe.close()
            return port
        }
        throw GRPCStatus(.resourceExhausted, "no free loopback port in \(portRange)")
    }

    private static let portRange = 12000..<32000
    /// Starts at a point picked by the process id, so test processes running side by side
    /// (campaign scripts) mostly draw from different stretches.
    private static let nextPort = Locked(portRange.lowerBound + Int(getpid()) * 211 % portRange.count)

    /// Starts the process; with `tlsFlags` false a TLS server gets its certificates from
    /// `environment` instead of ``TestTLS/serverArguments``. With `waitUntilServing` false it
    /// returns once the process runs, without waiting for it to answer.
    public func start(
        environment: [String: String] = [:], arguments: [String] = [], tlsFlags: Bool = true, waitUntilServing: Bool = true
    ) async throws {
        let binary = kind == .etcd ? Self.etcdBinary : Self.binary
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw GRPCStatus(.failedPrecondition, "\(binary.path) is missing (swift build, or apt-get install etcd-server)")
        }
        let process = Process()
        process.executableURL = binary
        var flags = [
            "--data-dir", dataDirectory.path, "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
        ] + (tlsFlags ? tls?.serverArguments ?? [] : [])
        if !arguments.contains("--listen-peer-urls") {
            // Members listen for peers; a free port keeps parallel tests apart.
            let peer = "\(scheme)://127.0.0.1:\(peerPort)"
            flags += ["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "default=\(peer)"]
        }
        process.arguments = flags + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        if let logFile {
            if !FileManager.default.fileExists(atPath: logFile.path) {
                _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
            }
            if let handle = try? FileHandle(forWritingTo: logFile) {
                handle.seekToEndOfFile()
                process.standardError = handle
            }
        }
        try ChildProcesses.launch(process)
        self.process.withLock { $0 = process }
        if waitUntilServing { try await self.waitUntilServing() }
    }

    /// Waits until the started process answers health checks, at most `limit`; a process that
    /// exits first is reported at once. It is asked at least once after the limit too: a test
    /// process whose tasks were held up (the two cores busy with other tests) must not give up
    /// on a member that is serving.
    public func waitUntilServing(within limit: Duration = .seconds(30)) async throws {
        guard let process = process.withLock({ $0 }) else { throw GRPCStatus(.failedPrecondition, "the process is not started") }
        let deadline = ContinuousClock.now + limit
        while true {
            if !process.isRunning {
                self.process.withLock { $0 = nil }
                throw GRPCStatus(.unavailable, "swift-etcd exited with status \(process.terminationStatus) before serving\(logTail())")
            }
            if let connection = try? await connect() {
                let healthy = (try? await connection.unary(
                    Grpc_Health_V1_HealthRPCs.check.path, Grpc_Health_V1_HealthCheckRequest(), timeout: .seconds(1),
                    responseType: Grpc_Health_V1_HealthCheckResponse.self)) != nil
                await connection.close()
                if healthy { return }
            }
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        kill9()
        throw GRPCStatus(.unavailable, "swift-etcd did not start within \(limit)\(logTail())")
    }

    /// `http`, or `https` with TLS.
    public var scheme: String { tls == nil ? "http" : "https" }

    /// The client URL it listens on.
    public var clientURL: String { "\(scheme)://127.0.0.1:\(port)" }

    /// A gRPC connection to its client port (with the test client certificate under TLS).
    public func connect() async throws -> GRPCClientConnection {
        try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: port, tls: try tls?.clientConfiguration()))
    }

    /// The last lines of the log file, for an error saying why a start failed.
    private func logTail() -> String {
        guard let logFile, let text = try? String(contentsOf: logFile, encoding: .utf8) else { return "" }
        return "; log ends:\n" + text.split(separator: "\n").suffix(5).joined(separator: "\n")
    }

    /// Pauses (SIGSTOP) or resumes (SIGCONT) the process.
    public func signal(_ number: Int32) {
        process.withLock { process in
            if let process, process.isRunning { kill(process.processIdentifier, number) }
        }
    }

    public var isRunning: Bool { process.withLock { $0?.isRunning ?? false } }

    /// The running process's ID (nil when it is not started).
    public var processIdentifier: Int32? { process.withLock { $0?.processIdentifier } }

    /// Waits at most `limit` for the process to end by itself: its exit status, or nil if it
    /// still runs (or was not started).
    public func exitStatus(within limit: Duration) async -> Int32? {
        guard let running = process.withLock({ $0 }) else { return nil }
        guard let status = await ChildProcesses.exit(of: running, within: limit) else { return nil }
        process.withLock { if $0 === running { $0 = nil } }
        return status
    }

    public func kill9() {
        stop { kill($0.processIdentifier, SIGKILL) }
    }

    public func terminate() {
        stop { $0.terminate() }
    }

    private func stop(_ signal: (Process) -> Void) {
        guard let running = process.withLock({ process in defer { process = nil }; return process }), running.isRunning else {
            return
        }
        signal(running)
        ChildProcesses.waitForExit(running)
    }

    deinit { kill9() }
}

