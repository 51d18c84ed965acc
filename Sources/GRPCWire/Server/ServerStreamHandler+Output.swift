import NIOCore
import NIOHTTP2

extension ServerStreamHandler {
    /// Where the call's frames go.
    enum Output {
        /// The stream's own child channel.
        case child(ChannelHandlerContext)
        /// The connection channel, as frames of stream `HTTP2StreamID`.
        case connection(ChannelHandlerContext, HTTP2StreamID)

        var context: ChannelHandlerContext {
            switch self {
            case .child(let context), .connection(let context, _): context
            }
        }

        var remoteAddress: SocketAddress? {
            connectionChannel?.remoteAddress
        }

        var connectionChannel: (any Channel)? {
            switch self {
            case .child(let context): context.channel.parent
            case .connection(let context, _): context.channel
            }
        }

        func write(_ payload: HTTP2Frame.FramePayload, promise: EventLoopPromise<Void>?) {
            switch self {
            case .child(let context): context.write(NIOAny(payload), promise: promise)
            case .connection(let context, let id): context.write(NIOAny(HTTP2Frame(streamID: id, payload: payload)), promise: promise)
            }
        }

        func writeAndFlush(_ payload: HTTP2Frame.FramePayload, promise: EventLoopPromise<Void>?) {
            write(payload, promise: promise)
            context.flush()
        }
    }
}
