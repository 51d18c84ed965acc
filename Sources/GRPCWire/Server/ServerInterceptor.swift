import NIOCore

/// A method a server serves, as interceptors see it: precomputed once when it is registered.
public struct ServerMethod: Sendable, Hashable {
    /// How the call's messages flow, with the names gRPC's Prometheus metrics give them.
    public enum Kind: String, Sendable, Hashable {
        case unary = "unary"
        case clientStreaming = "client_stream"
        case serverStreaming = "server_stream"
        case bidirectionalStreaming = "bidi_stream"
    }

    /// `/package.Service/Method`.
    public let path: String
    /// `package.Service`.
    public let service: String
    /// `Method`.
    public let name: String
    public let kind: Kind
}

/// Sees every routed call of a server: where auth checks a call's token, metrics count calls
/// and bytes, and request logs are written, without each handler knowing.
///
/// Install one with ``GRPCServer/Configuration/interceptor``. Every method is called on the
/// call's event loop and must be cheap (hand slow work elsewhere). Calls to unknown methods and
/// requests that are not gRPC never reach it. A server without an interceptor pays one nil
/// check per call and per message.
public protocol ServerInterceptor: Sendable {
    /// The call's headers were accepted and routed; what this answers decides whether its
    /// handler runs. It may set the context's ``ServerContext/attachment`` for the handler.
    func callStarted(_ method: ServerMethod, context: inout ServerContext) -> CallAdmission
    /// A request message arrived: `bytes` of protobuf payload, without the 5-byte prefix.
    func receivedMessage(_ method: ServerMethod, bytes: Int)
    /// A response message was handed to HTTP/2: `bytes` of protobuf payload.
    func sentMessage(_ method: ServerMethod, bytes: Int)
    /// The call ended, once: with the status of its trailers (refusals included), or with the
    /// reason it was cancelled (the client reset it, the connection closed). `startedAt` is when
    /// ``callStarted(_:context:)`` ran; `remoteAddress` is the caller's (etcd's request logs
    /// name it).
    func callEnded(_ method: ServerMethod, status: GRPCStatus, startedAt: NIODeadline, remoteAddress: SocketAddress?)
}

/// What an interceptor decides about a call that started.
public enum CallAdmission: Sendable {
    /// The handler runs.
    case proceed
    /// The call ends with this status; the handler never runs.
    case refuse(GRPCStatus)
    /// The interceptor needs time (its state must catch up): the call waits, its messages held
    /// back, until the future succeeds with the attachment for the handler, or fails with the
    /// ``GRPCStatus`` to end the call with. The call's deadline keeps running meanwhile.
    case wait(EventLoopFuture<(any Sendable)?>)
}

extension ServerInterceptor {
    public func receivedMessage(_ method: ServerMethod, bytes: Int) {}
    public func sentMessage(_ method: ServerMethod, bytes: Int) {}
    public func callEnded(_ method: ServerMethod, status: GRPCStatus, startedAt: NIODeadline, remoteAddress: SocketAddress?) {}
}

/// Several interceptors as one, in order: each sees every call; the first that does not let a
/// call proceed decides for it (those after it do not see it start, but see it end).
public struct ServerInterceptors: ServerInterceptor {
    private let interceptors: [any ServerInterceptor]

    public init(_ interceptors: [any ServerInterceptor]) {
        self.interceptors = interceptors
    }

    public func callStarted(_ method: ServerMethod, context: inout ServerContext) -> CallAdmission {
        for interceptor in interceptors {
            let admission = interceptor.callStarted(method, context: &context)
            if case .proceed = admission { continue }
            return admission
        }
        return .proceed
    }

    public func receivedMessage(_ method: ServerMethod, bytes: Int) {
        for interceptor in interceptors { interceptor.receivedMessage(method, bytes: bytes) }
    }

    public func sentMessage(_ method: ServerMethod, bytes: Int) {
        for interceptor in interceptors { interceptor.sentMessage(method, bytes: bytes) }
    }

    public func callEnded(_ method: ServerMethod, status: GRPCStatus, startedAt: NIODeadline, remoteAddress: SocketAddress?) {
        for interceptor in interceptors { interceptor.callEnded(method, status: status, startedAt: startedAt, remoteAddress: remoteAddress) }
    }
}
