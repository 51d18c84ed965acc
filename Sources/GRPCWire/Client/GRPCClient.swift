import Locking
import NIOCore
import NIOHPACK
import NIOPosix
import NIOSSL
import SwiftProtobuf
import Synchronization

/// A client for a set of equivalent endpoints (the members of one cluster): calls go to the
/// endpoints in turn, one connection each, reconnecting when a connection closes or receives GOAWAY.
public final class GRPCClient: Sendable {
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        /// Set for a `unix://path` endpoint: the socket to connect to instead of `host:port`.
        public var unixSocketPath: String?

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public init(unixSocketPath: String) {
            self.host = "localhost"
            self.port = 0
            self.unixSocketPath = unixSocketPath
        }

        /// Parses `host:port`, `http://host:port`, `https://host:port`, or `unix://path` /
        /// `unixs://path` (the path is everything after the scheme, as etcd reads it).
        public init?(_ text: String) {
            for scheme in ["unix://", "unixs://"] where text.hasPrefix(scheme) {
                let path = String(text.dropFirst(scheme.count))
                guard !path.isEmpty else { return nil }
                self.init(unixSocketPath: path)
                return
            }
            var rest = Substring(text)
            for scheme in ["http://", "https://"] where rest.hasPrefix(scheme) {
                rest = rest.dropFirst(scheme.count)
            }
            if rest.hasSuffix("/") { rest = rest.dropLast() }
            guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]) else {
                return nil
            }
            var host = rest[..<colon]
            if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
            self.init(host: String(host), port: port)
        }

        public var description: String { unixSocketPath.map { "unix://\($0)" } ?? "\(host):\(port)" }
    }

    private struct State {
        var connections: [GRPCClientConnection?]
        /// Replaced connections whose calls may still be finishing (the server sent GOAWAY);
        /// the server closes them when they are done, ``close()`` closes what is left.
        var draining: [GRPCClientConnection] = []
        var next = 0
    }

    public let endpoints: [Endpoint]
    private let tls: TLSConfiguration?
    private let serverHostname: String?
    private let group: any EventLoopGroup
    private let state: Locked<State>

    public init(
        endpoints: [Endpoint], tls: TLSConfiguration? = nil, serverHostname: String? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        precondition(!endpoints.isEmpty, "a client needs at least one endpoint")
        self.endpoints = endpoints
        self.tls = tls
        self.serverHostname = serverHostname
        self.group = group
        self.state = Locked(State(connections: Array(repeating: nil, count: endpoints.count)))
    }

    /// A usable connection to the next endpoint in turn, connecting (or reconnecting) as needed;
    /// endpoints that refuse are skipped until one answers.
    public func connection() async throws -> GRPCClientConnection {
        var lastError: (any Error)?
        for _ in endpoints.indices {
            let (index, existing) = state.withLock { state in
                let index = state.next
                state.next = (state.next + 1) % endpoints.count
                return (index, state.connections[index])
            }
            if let existing, existing.isUsable { return existing }
            do {
                var configuration = GRPCClientConnection.Configuration(
                    host: endpoints[index].host, port: endpoints[index].port, tls: tls)
                configuration.unixSocketPath = endpoints[index].unixSocketPath
                configuration.serverHostname = serverHostname
                let fresh = try await GRPCClientConnection.connect(configuration, group: group)
                state.withLock { state in
                    state.draining.removeAll { !$0.isActive }
                    if let stale = state.connections[index], stale.isActive { state.draining.append(stale) }
                    state.connections[index] = fresh
                }
                return fresh
            } catch {
                lastError = error
            }
        }
        throw GRPCStatus(.unavailable, "no endpoint reachable: \(lastError.map { "\($0)" } ?? "unknown error")")
    }

    public func unary<Request: Message, Response: Message>(
        _ path: String, _ request: Request, metadata: HPACKHeaders = [:], timeout: TimeAmount? = nil,
        responseType: Response.Type = Response.self
    ) async throws -> Response {
        try await connection().unary(path, request, metadata: metadata, timeout: timeout, responseType: responseType)
    }

    public func makeStreamingCall<Request: Message, Response: Message>(
        _ path: String, metadata: HPACKHeaders = [:], timeout: TimeAmount? = nil,
        requestType: Request.Type = Request.self, responseType: Response.Type = Response.self
    ) async throws -> ClientStreamingCall<Request, Response> {
        try await connection().makeStreamingCall(path, metadata: metadata, timeout: timeout)
    }

    public func close() async {
        let open = state.withLock { state in
            defer {
                state.connections = Array(repeating: nil, count: endpoints.count)
                state.draining = []
            }
            return state.connections.compactMap { $0 } + state.draining
        }
        for connection in open { await connection.close() }
    }
}
