import DequeModule
import Locking
import Synchronization

/// The responses a streaming call received that its consumer has not taken yet.
///
/// It holds a bounded number: past ``highWater`` responses or ``highWaterBytes`` bytes the call
/// stops reading its HTTP/2 stream, so the stream's flow-control window is no longer returned
/// and the server must hold (or, as a watch stream does, join) what it would send next. Reading
/// resumes once the consumer brings the buffer down to ``lowWater`` responses and
/// ``lowWaterBytes`` bytes. gRPC-Go returns window as the application reads, the same way; a
/// buffer without a bound let a slow consumer (a watcher busy elsewhere) grow the client's
/// memory without limit while the server saw a client keeping up.
final class ResponseBuffer<Response: Sendable>: Sendable {
    static var highWater: Int { 64 }
    static var highWaterBytes: Int { 4 << 20 }
    static var lowWater: Int { 16 }
    static var lowWaterBytes: Int { 1 << 20 }

    private struct State {
        var queued: Deque<(response: Response, bytes: Int)> = []
        var bytes = 0
        /// Whether the call stopped reading because of this buffer.
        var paused = false
        /// How the call ended (nil: it goes on); reported once the queue is empty.
        var end: Result<Void, any Error>?
        /// The consumer, waiting for a response. Resumed exactly once: whoever resumes it
        /// (a response, the end, the cancellation) takes it out under the lock first. (A checked
        /// continuation cost a watch client 15 % more CPU.)
        var waiter: UnsafeContinuation<Response?, any Error>?
        /// The consumer's task was cancelled: it gets nothing more.
        var cancelled = false
    }

    private let state = Locked(State())
    /// Lets the call read again (it runs on the call's event loop).
    private let resumeReading: @Sendable () -> Void

    init(resumeReading: @escaping @Sendable () -> Void) {
        self.resumeReading = resumeReading
    }

    /// Hands over one response of `bytes` bytes on the wire. Returns false when the call should
    /// stop reading until ``resumeReading`` is called.
    func push(_ response: Response, bytes: Int) -> Bool {
        let (waiter, keepReading) = state.withLock { state -> (UnsafeContinuation<Response?, any Error>?, Bool) in
            guard !state.cancelled, state.end == nil else { return (nil, true) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (waiter, true)
            }
            state.queued.append((response, bytes))
            state.bytes += bytes
            if state.queued.count >= Self.highWater || state.bytes >= Self.highWaterBytes { state.paused = true }
            return (nil, !state.paused)
        }
        waiter?.resume(returning: response)
        return keepReading
    }

    /// The call ended: with nil once it ended OK, else with the error the consumer gets after
    /// the queued responses.
    func finish(throwing error: (any Error)?) {
        let waiter = state.withLock { state -> UnsafeContinuation<Response?, any Error>? in
            guard state.end == nil else { return nil }
            state.end = error.map { .failure($0) } ?? .success(())
            defer { state.waiter = nil }
            return state.waiter
        }
        if let error { waiter?.resume(throwing: error) } else { waiter?.resume(returning: nil) }
    }

    /// The next response; nil once the call ended OK or the consumer's task was cancelled
    /// (`onCancel` then runs once, to cancel the call).
    func next(onCancel: @escaping @Sendable () -> Void) async throws -> Response? {
        switch state.withLock({ Self.take(&$0) }) {
        case .response(let response, let resume):
            if resume { resumeReading() }
            return response
        case .end(let end):
            return try end.get()
        case .wait:
            break
        }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                // The call may have delivered or ended, or the task been cancelled, since.
                switch state.withLock({ state -> Taken in
                    let taken = Self.take(&state)
                    if case .wait = taken { state.waiter = continuation }
                    return taken
                }) {
                case .response(let response, let resume):
                    if resume { resumeReading() }
                    continuation.resume(returning: response)
                case .end(let end):
                    continuation.resume(with: end)
                case .wait:
                    break
                }
            }
        } onCancel: {
            let (first, waiter) = state.withLock { state -> (Bool, UnsafeContinuation<Response?, any Error>?) in
                guard !state.cancelled else { return (false, nil) }
                state.cancelled = true
                defer { state.waiter = nil }
                return (true, state.waiter)
            }
            waiter?.resume(returning: nil)
            if first { onCancel() }
        }
    }

    private enum Taken {
        /// A queued response, and whether the call may read again now.
        case response(Response, resume: Bool)
        /// Nothing more: nil for a call that ended OK or a cancelled consumer, else the error.
        case end(Result<Response?, any Error>)
        case wait
    }

    private static func take(_ state: inout State) -> Taken {
        if let (response, bytes) = state.queued.popFirst() {
            state.bytes -= bytes
            let resume = state.paused && state.queued.count <= lowWater && state.bytes <= lowWaterBytes
            if resume { state.paused = false }
            return .response(response, resume: resume)
        }
        if state.cancelled { return .end(.success(nil)) }
        if let end = state.end { return .end(end.map { nil }) }
        return .wait
    }

    /// Responses received and not taken yet (for tests).
    var count: Int { state.withLock { $0.queued.count } }
}
