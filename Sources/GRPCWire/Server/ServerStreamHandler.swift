import NIOCore
import NIOHPACK
import NIOHTTP2

/// Serves one gRPC call on one HTTP/2 stream: validates the request headers, routes the path,
/// deframes request messages, enforces the deadline and writes responses, trailers and errors.
///
/// It runs as the handler of a stream's child channel (streaming calls), or without one, fed
/// by ``UnaryStreams`` on the connection channel (unary calls). The stream's life is
/// ``ServerStreamStateMachine``'s to decide; this class carries out what it says, and tells the
/// server's ``ServerInterceptor``, if any, what happens to the call.
final class ServerStreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// What a typed call wrapper holds: the stream and the call's context.
    struct Handle {
        let handler: ServerStreamHandler
        let context: ServerContext
    }

    private let router: ServerRouter
    private let limits: GRPCServer.MessageLimits
    private let connection: ServerConnectionManager
    /// Where other threads hand this stream's responses to its event loop.
    let batch: EventLoopBatch
    private let interceptor: (any ServerInterceptor)?
    private var machine = ServerStreamStateMachine()
    private var output: Output?
    private var deframer: MessageDeframer
    private var route: ServerRouter.Route?
    /// When the interceptor saw the call start; nil while it has not (or there is none).
    private var interceptedAt: NIODeadline?
    private var observer: (any StreamObserver)?
    /// Framed messages sent without a flush, and the promise of their write.
    private var unflushed: (data: ByteBuffer, written: EventLoopPromise<Void>)?
    private var callContext: ServerContext?
    private var deadlineTimer: Scheduled<Void>?
    /// False while the interceptor makes the call wait: messages stay in the deframer.
    private var admitted = true
    private var requestsEndedWhileWaiting = false

    private static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]

    /// `output` is nil for a child channel's handler, which learns its context when added.
    init(
        router: ServerRouter, limits: GRPCServer.MessageLimits, connection: ServerConnectionManager, batch: EventLoopBatch,
        interceptor: (any ServerInterceptor)? = nil, output: Output? = nil
    ) {
        self.router = router
        self.limits = limits
        self.interceptor = interceptor
        self.connection = connection
        self.batch = batch
        self.output = output
        self.deframer = MessageDeframer(maximumMessageSize: limits.maximumReceiveMessageSize)
    }

    var isWritable: Bool { output?.context.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        output = .child(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        streamClosed()
    }

    /// The stream is gone (its channel was removed, or the connection closed it): a call still
    /// open is cancelled, and nothing more is written.
    func streamClosed() {
        cancel(GRPCStatus(.cancelled, "the client closed the stream"))
        output = nil
        dropUnflushed()
        releaseObserver()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receive(unwrapInboundIn(data))
    }

    /// Handles one frame of the stream.
    func receive(_ payload: HTTP2Frame.FramePayload) {
        switch payload {
        case .headers(let headers):
            switch machine.receivedHeaders(endStream: headers.endStream) {
            case .openCall: openCall(headers.headers, endStream: headers.endStream)
            case .requestsEnded: endOfRequests()
            case .protocolViolation: abandon(GRPCStatus(.internal, "grpc: unexpected HEADERS frame in the middle of a request"))
            case .ignore: break
            }
        case .data(let frame):
            guard case .deliver(let endsRequests) = machine.receivedData(endStream: frame.endStream) else { return }
            // After the one message a unary call takes, gRPC-Go reads nothing more: the rest is dropped.
            if case .byteBuffer(let buffer) = frame.data, buffer.readableBytes > 0, !machine.unaryRequestDispatched {
                deframer.append(buffer)
                deliverMessages()
            }
            if endsRequests, machine.isOpen { endOfRequests() }
        case .rstStream(let code):
            cancel(GRPCStatus(.cancelled, "the client reset the stream (\(code))"))
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancel(GRPCStatus(.cancelled, "the client closed the stream"))
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        observer?.writabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    private func openCall(_ headers: HPACKHeaders, endStream: Bool) {
        guard let output else { return }
        let context = output.context
        guard headers.first(name: ":method") == "POST" else {
            return rejectHTTP(status: "405", GRPCStatus(.internal, "grpc: request method must be POST"))
        }
        guard let contentType = headers.first(name: "content-type"), contentType.hasPrefix("application/grpc") else {
            return rejectHTTP(
                status: "415",
                GRPCStatus(.internal, "grpc: invalid gRPC request content-type \"\(headers.first(name: "content-type") ?? "")\""))
        }
        let path = headers.first(name: ":path") ?? ""
        guard let route = router.methods[path] else {
            return finishEarly(router.unknownMethodStatus(path))
        }
        if let encoding = headers.first(name: "grpc-encoding"), encoding != "identity" {
            return finishEarly(GRPCStatus(.unimplemented, "grpc: Decompressor is not installed for grpc-encoding \"\(encoding)\""))
        }
        var deadline: NIODeadline?
        if let timeout = headers.first(name: "grpc-timeout") {
            guard let amount = GRPCTimeout.parse(timeout[...]) else {
                return finishEarly(GRPCStatus(.internal, "transport: malformed grpc-timeout: \(timeout)"))
            }
            // The loop's clock (an embedded loop's in tests).
            deadline = context.eventLoop.now + amount
        }
        var callContext = ServerContext(
            path: path, requestHeaders: headers, deadline: deadline,
            remoteAddress: output.remoteAddress, eventLoop: context.eventLoop,
            cancellation: CallCancellation(), connectionChannel: output.connectionChannel)
        self.route = route
        var admission = CallAdmission.proceed
        if let interceptor {
            interceptedAt = context.eventLoop.now
            admission = interceptor.callStarted(route.method, context: &callContext)
        }
        self.callContext = callContext
        if case .refuse(let status) = admission { return finishEarly(status) }
        if let deadline {
            deadlineTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
                deadlineExceeded()
            }
        }
        if case .wait(let decision) = admission {
            admitted = false
            decision.hop(to: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                admit(result)
            }
        } else {
            startCall()
        }
        if endStream, machine.isOpen { endOfRequests() }
    }

    /// The interceptor decided about a call it made wait.
    private func admit(_ result: Result<(any Sendable)?, any Error>) {
        guard machine.isOpen else { return }
        switch result {
        case .success(let attachment):
            callContext?.attachment = attachment
            admitted = true
            startCall()
            deliverMessages()
            if requestsEndedWhileWaiting, machine.isOpen { endOfRequests() }
        case .failure(let error):
            finishEarly(error as? GRPCStatus ?? GRPCStatus(.internal, "\(error)"))
        }
    }

    /// Starts a streaming call's handler (a unary one starts when its message arrives).
    private func startCall() {
        guard case .streaming(let start) = route?.implementation, let callContext else { return }
        connection.streamingCallStarted(self)
        observer = start(Handle(handler: self, context: callContext))
    }

    private func deliverMessages() {
        while admitted, machine.isOpen {
            let message: ByteBuffer?
            do throws(MessageDeframer.Failure) {
                message = try deframer.next()
            } catch {
                return abandon(error.status)
            }
            guard let message, let route else { return }
            interceptor?.receivedMessage(route.method, bytes: message.readableBytes)
            switch route.implementation {
            case .unary(let handle):
                guard machine.receivedUnaryRequest() else { return }
                // Whatever follows is never read (as in gRPC-Go): once the handler acts, the
                // call's answer is its own, never an error about the rest of the stream.
                deframer.discard()
                handle(message, Handle(handler: self, context: callContext!))
            case .streaming:
                observer?.receive(message)
            }
        }
    }

    private func endOfRequests() {
        guard admitted else {
            requestsEndedWhileWaiting = true
            return
        }
        if machine.unaryRequestDispatched { return }
        if deframer.hasPartialMessage {
            return abandon(GRPCStatus(.internal, "grpc: request stream ended in the middle of a message"))
        }
        if case .unary = route?.implementation, !machine.unaryRequestDispatched {
            return abandon(GRPCStatus(.internal, "grpc: no request message for a unary method"))
        }
        observer?.requestsEnded()
    }

    // MARK: Outbound

    /// Writes one framed response message; see ``ServerCall/send(_:flush:)``. Messages sent
    /// without a flush are gathered and go out together in one DATA frame at the next flush:
    /// HTTP/2 costs per frame, and a stream fanning out many small messages sends them in bursts.
    func sendMessage(_ frame: ByteBuffer, flush: Bool) -> EventLoopFuture<Void> {
        sendMessage(length: frame.readableBytes - 5, flush: flush) { $0.writeImmutableBuffer(frame) }
    }

    /// Sends one message given as protobuf bytes in parts, framed straight into the gathered
    /// messages (no buffer of its own).
    func sendMessage(parts: [[UInt8]], flush: Bool) -> EventLoopFuture<Void> {
        let length = parts.reduce(0) { $0 + $1.count }
        return sendMessage(length: length, flush: flush) { data in
            data.writeInteger(UInt8(0))
            data.writeInteger(UInt32(truncatingIfNeeded: length))
            for part in parts { data.writeBytes(part) }
        }
    }

    /// Checks a message of `length` bytes (without its prefix) and has `write` add it, framed,
    /// to the gathered messages.
    private func sendMessage(length: Int, flush: Bool, _ write: (inout ByteBuffer) -> Void) -> EventLoopFuture<Void> {
        guard machine.isOpen, let output else {
            return connection.eventLoop.makeFailedFuture(GRPCStatus(.failedPrecondition, "the call has already finished"))
        }
        let context = output.context
        guard checkSendSize(length) else {
            return context.eventLoop.makeFailedFuture(GRPCStatus(.resourceExhausted, "response too large"))
        }
        writeResponseHeadersIfNeeded(output)
        if let route { interceptor?.sentMessage(route.method, bytes: length) }
        if unflushed == nil {
            unflushed = (context.channel.allocator.buffer(capacity: 5 + length), context.eventLoop.makePromise(of: Void.self))
        }
        write(&unflushed!.data)
        let future = unflushed!.written.futureResult
        if flush { self.flush() }
        return future
    }

    /// Writes the gathered messages as one DATA frame and flushes.
    func flush() {
        guard let output else { return }
        writeUnflushed(output)
        output.context.flush()
    }

    /// Writes the gathered messages as one DATA frame; HTTP/2 splits it as flow control and
    /// the peer's frame size allow, and completes the messages' promise once all of it is out.
    private func writeUnflushed(_ output: Output) {
        guard let (data, written) = unflushed else { return }
        unflushed = nil
        output.write(.data(.init(data: .byteBuffer(data))), promise: written)
    }

    /// Messages that could not be written any more: the call is over.
    private func dropUnflushed() {
        unflushed?.written.fail(GRPCStatus(.failedPrecondition, "the call has already finished"))
        unflushed = nil
    }

    /// Writes headers, the one response message and OK trailers with a single flush.
    func sendUnaryResponse(_ frame: ByteBuffer) {
        guard machine.isOpen, let output, checkSendSize(frame.readableBytes - 5) else { return }
        writeResponseHeadersIfNeeded(output)
        if let route { interceptor?.sentMessage(route.method, bytes: frame.readableBytes - 5) }
        output.write(.data(.init(data: .byteBuffer(frame))), promise: nil)
        finish(.ok)
    }

    /// Ends the call with trailers (or a trailers-only response when nothing was sent yet), as
    /// its handler decided.
    func finish(_ status: GRPCStatus, trailers: HPACKHeaders = [:]) {
        guard machine.isOpen, let output else { return }
        writeTrailers(status, extra: trailers, output: output)
        releaseObserver()
    }

    /// Ends the call because the framework found a problem (bad input, size limits, deadline):
    /// the client gets `status`, and the handler hears it through `onCancel` and the context's
    /// cancellation, so nothing keeps waiting on a call that is over.
    func abandon(_ status: GRPCStatus) {
        guard machine.isOpen, let output else { return }
        writeTrailers(status, extra: [:], output: output)
        callContext?.cancellation.cancel(status)
        observer?.cancelled(status)
        releaseObserver()
    }

    private func releaseObserver() {
        let observer = self.observer
        self.observer = nil
        observer?.ended()
        if case .streaming = route?.implementation { connection.streamingCallEnded(self) }
    }

    private func checkSendSize(_ size: Int) -> Bool {
        guard size <= limits.maximumSendMessageSize else {
            abandon(GRPCStatus(.resourceExhausted, "grpc: trying to send message larger than max (\(size) vs. \(limits.maximumSendMessageSize))"))
            return false
        }
        return true
    }

    private func writeResponseHeadersIfNeeded(_ output: Output) {
        guard machine.sendingMessage() == .writeHeadersAndMessage else { return }
        output.write(.headers(.init(headers: Self.responseHeaders)), promise: nil)
    }

    private func writeTrailers(_ status: GRPCStatus, extra: HPACKHeaders, output: Output) {
        writeUnflushed(output)
        guard case .writeTrailers(let trailersOnly, let thenReset) = machine.finishing() else { return }
        var trailers = trailersOnly ? Self.responseHeaders : HPACKHeaders()
        trailers.add(name: "grpc-status", value: String(status.code.rawValue))
        if !status.message.isEmpty {
            trailers.add(name: "grpc-message", value: GRPCStatus.percentEncoded(status.message))
        }
        trailers.add(contentsOf: extra)
        deadlineTimer?.cancel()
        deadlineTimer = nil
        reportEnd(status)
        writeFinalHeaders(trailers, thenReset: thenReset, output: output)
    }

    /// Tells the interceptor, if it saw the call start, how the call ended.
    private func reportEnd(_ status: GRPCStatus) {
        guard let interceptedAt, let route else { return }
        self.interceptedAt = nil
        interceptor?.callEnded(route.method, status: status, startedAt: interceptedAt, remoteAddress: callContext?.remoteAddress)
    }

    /// Writes the closing HEADERS frame. A client that is still sending is then told to stop
    /// with RST_STREAM(NO_ERROR), as the gRPC spec allows, but only once the trailers are out:
    /// a reset would overtake them in the flow-control buffer.
    private func writeFinalHeaders(_ headers: HPACKHeaders, thenReset: Bool, output: Output) {
        let frame = HTTP2Frame.FramePayload.headers(.init(headers: headers, endStream: true))
        guard thenReset else {
            return output.writeAndFlush(frame, promise: nil)
        }
        let written = output.context.eventLoop.makePromise(of: Void.self)
        output.writeAndFlush(frame, promise: written)
        written.futureResult.assumeIsolated().whenSuccess { [self] in
            self.output?.writeAndFlush(.rstStream(.noError), promise: nil)
        }
    }

    /// Answers before any handler ran (routing, encoding, timeout or interceptor refusals).
    private func finishEarly(_ status: GRPCStatus) {
        guard let output else { return }
        writeTrailers(status, extra: [:], output: output)
    }

    /// Answers a request that is not gRPC at the HTTP level.
    private func rejectHTTP(status httpStatus: String, _ status: GRPCStatus) {
        guard let output, case .writeTrailers(_, let thenReset) = machine.finishing() else { return }
        let headers: HPACKHeaders = [
            ":status": httpStatus, "content-type": "application/grpc",
            "grpc-status": String(status.code.rawValue), "grpc-message": GRPCStatus.percentEncoded(status.message),
        ]
        writeFinalHeaders(headers, thenReset: thenReset, output: output)
    }

    private func deadlineExceeded() {
        abandon(GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
    }

    private func cancel(_ reason: GRPCStatus) {
        guard machine.cancelled() else { return }
        dropUnflushed()
        reportEnd(reason)
        deadlineTimer?.cancel()
        deadlineTimer = nil
        callContext?.cancellation.cancel(reason)
        observer?.cancelled(reason)
        releaseObserver()
    }
}
