import EtcdAPI
import Foundation
import GRPCWire
import Locking
import NIOCore
import NIOPosix
import Synchronization

/// The gateway's own way in to its member: a gRPC server on a Unix socket in a fresh
/// directory only this process's user can enter (named after the process, so the next start
/// removes it when the process was killed), serving the member's router, and a client
/// connected to it. etcd's gateway dials the member's public client URL instead, through its
/// TLS, with the member's certificate as its client certificate; a private socket needs no
/// TLS and lets the gateway pass on its HTTP client's own certificate name.
package final class GatewayChannel: Sendable {
    let client: GRPCClient
    private let server: GRPCServer
    private let directory: String
    /// The connection in use, so a call starts without a task hop while it stays usable.
    private let current = Locked<GRPCClientConnection?>(nil)
    /// Where failures found before a call starts are reported.
    let eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()

    private init(client: GRPCClient, server: GRPCServer, directory: String) {
        self.client = client
        self.server = server
        self.directory = directory
    }

    /// Starts serving `router` with `configuration` (whose address it replaces) privately.
    package static func start(router: ServerRouter, configuration: GRPCServer.Configuration) async throws -> GatewayChannel {
        let directory = try makePrivateDirectory()
        let path = directory + "/grpc.sock"
        var configuration = configuration
        configuration.unixSocketPath = path
        configuration.http1 = nil
        configuration.security = nil
        configuration.tls = nil
        let server: GRPCServer
        do {
            server = try await GRPCServer.start(router: router, configuration: configuration)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        return GatewayChannel(
            client: GRPCClient(endpoints: [GRPCClient.Endpoint(unixSocketPath: path)]), server: server, directory: directory)
    }

    /// Runs `start` on a usable connection: at once when the last one still is, else once
    /// the client has (re)connected.
    func withConnection<T: Sendable>(
        _ start: @escaping @Sendable (GRPCClientConnection) -> EventLoopFuture<T>, on eventLoop: any EventLoop
    ) -> EventLoopFuture<T> {
        if let connection = current.withLock({ $0 }), connection.isUsable { return start(connection) }
        let promise = eventLoop.makePromise(of: T.self)
        promise.completeWithTask { [self] in
            let connection = try await client.connection()
            current.withLock { $0 = connection }
            return try await start(connection).get()
        }
        return promise.futureResult
    }

    /// Closes the client, stops the server (calls in flight get `gracePeriod`) and removes the socket.
    package func stop(gracePeriod: TimeAmount) async {
        await client.close()
        await server.shutdown(gracePeriod: gracePeriod)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A new directory with mode 0700 under the temporary directory (or `/tmp`, when that path
    /// would leave too little room in a socket address), named `swift-etcd-gateway-<pid>-XXXXXX`;
    /// first removes those of this user's processes that no longer run (killed before they
    /// could remove their own: a SIGKILL, a fatal error).
    private static func makePrivateDirectory() throws -> String {
        var base = FileManager.default.temporaryDirectory.path
        if base.utf8.count > 60 { base = "/tmp" }
        removeDirectoriesOfEndedProcesses(in: base)
        var template = Array((base + "/\(directoryPrefix)\(getpid())-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in mkdtemp(buffer.baseAddress!).map { String(cString: $0) } }
        guard let made else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: base])
        }
        return made
    }

    private static let directoryPrefix = "swift-etcd-gateway-"

    /// Removes the private directories in `base` that this user's ended processes left. One
    /// whose process still runs (or whose number another process took since) stays.
    private static func removeDirectoriesOfEndedProcesses(in base: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where name.hasPrefix(directoryPrefix) {
            let rest = name.dropFirst(directoryPrefix.count)
            guard let dash = rest.firstIndex(of: "-"), let pid = pid_t(rest[..<dash]), pid > 0 else { continue }
            let path = base + "/" + name
            var status = stat()
            guard lstat(path, &status) == 0, status.st_uid == getuid(), status.st_mode & S_IFMT == S_IFDIR else { continue }
            guard kill(pid, 0) == -1, errno == ESRCH else { continue }
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}
