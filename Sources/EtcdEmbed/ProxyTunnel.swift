import NIOCore

/// An HTTP proxy's `CONNECT` tunnel (RFC 9110 §9.3.6): what Go's HTTP client opens through
/// `--discovery-proxy` to an `https` discovery service, so TLS runs end to end and the proxy
/// sees only the target's host and port.
final class ProxyTunnel: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Refusal: Error, CustomStringConvertible, Equatable {
        var description: String
    }

    /// The proxy's answer is a status line and headers: far less than this.
    private static let maximumAnswer = 16 * 1024
    /// How long the proxy may take to answer (a proxy that accepts and says nothing must not
    /// hold the start for ever; the request's own deadline starts once the tunnel is open).
    private static let answerTimeout: TimeAmount = .seconds(5)

    private let target: String
    private let opened: EventLoopPromise<Void>
    private var answer: ByteBuffer?
    private var finished = false
    private var expiry: Scheduled<Void>?

    private init(target: String, opened: EventLoopPromise<Void>) {
        self.target = target
        self.opened = opened
    }

    /// Asks the proxy `channel` is connected to for a tunnel to `target` (`host:port`), and
    /// returns once the proxy answered 200; the channel then carries the tunnel.
    static func open(on channel: any Channel, to target: String) async throws {
        let opened = channel.eventLoop.makePromise(of: Void.self)
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(ProxyTunnel(target: target, opened: opened))
        }.get()
        try await opened.futureResult.get()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let request = "CONNECT \(target) HTTP/1.1\r\nHost: \(target)\r\n\r\n"
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: request)), promise: nil)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        expiry = context.eventLoop.scheduleTask(in: Self.answerTimeout) {
            let (tunnel, context) = loopBound.value
            tunnel.fail(context, "the proxy did not answer CONNECT \(tunnel.target) within \(Self.answerTimeout.nanoseconds / 1_000_000_000)s")
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if answer == nil { answer = bytes } else { answer!.writeBuffer(&bytes) }
        guard let answer else { return }
        let view = answer.readableBytesView
        guard let end = view.firstRange(of: Array("\r\n\r\n".utf8)) else {
            if view.count > Self.maximumAnswer { fail(context, "the proxy's answer to CONNECT has no end") }
            return
        }
        let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
        let status = head.split(separator: "\r\n").first.map(String.init) ?? ""
        let code = status.split(separator: " ").dropFirst().first
        guard code == "200" else { return fail(context, "proxy refused CONNECT \(target): \(status)") }
        // Nothing follows the answer until this side starts TLS; anything that did would be the proxy's error.
        guard end.upperBound == view.endIndex else { return fail(context, "the proxy sent data after its answer to CONNECT") }
        self.answer = nil
        finished = true
        expiry?.cancel()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        opened.succeed()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context, "\(error)")
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(context, "the proxy closed the connection before opening the tunnel")
        context.fireChannelInactive()
    }

    private func fail(_ context: ChannelHandlerContext, _ reason: String) {
        guard !finished else { return }
        finished = true
        expiry?.cancel()
        opened.fail(Refusal(description: reason))
        context.close(promise: nil)
    }
}
