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
    /// Responses in arrival order; throws the call's status unless it ended OK. The call
    /// holds a bounded number the consumer has not taken yet (``ResponseBuffer``): a consumer
    /// that falls behind makes the server wait, as with gRPC-Go.
    public let responses: AsyncThrowingStream<Response, any Error>
    /// The call's final status and trailing metadata.
    public let result: EventLoopFuture<(status: GRPCStatus, trailers: HPACKHeaders)>
    private let stream: NIOLoopBoundBox<ClientStreamHandler?>
    private let buffer: ResponseBuffer<Response>
    private let eventLoop: any EventLoop
    private let batch: EventLoopBatch

    init(connection: GRPCClientConnection, path: String, metadata: HPACKHeaders, timeout: TimeAmount?) {
        let eventLoop = connection.eventLoop
        let result = eventLoop.makePromise(of: (status: GRPCStatus, trailers: HPACKHeaders).self)
        self.result = result.futureResult
        self.eventLoop = eventLoop
        let batch = connection.batch
        self.batch = batch
        let stream = NIOLoopBoundBox.makeEmptyBox(valueType: ClientStreamHandler.self, eventLoop: eventLoop)
        self.stream = stream
        let buffer = ResponseBuffer<Response>(resumeReading: { batch.enqueue { stream.value?.resumeReading() } })
        self.buffer = buffer
        // A consumer that stops iterating (its task was cancelled, or it dropped the
        // responses) cancels the call.
        let canceller = Canceller { batch.enqueue { stream.value?.abort(GRPCStatus(.cancelled, "context canceled")) } }
        responses = AsyncThrowingStream(unfolding: { try await buffer.next(onCancel: canceller.cancel) })
        let sink = ClientStreamHandler.Sink(
            response: { payload in buffer.push(try Response(grpcPayload: payload), bytes: payload.readableBytes) },
            status: { status, trailers in
                buffer.finish(throwing: status.code == .ok ? nil : status)
                result.succeed((status, trailers))
            })
        batch.enqueue {
            stream.value = connection.openStream(path: path, metadata: metadata, timeout: timeout, sink: sink)
        }
    }

    /// Responses received that the consumer has not taken yet (for tests).
    var bufferedResponses: Int { buffer.count }

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

/// Cancels a call once the last holder of its responses lets go of them.
private final class Canceller: Sendable {
    let cancel: @Sendable () -> Void

    init(_ cancel: @escaping @Sendable () -> Void) {
        self.cancel = cancel
    }

    deinit {
        cancel()
    }
}
