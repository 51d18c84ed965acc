import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL
import SwiftProtobuf
import Synchronization

/// One HTTP/2 connection to one gRPC server, carrying any number of concurrent calls.
public final class GRPCClientConnection: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// When set, connects to this Unix domain socket instead of `host:port`.
        public var unixSocketPath: String?
        /// When set, the connection uses TLS with ALPN `h2` (add a certificate chain and key to
        /// present a client certificate).
        public var tls: TLSConfiguration?
        /// The name checked against the server certificate; defaults to ``host``.
        public var serverHostname: String?
        /// Largest response message accepted; etcd's clients accept up to 2 GiB.
        public var maximumReceiveMessageSize = Int(Int32.max)
        public var streamWindowSize = 4 * 1024 * 1024
        public var connectionWindowSize = 16 * 1024 * 1024
        public var connectTimeout: TimeAmount = .seconds(5)

        public init(host: String, port: Int, tls: TLSConfiguration? = nil) {
            self.host = host
            self.port = port
            self.tls = tls
        }

        /// The TLS SNI name: ``serverHostname``, else ``host`` unless it is an IP address (SNI
        /// carries names only; certificate checks then use the address).
        var sniHostname: String? {
            if let serverHostname { return serverHostname }
            let isAddress = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
            return isAddress ? nil : host
        }
    }

    let eventLoop: any EventLoop
    let channel: any Channel
    /// Where calls started from other threads reach the loop: a burst of them (many tasks
    /// starting calls at once) costs one task, and ``NextTickFlush`` gives it one `writev`.
    let batch: EventLoopBatch
    private let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    private let scheme: String
    private let authority: String
    private let configuration: Configuration
    private let goAway: GoAwayState

    private init(
        channel: any Channel, batch: EventLoopBatch, multiplexer: NIOHTTP2Handler.StreamMultiplexer,
        configuration: Configuration, goAway: GoAwayState
    ) {
        self.channel = channel
        self.batch = batch
        self.eventLoop = channel.eventLoop
        self.multiplexer = multiplexer
        self.configuration = configuration
        self.goAway = goAway
        scheme = configuration.tls == nil ? "http" : "https"
        authority = configuration.port == 443 ? configuration.host : "\(configuration.host):\(configuration.port)"
    }

    /// Connects and completes the HTTP/2 handshake setup.
    public static func connect(
        _ configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> GRPCClientConnection {
        let sslContext = try configuration.tls.map(NIOSSLContext.grpc)
        let goAway = GoAwayState()
        let isUnixSocket = configuration.unixSocketPath != nil
        let initialize = { @Sendable (channel: any Channel) in
            channel.eventLoop.makeCompletedFuture {
                if !isUnixSocket { try channel.syncOptions?.setOption(.socketOption(.tcp_nodelay), value: 1) }
                let pipeline = channel.pipeline.syncOperations
                if let sslContext {
                    try pipeline.addHandler(
                        try NIOSSLClientHandler(context: sslContext, serverHostname: configuration.sniHostname))
                }
                try pipeline.addHandler(NextTickFlush())
                let http2 = GRPCHTTP2Configuration(
                    streamWindowSize: configuration.streamWindowSize,
                    connectionWindowSize: configuration.connectionWindowSize,
                    extraSettings: [HTTP2Setting(parameter: .enablePush, value: 0)])
                let multiplexer = try pipeline.configureHTTP2Pipeline(
                    mode: .client, connectionConfiguration: http2.connection, streamConfiguration: http2.stream
                ) { channel in channel.close() }
                try pipeline.addHandler(ClientConnectionHandler(goAway: goAway))
                return (channel, EventLoopBatch(eventLoop: channel.eventLoop), multiplexer)
            }
        }
        let bootstrap = ClientBootstrap(group: group).connectTimeout(configuration.connectTimeout)
        let (channel, batch, multiplexer) =
            if let path = configuration.unixSocketPath {
                try await bootstrap.connect(to: SocketAddress(unixDomainSocketPath: path), channelInitializer: initialize)
            } else {
                try await bootstrap.connect(host: configuration.host, port: configuration.port, channelInitializer: initialize)
            }
        return GRPCClientConnection(
            channel: channel, batch: batch, multiplexer: multiplexer, configuration: configuration, goAway: goAway)
    }

    /// Whether new calls can go on this connection (it is open and the server sent no GOAWAY).
    public var isUsable: Bool {
        channel.isActive && !goAway.received.load(ordering: .relaxed)
    }

    /// Whether the TCP connection is still open (calls may be running even after GOAWAY).
    var isActive: Bool { channel.isActive }

    public func close() async {
        try? await channel.close()
    }

    /// Starts a unary call; the future completes on the connection's loop.
    public func startUnary<Request: Message, Response: Message>(
        _ path: String, _ request: Request, metadata: HPACKHeaders = [:], timeout: TimeAmount? = nil,
        responseType: Response.Type = Response.self
    ) -> EventLoopFuture<Response> {
        let frame: ByteBuffer
        do { frame = try request.grpcFrame() } catch { return eventLoop.makeFailedFuture(error) }
        let promise = eventLoop.makePromise(of: Response.self)
        let start: @Sendable () -> Void = { [self] in
            let box = NIOLoopBoundBox<Response?>(nil, eventLoop: eventLoop)
            let sink = ClientStreamHandler.Sink(
                response: { payload in
                    guard box.value == nil else {
                        throw GRPCStatus(.internal, "grpc: more than one response message for a unary call")
                    }
                    box.value = try Response(grpcPayload: payload)
                    return true
                },
                status: { status, _ in
                    guard status.code == .ok else { return promise.fail(status) }
                    guard let response = box.value else {
                        return promise.fail(GRPCStatus(.internal, "grpc: the server sent no response message"))
                    }
                    promise.succeed(response)
                })
            openStream(path: path, metadata: metadata, timeout: timeout, sink: sink)?.sendOnly(frame)
        }
        batch.submit(start)
        return promise.futureResult
    }

    /// Makes a unary call.
    public func unary<Request: Message, Response: Message>(
        _ path: String, _ request: Request, metadata: HPACKHeaders = [:], timeout: TimeAmount? = nil,
        responseType: Response.Type = Response.self
    ) async throws -> Response {
        try await startUnary(path, request, metadata: metadata, timeout: timeout, responseType: responseType).get()
    }

    /// Opens a streaming call of any kind.
    public func makeStreamingCall<Request: Message, Response: Message>(
        _ path: String, metadata: HPACKHeaders = [:], timeout: TimeAmount? = nil,
        requestType: Request.Type = Request.self, responseType: Response.Type = Response.self
    ) -> ClientStreamingCall<Request, Response> {
        ClientStreamingCall(connection: self, path: path, metadata: metadata, timeout: timeout)
    }

    /// Creates the stream for one call; runs on the event loop. Returns nil (after reporting
    /// UNAVAILABLE to `sink`) when the connection cannot take new calls.
    func openStream(path: String, metadata: HPACKHeaders, timeout: TimeAmount?, sink: ClientStreamHandler.Sink)
        -> ClientStreamHandler?
    {
        guard isUsable else {
            sink.status(GRPCStatus(.unavailable, "the connection is closing"), [:])
            return nil
        }
        // Pseudo-headers must come first.
        var headers: HPACKHeaders = [
            ":method": "POST", ":scheme": scheme, ":path": path, ":authority": authority,
            "content-type": "application/grpc", "te": "trailers", "user-agent": "grpc-swift-etcd/0.1",
        ]
        if let timeout { headers.add(name: "grpc-timeout", value: GRPCTimeout.format(timeout)) }
        headers.add(contentsOf: metadata)
        let handler = ClientStreamHandler(
            requestHeaders: headers, deadline: timeout.map { .now() + $0 },
            maximumReceiveMessageSize: configuration.maximumReceiveMessageSize, sink: sink)
        let bound = NIOLoopBound(handler, eventLoop: eventLoop)
        let created = eventLoop.makePromise(of: (any Channel).self)
        multiplexer.createStreamChannel(promise: created) { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(bound.value) }
        }
        created.futureResult.whenFailure { error in
            bound.value.abort(GRPCStatus(.unavailable, "cannot open a stream: \(error)"))
        }
        return handler
    }
}

/// Sits below HTTP/2 and turns the flushes asked for by the tasks the loop is running into one,
/// issued after them. nio-http2 opens each stream in a task of its own, so a burst of calls
/// would otherwise cost a `writev` (and a TCP segment, and a read on the server) per call.
private final class NextTickFlush: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer

    private var flushPending = false

    func flush(context: ChannelHandlerContext) {
        guard !flushPending else { return }
        flushPending = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushPending = false
            context.flush()
        }
    }
}

/// Set by the connection's pipeline when the server sends GOAWAY; read by callers on any thread.
private final class GoAwayState: Sendable {
    let received = Atomic(false)
}

private final class ClientConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame

    private let goAway: GoAwayState

    init(goAway: GoAwayState) {
        self.goAway = goAway
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .goAway = unwrapInboundIn(data).payload {
            goAway.received.store(true, ordering: .relaxed)
        }
        context.fireChannelRead(data)
    }

    /// A connection-level error ends the connection, failing its calls instead of leaving them waiting.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOHTTP2Errors.StreamError { return }
        context.close(promise: nil)
    }
}
