import NIOCore
import NIOHPACK
import SwiftProtobuf

/// A streaming call from the client side (client-, server- or bidirectional streaming).
///
/// Send with ``send(_:)``, end the request stream with ``finishSending()``, and read responses
/// from ``responses``: the sequence ends when the server finishes with OK and throws the
/// ``GRPCStatus`` otherwise. Usable from any thread; operations run in call order on the
/// connection's event loop.
public final class ClientStreamingCall<Request: Message, Response: Message>: Sendable {
    /// Responses in arrival order; throws the call's status unless it ended OK.
    public let responses: AsyncThrowingStream<Response, any Error>
    /// The call's final status and trailing metadata.
    public let result: EventLoopFuture<(status: GRPCStatus, trailers: HPACKHeaders)>
    private let stream: NIOLoopBoundBox<ClientStreamHandler?>
    private let eventLoop: any EventLoop
    private let batch: EventLoopBatch

    init(connection: GRPCClientConnection, path: String, metadata: HPACKHeaders, timeout: TimeAmount?) {
        let eventLoop = connection.eventLoop
        let (responses, continuation) = AsyncThrowingStream<Response, any Error>.makeStream()
        let result = eventLoop.makePromise(of: (status: GRPCStatus, trailers: HPACKHeaders).self)
        self.responses = responses
        self.result = result.futureResult
        self.eventLoop = eventLoop
        let batch = connection.batch
        self.batch = batch
        self.stream = NIOLoopBoundBox.makeEmptyBox(valueType: ClientStreamHandler.self, eventLoop: eventLoop)
        let sink = ClientStreamHandler.Sink(
            response: { payload in continuation.yield(try Response(grpcPayload: payload)) },
            status: { status, trailers in
                if status.code == .ok { continuation.finish() } else { continuation.finish(throwing: status) }
                result.succeed((status, trailers))
            })
        let stream = self.stream
        batch.enqueue {
            stream.value = connection.openStream(path: path, metadata: metadata, timeout: timeout, sink: sink)
        }
        // A consumer that stops iterating (its task was cancelled) cancels the call.
        continuation.onTermination = { reason in
            guard case .cancelled = reason else { return }
            batch.enqueue { stream.value?.abort(GRPCStatus(.cancelled, "context canceled")) }
        }
    }

    /// Sends one request message; completes when it was handed to the connection.
    @discardableResult
    public func send(_ request: Request) -> EventLoopFuture<Void> {
        let frame: ByteBuffer
        do { frame = try request.grpcFrame() } catch { return eventLoop.makeFailedFuture(error) }
        let promise = eventLoop.makePromise(of: Void.self)
        let stream = self.stream
        batch.enqueue {
            guard let handler = stream.value else {
                return promise.fail(GRPCStatus(.unavailable, "the call could not be started"))
            }
            handler.send(frame, promise: promise)
        }
        return promise.futureResult
    }

    /// Ends the request stream (the server sees end-of-stream after the messages sent so far).
    public func finishSending() {
        let stream = self.stream
        batch.enqueue { stream.value?.finishSending() }
    }

    /// Cancels the call: the server sees RST_STREAM(CANCEL) and the call ends with CANCELLED.
    public func cancel() {
        let stream = self.stream
        batch.enqueue { stream.value?.abort(GRPCStatus(.cancelled, "context canceled")) }
    }
}
