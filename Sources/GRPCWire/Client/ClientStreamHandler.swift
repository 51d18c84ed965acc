import NIOCore
import NIOHPACK
import NIOHTTP2

/// Runs one client call on one HTTP/2 stream: sends the request headers and messages, deframes
/// responses, reads the status from trailers (or a trailers-only response), and enforces the
/// client-side deadline. It stops reading the stream while the sink has no room (see
/// ``ResponseBuffer``): the stream's window is then not returned, and the server waits.
final class ClientStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// Where the call's results go; both run on the stream's event loop.
    struct Sink: Sendable {
        /// Takes one response message; returns false to stop reading until ``resumeReading()``.
        var response: @Sendable (ByteBuffer) throws -> Bool
        var status: @Sendable (GRPCStatus, HPACKHeaders) -> Void
    }

    private enum Pending {
        case message(ByteBuffer, EventLoopPromise<Void>?)
        case end
        case only(ByteBuffer)
    }

    private let requestHeaders: HPACKHeaders
    private let deadline: NIODeadline?
    private var sink: Sink?
    private var deframer: MessageDeframer
    private var context: ChannelHandlerContext?
    private var pending: [Pending] = []
    private var sentEnd = false
    private var receivedHeaders = false
    private var deadlineTimer: Scheduled<Void>?
    /// The sink asked to stop reading.
    private var readingPaused = false
    /// A read the channel asked for while reading was paused.
    private var readHeld = false

    init(requestHeaders: HPACKHeaders, deadline: NIODeadline?, maximumReceiveMessageSize: Int, sink: Sink) {
        self.requestHeaders = requestHeaders
        self.deadline = deadline
        self.sink = sink
        self.deframer = MessageDeframer(maximumMessageSize: maximumReceiveMessageSize)
    }

    var isFinished: Bool { sink == nil }

    func handlerAdded(context: ChannelHandlerContext) {
        guard sink != nil else {
            // Cancelled (or timed out) before the stream existed: never start the call.
            return context.close(promise: nil)
        }
        self.context = context
        if let deadline {
            deadlineTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
                abort(GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
            }
        }
        // Opening a stream fails on the connection (not the stream) when, say, GOAWAY arrived
        // just before: learn it from the write.
        let headersWritten = context.eventLoop.makePromise(of: Void.self)
        headersWritten.futureResult.assumeIsolated().whenFailure { [self] error in
            abort(GRPCStatus(.unavailable, "cannot start the call: \(error)"))
        }
        context.write(wrapOutboundOut(.headers(.init(headers: requestHeaders))), promise: headersWritten)
        let queued = pending
        pending = []
        for item in queued {
            switch item {
            case .message(let frame, let promise): write(frame, promise: promise, context: context)
            case .end: writeEnd(context: context)
            case .only(let frame): writeOnly(frame, context: context)
            }
        }
        context.flush()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Outbound

    func send(_ frame: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard !sentEnd, sink != nil else {
            promise?.fail(GRPCStatus(.failedPrecondition, "the call has already finished sending"))
            return
        }
        guard let context else { return pending.append(.message(frame, promise)) }
        write(frame, promise: promise, context: context)
        context.flush()
    }

    /// Sends one message and ends the request stream in the same flush (a unary request).
    func sendOnly(_ frame: ByteBuffer) {
        guard !sentEnd, sink != nil else { return }
        guard let context else { return pending.append(.only(frame)) }
        writeOnly(frame, context: context)
        context.flush()
    }

    private func writeOnly(_ frame: ByteBuffer, context: ChannelHandlerContext) {
        sentEnd = true
        context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(frame), endStream: true))), promise: nil)
    }

    func finishSending() {
        guard !sentEnd else { return }
        guard let context else { return pending.append(.end) }
        writeEnd(context: context)
        context.flush()
    }

    /// Ends the call locally with `status` and resets the stream.
    func abort(_ status: GRPCStatus) {
        guard sink != nil else { return }
        complete(status, trailers: [:])
        context?.close(promise: nil)
    }

    private func write(_ frame: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(frame)))), promise: promise)
    }

    private func writeEnd(context: ChannelHandlerContext) {
        sentEnd = true
        context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))), promise: nil)
    }

    // MARK: Reading

    func read(context: ChannelHandlerContext) {
        if readingPaused { readHeld = true } else { context.read() }
    }

    /// The sink has room again: reads go on.
    func resumeReading() {
        readingPaused = false
        guard readHeld, let context else { return }
        readHeld = false
        context.read()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard sink != nil else { return }
        switch unwrapInboundIn(data) {
        case .headers(let frame):
            if !receivedHeaders {
                receivedHeaders = true
                if let status = Self.httpFailure(frame.headers) {
                    return complete(status, trailers: frame.headers)
                }
            }
            if frame.endStream {
                let status = GRPCStatus(
                    statusField: frame.headers.first(name: "grpc-status"),
                    messageField: frame.headers.first(name: "grpc-message"))
                if status.code == .ok, deframer.hasPartialMessage {
                    return complete(GRPCStatus(.internal, "grpc: response ended in the middle of a message"), trailers: frame.headers)
                }
                complete(status, trailers: frame.headers)
            }
        case .data(let frame):
            if case .byteBuffer(let buffer) = frame.data, buffer.readableBytes > 0 {
                deframer.append(buffer)
                deliverMessages()
            }
            if frame.endStream, sink != nil {
                complete(GRPCStatus(.internal, "grpc: server closed the stream without sending trailers"), trailers: [:])
            }
        case .rstStream(let code):
            let status: GRPCStatus =
                switch code {
                case .cancel: GRPCStatus(.cancelled, "stream terminated by RST_STREAM with error code: CANCEL")
                case .refusedStream: GRPCStatus(.unavailable, "stream terminated by RST_STREAM with error code: REFUSED_STREAM")
                default: GRPCStatus(.internal, "stream terminated by RST_STREAM with error code: \(code)")
                }
            complete(status, trailers: [:])
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(GRPCStatus(.unavailable, "the connection closed before the call finished"), trailers: [:])
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        complete(GRPCStatus(.unavailable, "stream error: \(error)"), trailers: [:])
        context.close(promise: nil)
    }

    private func deliverMessages() {
        while let sink {
            let message: ByteBuffer?
            do throws(MessageDeframer.Failure) {
                message = try deframer.next()
            } catch {
                return abort(error.status)
            }
            guard let message else { return }
            do {
                if try !sink.response(message) { readingPaused = true }
            } catch {
                return abort(GRPCStatus(.internal, "grpc: failed to unmarshal the received message: \(error)"))
            }
        }
    }

    private func complete(_ status: GRPCStatus, trailers: HPACKHeaders) {
        guard let sink else { return }
        self.sink = nil
        deadlineTimer?.cancel()
        deadlineTimer = nil
        for case .message(_, let promise) in pending {
            promise?.fail(status)
        }
        pending = []
        sink.status(status, trailers)
    }

    /// A status for a response that is not a gRPC response at the HTTP level, as gRPC maps them.
    private static func httpFailure(_ headers: HPACKHeaders) -> GRPCStatus? {
        let httpStatus = headers.first(name: ":status") ?? ""
        if httpStatus == "200" {
            if let type = headers.first(name: "content-type"), type.hasPrefix("application/grpc") { return nil }
            return GRPCStatus(.unknown, "unexpected content-type \"\(headers.first(name: "content-type") ?? "")\"")
        }
        if headers.first(name: "grpc-status") != nil {
            return GRPCStatus(statusField: headers.first(name: "grpc-status"), messageField: headers.first(name: "grpc-message"))
        }
        let code: GRPCStatus.Code =
            switch httpStatus {
            case "400": .internal
            case "401": .unauthenticated
            case "403": .permissionDenied
            case "404": .unimplemented
            case "429", "502", "503", "504": .unavailable
            default: .unknown
            }
        return GRPCStatus(code, "unexpected HTTP status code received from server: \(httpStatus)")
    }
}
