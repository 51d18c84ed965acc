import NIOCore

/// The first bytes of a plaintext connection decide what it is: the HTTP/2 client preface goes
/// on to gRPC; a TLS handshake (a client that meant `https://`) or anything else closes the
/// connection, and the reason goes to the server's ``GRPCServer/Configuration/onRejectedConnection``.
/// HTTP/1.1 on the same port branches here once the server speaks it.
final class ConnectionPrefaceCheck: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    private let rejected: (@Sendable (String, SocketAddress?) -> Void)?
    private var received: ByteBuffer?

    init(rejected: (@Sendable (String, SocketAddress?) -> Void)?) {
        self.rejected = rejected
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if received == nil {
            received = buffer
        } else {
            received!.writeBuffer(&buffer)
        }
        let bytes = received!.readableBytesView
        let compared = min(bytes.count, Self.preface.count)
        guard bytes.prefix(compared).elementsEqual(Self.preface.prefix(compared)) else {
            rejected?(Self.reason(bytes.prefix(8)), context.channel.remoteAddress)
            received = nil
            context.close(promise: nil)
            return
        }
        guard bytes.count >= Self.preface.count else { return }
        let everything = received!
        received = nil
        context.fireChannelRead(wrapInboundOut(everything))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private static func reason(_ start: ByteBufferView.SubSequence) -> String {
        if start.first == 0x16 {
            return "tls: client sent a TLS handshake to a plaintext listener (its URL should be http://)"
        }
        let text = String(decoding: start, as: UTF8.self)
        if ["GET ", "POST", "PUT ", "HEAD", "DELE", "OPTI", "PATC"].contains(where: text.hasPrefix) {
            return "HTTP/1.x request on a gRPC listener"
        }
        return "not an HTTP/2 connection preface"
    }
}
