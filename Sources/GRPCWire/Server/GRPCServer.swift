import BoundSockets
import Locking
import NIOCore
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// Secures each accepted connection before gRPC sees it: puts the TLS handler (and any checks
/// of its own) first in the connection's pipeline. Implement it to manage certificates
/// yourself (reloading, revocation); ``GRPCServer/Configuration/tls`` covers a fixed certificate.
public protocol ServerConnectionSecurity: Sendable {
    func secure(_ channel: any Channel) throws
}

/// A gRPC server listening on one address.
///
/// Start it with ``start(router:configuration:group:)``; stop it with ``shutdown(gracePeriod:)``,
/// which lets calls in flight finish.
public final class GRPCServer: Sendable {
    /// Limits on message sizes, checked before a message is buffered or sent.
    public struct MessageLimits: Sendable, Hashable {
        /// gRPC-Go's default is 4 MiB; etcd uses `--max-request-bytes` plus 512 KiB.
        public var maximumReceiveMessageSize = 4 * 1024 * 1024
        public var maximumSendMessageSize = Int(Int32.max)

        public init() {}
    }

    public struct Configuration: Sendable {
        public var host: String
        /// 0 picks a free port; read the chosen one from ``GRPCServer/localAddress``.
        public var port: Int
        /// When set, the server listens on this Unix domain socket instead of `host:port` (a
        /// stale socket file is replaced).
        public var unixSocketPath: String?
        /// When set, the server listens on this socket, bound earlier, instead of binding
        /// `host:port` or ``unixSocketPath``.
        public var boundSocket: BoundSocket?
        /// When set, connections use TLS with ALPN `h2`; set `certificateVerification` and
        /// `trustRoots` on it to require client certificates.
        public var tls: TLSConfiguration?
        /// When set, secures connections instead of ``tls``. It should offer ALPN `h2`.
        public var security: (any ServerConnectionSecurity)?
        public var limits = MessageLimits()
        public var keepalive = KeepalivePolicy()
        /// SETTINGS_MAX_CONCURRENT_STREAMS; etcd's `--max-concurrent-streams` default is 2^32-1.
        /// A client opening more has the extra streams refused (RST_STREAM `REFUSED_STREAM`).
        public var maximumConcurrentStreams = Int(UInt32.max)
        /// How long an accepted connection may take (TLS handshake included) to send the HTTP/2
        /// client preface or an HTTP/1.x method before it is closed. gRPC-Go allows 120 s.
        public var prefaceTimeout: TimeAmount = .seconds(10)
        /// Flow-control window per stream and per connection. Large windows let big messages
        /// (etcd allows 1.5 MiB requests) through in one round trip.
        public var streamWindowSize = 4 * 1024 * 1024
        public var connectionWindowSize = 16 * 1024 * 1024
        /// Told why a plaintext connection was closed before gRPC began (a TLS handshake on a
        /// plaintext port, HTTP/1.x, garbage), with the client's address, for logging.
        public var onRejectedConnection: (@Sendable (_ reason: String, _ remoteAddress: SocketAddress?) -> Void)?
        /// When set, a graceful shutdown ends every open streaming call at once with this
        /// status, while unary calls get the grace period: a watch never ends by itself, and
        /// its client should fail over now, not when the grace period runs out.
        public var streamsEndAtShutdown: GRPCStatus?
        /// Sees every routed call (auth, metrics, logging); nil costs nothing measurable.
        public var interceptor: (any ServerInterceptor)?
        /// Takes connections that speak HTTP/1.1 (a request line, or ALPN `http/1.1` under TLS;
        /// the TLS context must offer it); without one they are closed as not gRPC.
        public var http1: (any HTTP1ConnectionHandler)?
        /// False makes an HTTP/1.1-only listener (etcd's `--listen-metrics-urls`): HTTP/2 and
        /// gRPC are refused as anything else that is not HTTP/1.1 is.
        public var servesGRPC = true
        /// False binds the listener but leaves connections waiting in the kernel's backlog
        /// until ``GRPCServer/startAccepting()``: etcd opens its client ports at start and
        /// serves them once the member is ready, so early clients wait instead of failing.
        public var acceptsAtStart = true

        public init(host: String = "127.0.0.1", port: Int = 0, tls: TLSConfiguration? = nil) {
            self.host = host
            self.port = port
            self.tls = tls
        }
    }

    private let listener: any Channel
    private let connections: ConnectionRegistry

    /// The address the server listens on.
    public var localAddress: SocketAddress? { listener.localAddress }

    private init(listener: any Channel, connections: ConnectionRegistry) {
        self.listener = listener
        self.connections = connections
    }

