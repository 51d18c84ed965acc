import NIOCore
import NIOHTTP2

/// How a server treats client pings and idle connections; the defaults are etcd's
/// (`--grpc-keepalive-min-time 5s`, `--grpc-keepalive-interval 2h`, `--grpc-keepalive-timeout 20s`).
public struct KeepalivePolicy: Sendable, Hashable {
    /// Pings closer together than this, with no response data sent in between, earn a strike.
    public var minimumPingInterval: TimeAmount = .seconds(5)
    /// Whether clients may ping while no call is open (if not, such pings within two hours strike).
    public var permitWithoutCalls = false
    /// Strikes tolerated before the connection is closed with GOAWAY `ENHANCE_YOUR_CALM`.
    public var maximumPingStrikes = 2
    /// How often the server pings an idle connection to check it is alive.
    public var pingInterval: TimeAmount = .hours(2)
    /// How long the server waits for a ping acknowledgement before closing the connection.
    public var pingTimeout: TimeAmount = .seconds(20)

    public init() {}
}

/// Sent down a connection's pipeline to start a graceful shutdown of that connection.
struct GracefulShutdownEvent: Sendable {}

/// Watches one server connection at the HTTP/2 level: counts open calls, polices client pings
/// the way gRPC-Go does (so its BDP-estimation pings are welcome but ping floods are not),
/// pings idle clients, and drains the connection on graceful shutdown with the two-phase GOAWAY.
final class ServerConnectionManager: ChannelDuplexHandler, NIOHTTP2FrameDelegate {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private enum Phase {
        case serving
        /// The first GOAWAY (last stream id = max) and a ping went out; waiting for the ack.
        case draining
        /// The final GOAWAY went out; closing when the last call ends.
        case closing
    }

    private static let shutdownPing = HTTP2PingData(withInteger: 0x5357_4554_4344_0001)
    private static let keepalivePing = HTTP2PingData(withInteger: 0x5357_4554_4344_0002)

    let eventLoop: any EventLoop
    private let policy: KeepalivePolicy
    private var context: ChannelHandlerContext?
    private var openStreams = 0
    private var lastStreamID = HTTP2StreamID.rootStream
    private var respondedSinceLastPing = false
    private var lastPingReceived: NIODeadline?
    private var pingStrikes = 0
    private var phase = Phase.serving
    /// Set once a GOAWAY with an error code was written: the connection has failed, and the
    /// next error closes it.
    private var connectionFailed = false
    private var keepaliveTask: Scheduled<Void>?
    private var keepaliveTimeout: Scheduled<Void>?
    private var drainTimeout: Scheduled<Void>?

    /// How open streaming calls end when a graceful shutdown begins (nil: they get the grace period).
    private let streamsEndAtShutdown: GRPCStatus?
    /// The streaming calls open on this connection, to end them at shutdown.
    private var streamingCalls: [ObjectIdentifier: ServerStreamHandler] = [:]

    init(eventLoop: any EventLoop, policy: KeepalivePolicy, streamsEndAtShutdown: GRPCStatus? = nil) {
        self.eventLoop = eventLoop
        self.policy = policy
        self.streamsEndAtShutdown = streamsEndAtShutdown
    }

    /// A streaming call began on this connection (called on its event loop).
    func streamingCallStarted(_ call: ServerStreamHandler) {
        streamingCalls[ObjectIdentifier(call)] = call
    }

    /// A streaming call ended, however it ended.
    func streamingCallEnded(_ call: ServerStreamHandler) {
        streamingCalls[ObjectIdentifier(call)] = nil
    }

