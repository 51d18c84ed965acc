import GRPCWire
import NIOCore
import NIOHTTP1

/// The HTTP/1.1 side of a client listener: NIO's HTTP/1.1 server pipeline, then each request
/// read whole (a body above `maximumBodyBytes` is refused with 413) and answered by `endpoints`.
/// A client that takes longer than `headerTimeout` to send a request's head is disconnected.
package struct HTTPService: HTTP1ConnectionHandler {
    let endpoints: any HTTPEndpoints
    let maximumBodyBytes: Int
    let headerTimeout: TimeAmount

    package init(endpoints: any HTTPEndpoints, maximumBodyBytes: Int, headerTimeout: TimeAmount = .seconds(10)) {
        self.endpoints = endpoints
        self.maximumBodyBytes = maximumBodyBytes
        self.headerTimeout = headerTimeout
    }

    package func configure(_ channel: any Channel) throws {
        let pipeline = channel.pipeline.syncOperations
        try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
        try pipeline.addHandler(
            HTTPRequestHandler(endpoints: endpoints, maximumBodyBytes: maximumBodyBytes, headerTimeout: headerTimeout))
    }
}

/// Reads requests one at a time (NIO's pipelining assistance holds the next until this one is
/// answered) and writes each answer on the connection's event loop.
final class HTTPRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoints: any HTTPEndpoints
    private let maximumBodyBytes: Int
    private let headerTimeout: TimeAmount
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var tooLarge = false
    private var headerDeadline: Scheduled<Void>?

    init(endpoints: any HTTPEndpoints, maximumBodyBytes: Int, headerTimeout: TimeAmount) {
        self.endpoints = endpoints
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

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            headerDeadline?.cancel()
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
            let request = HTTPRequest(head: head, body: body ?? context.channel.allocator.buffer(capacity: 0))
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
