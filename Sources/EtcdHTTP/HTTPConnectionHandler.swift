import GRPCWire
import NIOCore
import NIOHTTP1
import NIOSSL
import TransportSecurity

/// The HTTP/1.1 side of a client listener: NIO's HTTP/1.1 server pipeline, then each request
/// read whole (a body above `maximumBodyBytes` is refused with 413) and answered by `endpoints`.
/// A client that takes longer than `headerTimeout` to send a request's head is disconnected,
/// and so is one that lets more than `maximumUnsentBytes` of a streamed answer pile up.
package struct HTTPService: HTTP1ConnectionHandler {
    let endpoints: any HTTPEndpoints
    let maximumBodyBytes: Int
    let headerTimeout: TimeAmount
    let maximumUnsentBytes: Int

    package init(
        endpoints: any HTTPEndpoints, maximumBodyBytes: Int, headerTimeout: TimeAmount = .seconds(10),
        maximumUnsentBytes: Int = 16 << 20
    ) {
        self.endpoints = endpoints
        self.maximumBodyBytes = maximumBodyBytes
        self.headerTimeout = headerTimeout
        self.maximumUnsentBytes = maximumUnsentBytes
    }

    package func configure(_ channel: any Channel) throws {
        let pipeline = channel.pipeline.syncOperations
        let requests = HTTPRequestHandler(
            endpoints: endpoints, maximumBodyBytes: maximumBodyBytes, headerTimeout: headerTimeout, maximumUnsentBytes: maximumUnsentBytes)
        let upgrade: NIOHTTPServerUpgradeSendableConfiguration?
        if endpoints.streamingPaths.isEmpty {
            upgrade = nil
        } else {
            // After a WebSocket upgrade the request handler has nothing more to read.
            let loopBound = NIOLoopBound(requests, eventLoop: channel.eventLoop)
            upgrade = (
                upgraders: [
                    WebSocketExchange.upgrader(
                        endpoints: endpoints, maximumMessageBytes: maximumBodyBytes, maximumUnsentBytes: maximumUnsentBytes)
                ],
                completionHandler: { context in
                    context.pipeline.syncOperations.removeHandler(loopBound.value, promise: nil)
                })
        }
        try pipeline.configureHTTPServerPipeline(withServerUpgrade: upgrade, withErrorHandling: true)
        try pipeline.addHandler(requests)
    }
}

