import EtcdAPI
import Foundation
import GRPCWire
import Locking
import NIOCore
import NIOPosix
import Synchronization

/// The gateway's own way in to its member: a gRPC server on a Unix socket only this process's
/// user can reach (in the member's own directory, or else in a fresh private directory),
/// serving the member's router, and a client connected to it. etcd's gateway dials the member's public client URL instead, through its
/// TLS, with the member's certificate as its client certificate; a private socket needs no
/// TLS and lets the gateway pass on its HTTP client's own certificate name.
package final class GatewayChannel: Sendable {
    let client: GRPCClient
    private let server: GRPCServer
    /// What ``stop(gracePeriod:)`` removes: the socket, or the private directory made for it.
    private let placement: String
    /// The connection in use, so a call starts without a task hop while it stays usable.
    private let current = Locked<GRPCClientConnection?>(nil)
    /// Where failures found before a call starts are reported.
    let eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()

    private init(client: GRPCClient, server: GRPCServer, placement: String) {
        self.client = client
        self.server = server
        self.placement = placement
    }

    /// Starts serving `router` with `configuration` (whose address it replaces) privately.
    ///
    /// - Parameter memberDirectory: a directory private to this process (the member's locked
    ///   data directory), where a socket left by a killed process is replaced at the next
    ///   start instead of piling up in the temporary directory. When its path is too long for
    ///   a socket address, or its file system takes no sockets, a fresh directory under the
    ///   temporary directory serves instead.
    package static func start(
        router: ServerRouter, configuration: GRPCServer.Configuration, memberDirectory: String?
    ) async throws -> GatewayChannel {
        if let memberDirectory {
            let path = URL(fileURLWithPath: memberDirectory).standardizedFileURL.appendingPathComponent("gateway.sock").path
            if let channel = try? await start(router: router, configuration: configuration, socketPath: path, placement: path) {
                return channel
            }
        }
        let directory = try makePrivateDirectory()
        return try await start(router: router, configuration: configuration, socketPath: directory + "/grpc.sock", placement: directory)
    }

    private static func start(
        router: ServerRouter, configuration: GRPCServer.Configuration, socketPath path: String, placement: String
    ) async throws -> GatewayChannel {
        var configuration = configuration
        configuration.unixSocketPath = path
        configuration.http1 = nil
        configuration.security = nil
        configuration.tls = nil
        let server: GRPCServer
        do {
            server = try await GRPCServer.start(router: router, configuration: configuration)
        } catch {
            try? FileManager.default.removeItem(atPath: placement)
            throw error
        }
        return GatewayChannel(
            client: GRPCClient(endpoints: [GRPCClient.Endpoint(unixSocketPath: path)]), server: server, placement: placement)
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
        try? FileManager.default.removeItem(atPath: placement)
    }

    /// A new directory with mode 0700 under the temporary directory (or `/tmp`, when that path
    /// would leave too little room in a socket address).
    private static func makePrivateDirectory() throws -> String {
        var base = FileManager.default.temporaryDirectory.path
        if base.utf8.count > 60 { base = "/tmp" }
        var template = Array((base + "/swift-etcd-gateway-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in mkdtemp(buffer.baseAddress!).map { String(cString: $0) } }
        guard let made else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: base])
        }
        return made
    }
}
