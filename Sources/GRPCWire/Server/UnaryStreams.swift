import NIOCore
import NIOHPACK
import NIOHTTP2

/// Serves the connection's unary calls on the connection channel itself, one
/// ``ServerStreamHandler`` per stream in a table, and passes every other stream on to the
/// stream multiplexer behind it.
///
/// A child channel per stream (its pipeline, activation, close and the hops between it and the
/// connection) cost more CPU than a unary etcd call's own work. A unary call needs none of what
/// a child channel offers: its request fits the stream's flow-control window, so it never has
/// to return window to the client, and it sends one response, so it needs no writability.
/// Streaming calls (Watch, LeaseKeepAlive) keep their child channels.
final class UnaryStreams: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame

    /// Makes the handler of a new unary stream.
    private let makeCall: (ServerStreamHandler.Output) -> ServerStreamHandler
    private let router: ServerRouter
    private var calls: [HTTP2StreamID: ServerStreamHandler] = [:]

    init(router: ServerRouter, makeCall: @escaping (ServerStreamHandler.Output) -> ServerStreamHandler) {
        self.router = router
        self.makeCall = makeCall
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if let call = calls[frame.streamID] {
            return call.receive(frame.payload)
        }
        guard frame.streamID != .rootStream, case .headers(let headers) = frame.payload,
            let path = headers.headers.first(name: ":path"), case .unary = router.methods[path]?.implementation
        else {
            return context.fireChannelRead(data)
        }
        let call = makeCall(.connection(context, frame.streamID))
        calls[frame.streamID] = call
        call.receive(frame.payload)
    }

    /// The events of a unary call's stream stop here: the stream multiplexer behind knows
    /// nothing of it, and its casts of each event cost more than the call's own work. (nio-http2
    /// sends a stream's created event after its first frame, so the call is known by then.)
    /// Events of the connection and of other streams go on.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch ObjectIdentifier(type(of: event)) {
        case ObjectIdentifier(StreamClosedEvent.self):
            if let call = calls.removeValue(forKey: (event as! StreamClosedEvent).streamID) { return call.streamClosed() }
        case ObjectIdentifier(NIOHTTP2WindowUpdatedEvent.self):
            if calls[(event as! NIOHTTP2WindowUpdatedEvent).streamID] != nil { return }
        case ObjectIdentifier(NIOHTTP2StreamCreatedEvent.self):
            if calls[(event as! NIOHTTP2StreamCreatedEvent).streamID] != nil { return }
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let open = calls.values
        calls = [:]
        for call in open { call.streamClosed() }
        context.fireChannelInactive()
    }
}
