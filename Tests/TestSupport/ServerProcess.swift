import EtcdProto
import Foundation
import GRPCWire
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
    private let process = Mutex<Process?>(nil)

    /// The package's executable sits beside the test bundle in the build folder, unless
    /// `SWIFT_ETCD_BINARY` names another (the crash campaign script uses a release build).
    public static let binary = ProcessInfo.processInfo.environment["SWIFT_ETCD_BINARY"].map { URL(fileURLWithPath: $0) }
        ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("swift-etcd")

    /// Debian's etcd, when installed.
    public static let etcdBinary = URL(fileURLWithPath: "/usr/bin/etcd")

    /// Where the process's log goes (appended across restarts); nowhere when nil.
    public let logFile: URL?

    public init(dataDirectory: URL, kind: Kind = .swiftEtcd, logFile: URL? = nil) async throws {
        self.dataDirectory = dataDirectory
        self.kind = kind
        self.logFile = logFile
        port = try await Self.freePort()
        peerPort = try await Self.freePort()
    }

    public static func freePort() async throws -> Int {
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        defer { probe.close(promise: nil) }
        return probe.localAddress!.port!
    }

    public func start(environment: [String: String] = [:], arguments: [String] = []) async throws {
        let binary = kind == .etcd ? Self.etcdBinary : Self.binary
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw GRPCStatus(.failedPrecondition, "\(binary.path) is missing (swift build, or apt-get install etcd-server)")
        }
        let process = Process()
        process.executableURL = binary
        var flags = [
            "--data-dir", dataDirectory.path, "--listen-client-urls", "http://127.0.0.1:\(port)",
            "--advertise-client-urls", "http://127.0.0.1:\(port)",
        ]
        if !arguments.contains("--listen-peer-urls") {
            // Members listen for peers; a free port keeps parallel tests apart.
            let peer = "http://127.0.0.1:\(peerPort)"
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
        try process.run()
        self.process.withLock { $0 = process }
        // Bounded wait until it answers.
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let connection = try? await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: port)) {
                let healthy = (try? await connection.unary(
                    Grpc_Health_V1_HealthRPCs.check.path, Grpc_Health_V1_HealthCheckRequest(), timeout: .seconds(1),
                    responseType: Grpc_Health_V1_HealthCheckResponse.self)) != nil
                await connection.close()
                if healthy { return }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        kill9()
        throw GRPCStatus(.unavailable, "swift-etcd did not start within 30 s")
    }

    /// Pauses (SIGSTOP) or resumes (SIGCONT) the process.
    public func signal(_ number: Int32) {
        process.withLock { process in
            if let process, process.isRunning { kill(process.processIdentifier, number) }
        }
    }

    public var isRunning: Bool { process.withLock { $0?.isRunning ?? false } }

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
        running.waitUntilExit()
    }

    deinit { kill9() }
}