    /// Called by the HTTP/2 handler for each frame it writes to the socket, after flow control
    /// (the manager is its frame delegate). Headers or data sent make the client's next ping a
    /// normal BDP probe, not abuse: gRPC-Go clears its strikes on each such frame it writes,
    /// and a client reading a large response pings once per round trip while it arrives.
    func wroteFrame(_ frame: HTTP2Frame) {
        switch frame.payload {
        case .headers, .data: respondedSinceLastPing = true
        case .goAway(_, let errorCode, _) where errorCode != .noError: connectionFailed = true
        default: break
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        scheduleKeepalivePing()
    }

    private func scheduleKeepalivePing() {
        keepaliveTask = context?.eventLoop.assumeIsolated().scheduleTask(in: policy.pingInterval) { [self] in
            sendKeepalivePing()
            scheduleKeepalivePing()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        keepaliveTask?.cancel()
        keepaliveTimeout?.cancel()
        drainTimeout?.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if case .ping(let payload, let ack) = frame.payload {
            if ack {
                pingAcknowledged(payload)
            } else {
                policeClientPing()
            }
        }
        context.fireChannelRead(data)
    }

    /// Connection-level errors (a bad preface, a protocol violation, a TLS failure, I/O) end
    /// the connection; nio-http2 has already sent its GOAWAY. An error of one stream only
    /// resets that stream, and every other call on the connection goes on. nio-http2 reports
    /// a stream's protocol error (a frame for a stream it has closed, which a client cancelling
    /// right after half-closing sends) unwrapped, after its RST_STREAM: it is told from a
    /// connection error by the GOAWAY a connection error writes first.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case is NIOHTTP2Errors.StreamError:
            // The multiplexer hands it to its stream.
            context.fireErrorCaught(error)
        case is NIOHTTP2Errors.UnableToSerializeFrame:
            context.close(promise: nil)
        case is any NIOHTTP2Error where !connectionFailed:
            break
        default:
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Told apart by type: a unary call brings five events (most of them window updates),
        // and a failed cast of each to every type asked for cost more than the call's own work.
        switch ObjectIdentifier(type(of: event)) {
        case ObjectIdentifier(StreamClosedEvent.self): streamClosed()
        case ObjectIdentifier(NIOHTTP2StreamCreatedEvent.self): streamOpened((event as! NIOHTTP2StreamCreatedEvent).streamID)
        case ObjectIdentifier(GracefulShutdownEvent.self): beginDraining()
        default: break
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func streamOpened(_ id: HTTP2StreamID) {
        openStreams += 1
        if id > lastStreamID { lastStreamID = id }
    }

    private func streamClosed() {
        openStreams -= 1
        if phase == .closing, openStreams == 0 { goAway(lastStreamID, .noError, debug: nil, thenClose: true) }
    }

    private func policeClientPing() {
        let now = NIODeadline.now()
        defer { lastPingReceived = now }
        if respondedSinceLastPing {
            respondedSinceLastPing = false
            pingStrikes = 0
            return
        }
        guard let last = lastPingReceived else { return }
        let minimum = openStreams == 0 && !policy.permitWithoutCalls ? TimeAmount.hours(2) : policy.minimumPingInterval
        guard now - last < minimum else { return }
        pingStrikes += 1
        if pingStrikes > policy.maximumPingStrikes {
            goAway(lastStreamID, .enhanceYourCalm, debug: "too_many_pings", thenClose: true)
        }
    }

    private func sendKeepalivePing() {
        guard let context, keepaliveTimeout == nil else { return }
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .ping(Self.keepalivePing, ack: false))), promise: nil)
        keepaliveTimeout = context.eventLoop.assumeIsolated().scheduleTask(in: policy.pingTimeout) { [self] in
            self.context?.close(promise: nil)
        }
    }

    private func pingAcknowledged(_ payload: HTTP2PingData) {
        if payload == Self.keepalivePing {
            keepaliveTimeout?.cancel()
            keepaliveTimeout = nil
        } else if payload == Self.shutdownPing {
            sendFinalGoAway()
        }
    }

    /// Phase one: tell the client to open no new calls while those in flight may still arrive.
    private func beginDraining() {
        guard phase == .serving, let context else { return }
        phase = .draining
        goAway(.maxID, .noError, debug: nil)
        if let status = streamsEndAtShutdown {
            for call in Array(streamingCalls.values) { call.abandon(status) }
        }
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .ping(Self.shutdownPing, ack: false))), promise: nil)
        drainTimeout = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [self] in sendFinalGoAway() }
    }

    /// Phase two, one round trip later: name the last call that will be served.
    private func sendFinalGoAway() {
        guard phase == .draining else { return }
        phase = .closing
        drainTimeout?.cancel()
        goAway(lastStreamID, .noError, debug: nil, thenClose: openStreams == 0)
    }

    /// Sends GOAWAY. With `thenClose`, closes the connection once the frame was written: the
    /// socket writes in order, so everything written before it (the last call's trailers)
    /// is out too. (Sending GOAWAY again with the same last stream id is allowed.)
    private func goAway(_ lastStreamID: HTTP2StreamID, _ code: HTTP2ErrorCode, debug: String?, thenClose: Bool = false) {
        guard let context else { return }
        let opaque = debug.map { context.channel.allocator.buffer(string: $0) }
        let frame = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStreamID, errorCode: code, opaqueData: opaque))
        guard thenClose else { return context.writeAndFlush(wrapOutboundOut(frame), promise: nil) }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(frame), promise: written)
        written.futureResult.assumeIsolated().whenComplete { [self] _ in
            self.context?.close(promise: nil)
        }
    }
}
