import Foundation
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The two-way form of a streaming path, as etcd's gateway offers it through grpc-websocket-proxy:
/// after a WebSocket upgrade each text (or binary) message the client sends is one request
/// object, and each line of the answer comes back as one text message. The exchange ends when
/// either side closes.
///
/// etcd's proxy turns `Sec-WebSocket-Protocol: Bearer, <token>` into an `Authorization: Bearer
/// <token>` header that etcd then refuses as an invalid token (etcd-io/etcd#19752), and drops
/// the upgrade request's own `Authorization` header. Here both carry the token.
enum WebSocketExchange {
    /// The upgrader for a listener answering with `endpoints`: it upgrades requests for paths
    /// the endpoints stream, and refuses the rest (they are answered as plain HTTP).
    static func upgrader(endpoints: any HTTPEndpoints, maximumMessageBytes: Int, maximumUnsentBytes: Int) -> NIOWebSocketServerUpgrader {
        NIOWebSocketServerUpgrader(
            maxFrameSize: maximumMessageBytes,
            shouldUpgrade: { channel, head in
                guard endpoints.streamsWebSocket(path: Self.path(of: head)) else { return channel.eventLoop.makeSucceededFuture(nil) }
                var headers = HTTPHeaders()
                if Self.bearerToken(head) != nil { headers.add(name: "Sec-WebSocket-Protocol", value: "Bearer") }
                return channel.eventLoop.makeSucceededFuture(headers)
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1024, maxAccumulatedFrameSize: maximumMessageBytes),
                        WebSocketExchangeHandler(
                            endpoints: endpoints, request: Self.request(head), maximumUnsentBytes: maximumUnsentBytes))
                }
            })
    }

    /// The request the exchange stands for: a POST with the token as `Authorization`.
    static func request(_ head: HTTPRequestHead) -> HTTPRequest {
        var head = head
        head.method = .POST
        if let token = bearerToken(head) { head.headers.replaceOrAdd(name: "Authorization", value: token) }
        return HTTPRequest(head: head, body: ByteBuffer())
    }

    private static func path(of head: HTTPRequestHead) -> String {
        String(head.uri.prefix { $0 != "?" })
    }

    /// The token in `Sec-WebSocket-Protocol: Bearer, <token>` (browsers cannot set headers).
    private static func bearerToken(_ head: HTTPRequestHead) -> String? {
        let offered = head.headers["Sec-WebSocket-Protocol"].flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard offered.first == "Bearer", offered.count > 1 else { return nil }
        return offered[1]
    }
}

extension HTTPEndpoints {
    /// Whether a WebSocket on `path` would be a streaming exchange.
    func streamsWebSocket(path: String) -> Bool {
        streamingPaths.contains(path)
    }
}

/// Relays one WebSocket connection to and from a streaming exchange.
final class WebSocketExchangeHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let endpoints: any HTTPEndpoints
    private let request: HTTPRequest
    private let maximumUnsentBytes: Int
    private var exchange: (any HTTPStreamingExchange)?

    init(endpoints: any HTTPEndpoints, request: HTTPRequest, maximumUnsentBytes: Int) {
        self.endpoints = endpoints
        self.request = request
        self.maximumUnsentBytes = maximumUnsentBytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let writer = WebSocketWriter(context: context, maximumUnsentBytes: maximumUnsentBytes)
        exchange = endpoints.streamingExchange(for: request, responses: writer)
        if exchange == nil { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        exchange?.closed()
        exchange = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            var message = frame.unmaskedData
            message.writeString("\n")
            exchange?.received(message)
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            // The client is done: the call's requests end, and the connection with them.
            exchange?.receivedEnd()
            var data = frame.unmaskedData
            let code = data.readWebSocketErrorCode() ?? .normalClosure
            var reply = context.channel.allocator.buffer(capacity: 2)
            reply.write(webSocketErrorCode: code)
            frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
        default:
            break
        }
    }
}

/// Sends each line of a streamed answer as a text message; the end is a normal close. A
/// reader too slow for its ``OutboundBacklog`` is disconnected.
final class WebSocketWriter: HTTPStreamWriter {
    private let context: NIOLoopBound<ChannelHandlerContext>
    private let backlog: NIOLoopBoundBox<OutboundBacklog>
    private let eventLoop: any EventLoop

    init(context: ChannelHandlerContext, maximumUnsentBytes: Int) {
        self.context = NIOLoopBound(context, eventLoop: context.eventLoop)
        self.backlog = NIOLoopBoundBox(OutboundBacklog(limit: maximumUnsentBytes), eventLoop: context.eventLoop)
        self.eventLoop = context.eventLoop
    }

    private func onLoop(_ body: @escaping @Sendable (ChannelHandlerContext) -> Void) {
        let context = self.context
        let run: @Sendable () -> Void = {
            guard context.value.channel.isActive else { return }
            body(context.value)
        }
        if eventLoop.inEventLoop { run() } else { eventLoop.execute(run) }
    }

    func head(_ status: HTTPResponseStatus, headers: HTTPHeaders) {}

    func send(_ piece: String) {
        let backlog = backlog
        onLoop { context in
            for line in piece.split(separator: "\n") {
                let data = context.channel.allocator.buffer(string: String(line))
                let size = data.readableBytes
                guard backlog.value.admit(size) else { return context.close(promise: nil) }
                context.write(NIOAny(WebSocketFrame(fin: true, opcode: .text, data: data)))
                    .assumeIsolated().whenComplete { _ in backlog.value.written(size) }
            }
            context.flush()
        }
    }

    func finish() {
        onLoop { context in
            var code = context.channel.allocator.buffer(capacity: 2)
            code.write(webSocketErrorCode: .normalClosure)
            let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: code)
            let channel = context.channel
            context.writeAndFlush(NIOAny(close)).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func close() {
        onLoop { context in context.close(promise: nil) }
    }
}
