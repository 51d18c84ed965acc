import NIOCore

/// Serves connections that speak HTTP/1.1 on a gRPC listener (etcd's health checks, metrics and
/// JSON gateway share the client port with gRPC): a plaintext connection that starts with an
/// HTTP/1.x request line, or a TLS one that negotiated ALPN `http/1.1`.
public protocol HTTP1ConnectionHandler: Sendable {
    /// Adds the HTTP/1.1 pipeline to `channel`, on its event loop; the bytes read so far follow.
    func configure(_ channel: any Channel) throws
}

/// The first bytes of a connection decide what it is: the HTTP/2 client preface goes on to
/// gRPC; an HTTP/1.x request line goes to the server's HTTP/1.1 handler, when it has one; a TLS
/// handshake on a plaintext listener (a client that meant `https://`) or anything else closes
/// the connection, and the reason goes to the server's ``GRPCServer/Configuration/onRejectedConnection``.
/// So does a connection that has not decided within `deadline` of being accepted (its TLS
/// handshake included): a client sending a byte now and then cannot hold a connection for ever.
final class ConnectionPrefaceCheck: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    /// The first four bytes of an HTTP/1.x request's method (and its space).
    private static let http1Starts = ["GET ", "POST", "PUT ", "HEAD", "DELE", "OPTI", "PATC", "CONN", "TRAC"].map { Array($0.utf8) }
    private let rejected: (@Sendable (String, SocketAddress?) -> Void)?
    private let http2: ((any Channel) throws -> Void)?
    private let http1: (any HTTP1ConnectionHandler)?
    private let deadline: TimeAmount
    private var received: ByteBuffer?
    private var deadlineTask: Scheduled<Void>?

    /// `http2` adds the gRPC pipeline (nil: HTTP/2 is refused); `http1`, when set, takes
    /// HTTP/1.x connections.
    init(
        rejected: (@Sendable (String, SocketAddress?) -> Void)?, http1: (any HTTP1ConnectionHandler)?,
        http2: ((any Channel) throws -> Void)?, deadline: TimeAmount
    ) {
        self.rejected = rejected
        self.http1 = http1
        self.http2 = http2
        self.deadline = deadline
    }

    func handlerAdded(context: ChannelHandlerContext) {
        deadlineTask = context.eventLoop.assumeIsolated().scheduleTask(in: deadline) { [self] in
            rejected?("no connection preface within \(deadline.nanoseconds / 1_000_000_000) s", context.channel.remoteAddress)
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadlineTask?.cancel()
        deadlineTask = nil
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
        if let http2, bytes.prefix(compared).elementsEqual(Self.preface.prefix(compared)) {
            guard bytes.count >= Self.preface.count else { return }
            return handOver(context, to: http2)
        }
        if let http1, bytes.count < 4, Self.http1Starts.contains(where: { $0.starts(with: bytes) }) { return }
        if let http1, Self.http1Starts.contains(where: { bytes.starts(with: $0) }) {
            return handOver(context, to: http1.configure)
        }
        rejected?(Self.reason(bytes.prefix(8)), context.channel.remoteAddress)
        received = nil
        context.close(promise: nil)
    }

    /// Adds the chosen pipeline after this handler, passes on what was read, and leaves.
    private func handOver(_ context: ChannelHandlerContext, to configure: (any Channel) throws -> Void) {
        let everything = received!
        received = nil
        do {
            try configure(context.channel)
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(wrapInboundOut(everything))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private static func reason(_ start: ByteBufferView.SubSequence) -> String {
        if start.first == 0x16 {
            return "tls: client sent a TLS handshake to a plaintext listener (its URL should be http://)"
        }
        if http1Starts.contains(where: { start.starts(with: $0) }) {
            return "HTTP/1.x request on a gRPC listener"
        }
        if preface.starts(with: start) {
            return "HTTP/2 on an HTTP/1.1-only listener"
        }
        return "not an HTTP/2 connection preface"
    }
}
