/// The life of one server call on its HTTP/2 stream: events in, actions out.
///
/// The two directions close on their own, as HTTP/2 half-close does: the client ends its
/// requests with END_STREAM, the server ends the call with trailers. A call the server ends
/// while the client is still sending resets the stream (RST_STREAM NO_ERROR), but only once
/// the trailers are out. Transitions that nio-http2's own stream state machine rules out (data
/// before headers, frames after the client's END_STREAM) stop the process with a message:
/// reaching one means a bug here or there, not bad input.
struct ServerStreamStateMachine {
    enum State: Equatable {
        /// No headers yet.
        case idle
        /// Headers accepted: the call runs.
        case open(clientSending: Bool, responseHeadersSent: Bool)
        /// Trailers written, the call cancelled or the stream gone: nothing more is written.
        case closed
    }

    private(set) var state = State.idle
    /// A unary call's single request message was handed to its handler.
    private var unaryDispatched = false

    /// What to do with a HEADERS frame from the client.
    enum HeadersAction: Equatable {
        /// The request's headers: validate, route and start the call.
        case openCall
        /// Trailing headers with END_STREAM: the client finished sending.
        case requestsEnded
        /// Headers in the middle of the request without END_STREAM: a gRPC protocol error.
        case protocolViolation
        /// The call is over; the client has not heard yet.
        case ignore
    }

    mutating func receivedHeaders(endStream: Bool) -> HeadersAction {
        switch state {
        case .idle:
            state = .open(clientSending: !endStream, responseHeadersSent: false)
            return .openCall
        case .open(clientSending: true, let headersSent):
            guard endStream else { return .protocolViolation }
            state = .open(clientSending: false, responseHeadersSent: headersSent)
            return .requestsEnded
        case .open(clientSending: false, _):
            preconditionFailure("HEADERS after the client's END_STREAM: nio-http2 lets no frame through on a half-closed stream")
        case .closed:
            return .ignore
        }
    }

    /// What to do with a DATA frame from the client.
    enum DataAction: Equatable {
        /// Deframe and deliver its messages; then, if `endsRequests`, the client is done.
        case deliver(endsRequests: Bool)
        case ignore
    }

    mutating func receivedData(endStream: Bool) -> DataAction {
        switch state {
        case .idle:
            preconditionFailure("DATA before HEADERS: nio-http2 refuses it on an idle stream")
        case .open(clientSending: true, let headersSent):
            if endStream { state = .open(clientSending: false, responseHeadersSent: headersSent) }
            return .deliver(endsRequests: endStream)
        case .open(clientSending: false, _):
            preconditionFailure("DATA after the client's END_STREAM: nio-http2 lets no frame through on a half-closed stream")
        case .closed:
            return .ignore
        }
    }

    /// Whether a unary request message may go to the handler: only the first one may.
    mutating func receivedUnaryRequest() -> Bool {
        guard case .open = state, !unaryDispatched else { return false }
        unaryDispatched = true
        return true
    }

    var unaryRequestDispatched: Bool { unaryDispatched }

    /// What to write for a response message.
    enum SendAction: Equatable {
        case writeHeadersAndMessage
        case writeMessage
        /// The call is over: refuse the message.
        case refuse
    }

    mutating func sendingMessage() -> SendAction {
        switch state {
        case .idle:
            preconditionFailure("a response before the call opened: handlers start only once the headers are accepted")
        case .open(let clientSending, responseHeadersSent: false):
            state = .open(clientSending: clientSending, responseHeadersSent: true)
            return .writeHeadersAndMessage
        case .open(_, responseHeadersSent: true):
            return .writeMessage
        case .closed:
            return .refuse
        }
    }

    /// How to end the call with a status.
    enum FinishAction: Equatable {
        /// Write the trailers, with the response headers in the same frame when none went out
        /// yet (a trailers-only response), then reset the stream if the client is still sending.
        case writeTrailers(trailersOnly: Bool, thenReset: Bool)
        /// Already over.
        case ignore
    }

    mutating func finishing() -> FinishAction {
        switch state {
        case .idle:
            preconditionFailure("finishing a call that never opened")
        case .open(let clientSending, let headersSent):
            state = .closed
            return .writeTrailers(trailersOnly: !headersSent, thenReset: clientSending)
        case .closed:
            return .ignore
        }
    }

    /// The client reset the stream, the stream or connection closed, or the deadline passed:
    /// whether the call was still running (its handler must hear of it).
    mutating func cancelled() -> Bool {
        switch state {
        case .open:
            state = .closed
            return true
        case .idle:
            state = .closed
            return false
        case .closed:
            return false
        }
    }

    var isOpen: Bool {
        if case .open = state { true } else { false }
    }
}