/// Reads requests one at a time (NIO's pipelining assistance holds the next until this one is
/// answered) and writes each answer on the connection's event loop. A request the endpoints
/// stream (``HTTPEndpoints/streamingExchange(for:responses:)``) takes the connection over: its
/// body goes to the exchange as it arrives, its answer goes out in chunks, and the connection
/// closes when it ends.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoints: any HTTPEndpoints
    private let maximumBodyBytes: Int
    private let headerTimeout: TimeAmount
    private let maximumUnsentBytes: Int
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var tooLarge = false
    private var headerDeadline: Scheduled<Void>?
    private var streaming: (any HTTPStreamingExchange)?
    /// The verified client certificate's common name, read at the first request.
    private var clientCommonName: String??
    private var overTLS = false

    /// The paths whose requests stream (``HTTPEndpoints/streamingPaths``).
    private let streamingPaths: Set<String>

    init(endpoints: any HTTPEndpoints, maximumBodyBytes: Int, headerTimeout: TimeAmount, maximumUnsentBytes: Int) {
        self.endpoints = endpoints
        self.maximumUnsentBytes = maximumUnsentBytes
        self.streamingPaths = endpoints.streamingPaths
        self.maximumBodyBytes = maximumBodyBytes
        self.headerTimeout = headerTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armHeaderDeadline(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        headerDeadline?.cancel()
    }

    /// The next request's head must arrive within `headerTimeout`, or the connection closes.
    private func armHeaderDeadline(_ context: ChannelHandlerContext) {
        headerDeadline?.cancel()
        headerDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: headerTimeout) { [context] in
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        streaming?.closed()
        streaming = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if let streaming {
            switch part {
            case .head: break  // pipelining assistance holds later requests back
            case .body(let chunk): streaming.received(chunk)
            case .end: streaming.receivedEnd()
            }
            return
        }
        switch part {
        case .head(let head):
            headerDeadline?.cancel()
            if streamingPaths.contains(String(head.uri.prefix { $0 != "?" })) {
                var request = HTTPRequest(head: head, body: context.channel.allocator.buffer(capacity: 0))
                describeConnection(of: &request, context)
                let writer = ChunkedStreamWriter(context: context, version: head.version, maximumUnsentBytes: maximumUnsentBytes)
                if let exchange = endpoints.streamingExchange(for: request, responses: writer) {
                    streaming = exchange
                    return
                }
            }
            self.head = head
            body = context.channel.allocator.buffer(capacity: 0)
            tooLarge = false
        case .body(var chunk):
            guard !tooLarge else { return }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > maximumBodyBytes {
                tooLarge = true
                body = nil
            } else {
                body?.writeBuffer(&chunk)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let keepAlive = head.isKeepAlive
            if tooLarge {
                return write(.error(.payloadTooLarge, "http: request body too large"), version: head.version, keepAlive: false, context)
            }
            var request = HTTPRequest(head: head, body: body ?? context.channel.allocator.buffer(capacity: 0))
            describeConnection(of: &request, context)
            body = nil
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            endpoints.respond(to: request) { response in
                eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.write(response, version: head.version, keepAlive: keepAlive, context)
                }
            }
        }
    }

    /// Sets what `request` says of its connection: whether it is TLS, and the common name of
    /// the client certificate TLS verified (found once per connection).
    private func describeConnection(of request: inout HTTPRequest, _ context: ChannelHandlerContext) {
        if clientCommonName == nil {
            let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
            overTLS = tls != nil
            clientCommonName = .some(tls?.peerCertificate.flatMap(ClientCertificateName.commonName(of:)))
        }
        request.overTLS = overTLS
        request.clientCommonName = clientCommonName ?? nil
    }

    private func write(_ response: HTTPResponse, version: HTTPVersion, keepAlive: Bool, _ context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        var headers = response.headers
        let body = context.channel.allocator.buffer(string: response.body)
        headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: response.status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if keepAlive {
            armHeaderDeadline(context)
        } else {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// A streamed answer over HTTP/1.1: chunked transfer encoding (NIO frames a body without a
/// length that way), each piece flushed as it comes; a reader too slow for its
/// ``OutboundBacklog`` is disconnected.
final class ChunkedStreamWriter: HTTPStreamWriter {
    private struct State {
        var headSent = false
        var finished = false
        var backlog: OutboundBacklog
    }

    private let context: NIOLoopBound<ChannelHandlerContext>
    private let state: NIOLoopBoundBox<State>
    private let version: HTTPVersion
    private let eventLoop: any EventLoop

    init(context: ChannelHandlerContext, version: HTTPVersion, maximumUnsentBytes: Int) {
        self.context = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.state = NIOLoopBoundBox(State(backlog: OutboundBacklog(limit: maximumUnsentBytes)), eventLoop: context.eventLoop)
        self.version = version
        self.eventLoop = context.eventLoop
    }

    /// Runs `body` on the loop unless the answer already ended.
    private func onLoop(_ body: @escaping @Sendable (ChannelHandlerContext, NIOLoopBoundBox<State>) -> Void) {
        let (context, state) = (self.context, self.state)
        let run: @Sendable () -> Void = {
            guard !state.value.finished, context.value.channel.isActive else { return }
            body(context.value, state)
        }
        if eventLoop.inEventLoop { run() } else { eventLoop.execute(run) }
    }

    func head(_ status: HTTPResponseStatus, headers: HTTPHeaders) {
        let version = version
        onLoop { context, state in
            guard !state.value.headSent else { return }
            state.value.headSent = true
            context.write(
                NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers))),
                promise: nil)
        }
    }

    func send(_ piece: String) {
        onLoop { context, state in
            let buffer = context.channel.allocator.buffer(string: piece)
            let size = buffer.readableBytes
            guard state.value.backlog.admit(size) else {
                state.value.finished = true
                return context.close(promise: nil)
            }
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))))
                .assumeIsolated().whenComplete { _ in state.value.backlog.written(size) }
        }
    }

    func finish() {
        onLoop { context, state in
            state.value.finished = true
            let channel = context.channel
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func close() {
        onLoop { context, state in
            state.value.finished = true
            context.close(promise: nil)
        }
    }
}
