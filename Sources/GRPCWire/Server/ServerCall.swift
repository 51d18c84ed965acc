import NIOCore
import NIOHPACK
import SwiftProtobuf

/// One streaming call as its handler sees it, confined to the stream's event loop.
///
/// Set the callbacks in the handler before returning; messages, the end of the request stream
/// and cancellation arrive on the event loop. To send from another thread use ``sender``.
public final class ServerCall<Request: Message, Response: Message> {
    public let context: ServerContext
    /// Called for each request message.
    public var onMessage: ((Request) -> Void)?
    /// Called when the client has sent its last message.
    public var onEnd: (() -> Void)?
    /// Called when the call ends before ``finish(_:trailers:)``: the client cancelled or reset the
    /// stream, the connection dropped, or the deadline passed.
    public var onCancel: ((GRPCStatus) -> Void)?
    /// Called when HTTP/2 flow control starts or stops accepting more outbound data.
    public var onWritabilityChanged: ((Bool) -> Void)?

    private let stream: ServerStreamHandler.Handle

    init(stream: ServerStreamHandler.Handle) {
        self.stream = stream
        self.context = stream.context
    }

    /// Whether the stream accepts more data now; when false, wait for ``onWritabilityChanged``.
    public var isWritable: Bool { stream.handler.isWritable }

    /// Sends one response message. The future completes when the message was handed to the
    /// connection (so awaiting it applies HTTP/2 back-pressure) and fails once the call is over.
    @discardableResult
    public func send(_ response: Response, flush: Bool = true) -> EventLoopFuture<Void> {
        do { return stream.handler.sendMessage(try response.grpcFrame(), flush: flush) } catch {
            return context.eventLoop.makeFailedFuture(error)
        }
    }

    /// Sends one response given as protobuf bytes in parts, which are concatenated (a message's
    /// fields may be encoded separately and joined). Lets a server encode what many calls
    /// share once, for example the same events fanned out to many watchers.
    @discardableResult
    public func send(serializedParts parts: [[UInt8]], flush: Bool = true) -> EventLoopFuture<Void> {
        stream.handler.sendMessage(parts: parts, flush: flush)
    }

    /// Flushes responses sent with `flush: false`.
    public func flush() {
        stream.handler.flush()
    }

    /// Ends the call with a status and optional trailing metadata. Later calls do nothing.
    public func finish(_ status: GRPCStatus = .ok, trailers: HPACKHeaders = [:]) {
        stream.handler.finish(status, trailers: trailers)
    }

    /// A handle that sends on this call from any thread.
    public var sender: ServerStreamSender<Response> {
        ServerStreamSender(stream: NIOLoopBound(stream.handler, eventLoop: context.eventLoop), eventLoop: context.eventLoop)
    }
}

extension ServerCall: StreamObserver {
    func receive(_ payload: ByteBuffer) {
        do {
            let request = try Request(grpcPayload: payload)
            onMessage?(request)
        } catch {
            // gRPC-Go's wording for a stream's message (a unary request's is in ServerRouter).
            stream.handler.abandon(GRPCStatus(.internal, "grpc: failed to unmarshal the received message \(error)"))
        }
    }

    func requestsEnded() { onEnd?() }

    func cancelled(_ reason: GRPCStatus) { onCancel?(reason) }

    func writabilityChanged(_ isWritable: Bool) { onWritabilityChanged?(isWritable) }

    func ended() {
        onMessage = nil
        onEnd = nil
        onCancel = nil
        onWritabilityChanged = nil
    }
}

/// Sends on a streaming call from any thread: messages are encoded on the calling thread and
/// written on the stream's event loop in the order of the calls.
public struct ServerStreamSender<Response: Message>: Sendable {
    let stream: NIOLoopBound<ServerStreamHandler>
    let eventLoop: any EventLoop

    public func send(_ response: Response) -> EventLoopFuture<Void> {
        let frame: ByteBuffer
        do { frame = try response.grpcFrame() } catch { return eventLoop.makeFailedFuture(error) }
        if eventLoop.inEventLoop { return stream.value.sendMessage(frame, flush: true) }
        return eventLoop.flatSubmit { stream.value.sendMessage(frame, flush: true) }
    }

    public func finish(_ status: GRPCStatus = .ok, trailers: HPACKHeaders = [:]) {
        if eventLoop.inEventLoop {
            stream.value.finish(status, trailers: trailers)
        } else {
            eventLoop.execute { stream.value.finish(status, trailers: trailers) }
        }
    }
}

/// Completes a unary call from any thread, exactly once (later completions are ignored).
///
/// Completions from other threads reach the event loop in bursts (see ``EventLoopBatch``).
public struct UnaryResponder<Response: Message>: Sendable {
    public let context: ServerContext
    /// The size of the request's protobuf payload as it arrived (without the 5-byte prefix):
    /// what a size limit checks, without encoding the request again.
    public let requestBytes: Int
    private let stream: NIOLoopBound<ServerStreamHandler>
    private let batch: EventLoopBatch

    init(stream: ServerStreamHandler.Handle, requestBytes: Int) {
        self.context = stream.context
        self.requestBytes = requestBytes
        self.stream = NIOLoopBound(stream.handler, eventLoop: stream.context.eventLoop)
        self.batch = stream.handler.batch
    }

    public func succeed(_ response: Response) {
        do {
            let frame = try response.grpcFrame()
            onLoop { $0.sendUnaryResponse(frame) }
        } catch {
            fail(error)
        }
    }

    public func fail(_ status: GRPCStatus) {
        onLoop { $0.finish(status) }
    }

    public func complete(_ result: Result<Response, GRPCStatus>) {
        switch result {
        case .success(let response): succeed(response)
        case .failure(let status): fail(status)
        }
    }

    private func onLoop(_ body: @escaping @Sendable (ServerStreamHandler) -> Void) {
        let stream = self.stream
        batch.submit { body(stream.value) }
    }
}