    /// Binds and starts serving `router` with `configuration` on `group`.
    public static func start(
        router: ServerRouter,
        configuration: Configuration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> GRPCServer {
        let security = try configuration.security ?? configuration.tls.map { FixedTLS(context: try NIOSSLContext.grpc($0)) }
        let connections = ConnectionRegistry()
        let batches = EventLoopBatches()
        let isUnixSocket = configuration.boundSocket?.isUnixDomainSocket ?? (configuration.unixSocketPath != nil)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: isUnixSocket ? 0 : 1)
            .serverChannelOption(.autoRead, value: configuration.acceptsAtStart)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard connections.add(channel) else {
                        // Accepted while the server was shutting down.
                        return channel.close(promise: nil)
                    }
                    let batch = batches.batch(for: channel.eventLoop)
                    if !isUnixSocket {
                        try channel.syncOptions?.setOption(.socketOption(.tcp_nodelay), value: 1)
                    }
                    // The first bytes tell gRPC from HTTP/1.1 (and from garbage).
                    let sniff = {
                        ConnectionPrefaceCheck(
                            rejected: configuration.onRejectedConnection, http1: configuration.http1,
                            http2: !configuration.servesGRPC ? nil : { channel in
                                try configureGRPC(channel, router: router, configuration: configuration, batch: batch)
                            }, deadline: configuration.prefaceTimeout)
                    }
                    guard let security else {
                        return try channel.pipeline.syncOperations.addHandler(sniff())
                    }
                    try security.secure(channel)
                    // ALPN picks the protocol: gRPC on `h2`, HTTP/1.1 on `http/1.1`; a client
                    // that offered none is told apart by its first bytes.
                    try channel.pipeline.syncOperations.addHandler(
                        ApplicationProtocolNegotiationHandler { result, channel in
                            channel.eventLoop.makeCompletedFuture {
                                switch result {
                                case .negotiated("h2") where configuration.servesGRPC:
                                    try configureGRPC(channel, router: router, configuration: configuration, batch: batch)
                                case .negotiated("http/1.1") where configuration.http1 != nil:
                                    try configuration.http1!.configure(channel)
                                case .fallback:
                                    try channel.pipeline.syncOperations.addHandler(sniff())
                                case .negotiated:
                                    channel.close(promise: nil)
                                }
                            }
                        })
                }
            }
        let listener: any Channel
        if let bound = configuration.boundSocket {
            listener = try await bound.listen(with: bootstrap, backlog: 1024).get()
        } else if let path = configuration.unixSocketPath {
            listener = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        } else {
            listener = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        }
        return GRPCServer(listener: listener, connections: connections)
    }

    /// Starts taking the connections waiting in the backlog and those that follow, for a
    /// listener configured not to at start.
    public func startAccepting() async throws {
        try await listener.setOption(.autoRead, value: true).get()
    }

    /// The gRPC pipeline over a connection's (decrypted) bytes.
    private static func configureGRPC(
        _ channel: any Channel, router: ServerRouter, configuration: Configuration, batch: EventLoopBatch
    ) throws {
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(FlushCoalescer(batch: batch))
        let manager = ServerConnectionManager(
            eventLoop: channel.eventLoop, policy: configuration.keepalive, streamsEndAtShutdown: configuration.streamsEndAtShutdown)
        let http2 = GRPCHTTP2Configuration(
            streamWindowSize: configuration.streamWindowSize, connectionWindowSize: configuration.connectionWindowSize,
            extraSettings: [HTTP2Setting(parameter: .maxConcurrentStreams, value: configuration.maximumConcurrentStreams)])
        try pipeline.addHandler(
            NIOHTTP2Handler(
                mode: .server, frameDelegate: manager, connectionConfiguration: http2.connection,
                streamConfiguration: http2.stream))
        try pipeline.addHandler(manager)
        let makeCall = { (output: ServerStreamHandler.Output?) in
            ServerStreamHandler(
                router: router, limits: configuration.limits, connection: manager, batch: batch,
                interceptor: configuration.interceptor, output: output)
        }
        // A unary request must fit its stream's window: these streams never return window.
        if configuration.limits.maximumReceiveMessageSize + 5 <= configuration.streamWindowSize {
            try pipeline.addHandler(UnaryStreams(router: router, makeCall: makeCall))
        }
        let loopBoundMakeCall = NIOLoopBound(makeCall, eventLoop: channel.eventLoop)
        // The multiplexer tops up the connection's window for every stream, and each of its
        // streams' windows; it has one target for both.
        try pipeline.addHandler(
            HTTP2StreamMultiplexer(
                mode: .server, channel: channel, targetWindowSize: configuration.connectionWindowSize,
                outboundBufferSizeHighWatermark: http2.stream.outboundBufferSizeHighWatermark,
                outboundBufferSizeLowWatermark: http2.stream.outboundBufferSizeLowWatermark
            ) { stream in
                stream.eventLoop.makeCompletedFuture {
                    try stream.pipeline.syncOperations.addHandler(loopBoundMakeCall.value(nil))
                }
            })
    }

    /// Stops accepting connections, asks every client to open no new calls (two-phase GOAWAY),
    /// waits up to `gracePeriod` for the calls in flight, then closes what is left.
    ///
    /// Connections still open when the grace period ends are closed; with TLS their close may
    /// take up to NIOSSL's shutdown timeout longer.
    public func shutdown(gracePeriod: TimeAmount = .seconds(10)) async {
        let open = connections.closeForNewConnections()
        try? await listener.close()
        let deadline = NIODeadline.now() + gracePeriod
        let timers = open.map { channel in
            channel.pipeline.fireUserInboundEventTriggered(GracefulShutdownEvent())
            return channel.eventLoop.scheduleTask(deadline: deadline) { channel.close(promise: nil) }
        }
        for channel in open {
            try? await channel.closeFuture.get()
        }
        for timer in timers { timer.cancel() }
    }
}

/// TLS with one certificate for the server's lifetime: ``GRPCServer/Configuration/tls``.
private struct FixedTLS: ServerConnectionSecurity {
    let context: NIOSSLContext

    func secure(_ channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
    }
}

/// The server's open connections, so shutdown can reach each of them.
private final class ConnectionRegistry: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var shuttingDown = false
    }
    private let state = Locked(State())

    /// Registers a new connection; false once shutdown has begun (the caller closes it).
    func add(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let added = state.withLock { state in
            guard !state.shuttingDown else { return false }
            state.channels[id] = channel
            return true
        }
        if added {
            channel.closeFuture.whenComplete { [self] _ in
                _ = state.withLock { $0.channels.removeValue(forKey: id) }
            }
        }
        return added
    }

    /// Refuses further connections and returns those open now.
    func closeForNewConnections() -> [any Channel] {
        state.withLock { state in
            state.shuttingDown = true
            return Array(state.channels.values)
        }
    }
}
