import Locking
import NIOCore
import NIOHPACK
import NIOSSL
import Synchronization

/// What a handler knows about the call it serves.
public struct ServerContext: Sendable {
    /// The method path, `/package.Service/Method`.
    public let path: String
    /// Request headers, including custom metadata such as etcd's `token` and `hasleader`.
    public let requestHeaders: HPACKHeaders
    /// When the client's `grpc-timeout` runs out, if it sent one.
    public let deadline: NIODeadline?
    public let remoteAddress: SocketAddress?
    /// The event loop that owns the call's stream; responding on it avoids a thread hop.
    public let eventLoop: any EventLoop
    /// Fires when the call ends before the handler finished it: client cancel, reset, disconnect
    /// or deadline.
    public let cancellation: CallCancellation
    /// What the server's ``ServerInterceptor`` attached to the call for its handler, such as
    /// the caller's identity; nil when it attached nothing.
    public var attachment: (any Sendable)?
    /// The channel of the call's connection (its TLS handler lives there).
    let connectionChannel: (any Channel)?

    /// The certificate the client presented in the TLS handshake; nil on plaintext connections
    /// or when it sent none. Call on ``eventLoop``.
    public func peerCertificate() -> NIOSSLCertificate? {
        guard let connectionChannel else { return nil }
        return try? connectionChannel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate
    }

    /// The first value of request metadata `name` (lowercase), if sent.
    public func metadata(_ name: String) -> String? {
        requestHeaders.first(name: name)
    }
}

/// A one-shot signal that the client abandoned a call, observable from any thread.
public final class CallCancellation: Sendable {
    private struct State {
        var reason: GRPCStatus?
        var callbacks: [@Sendable (GRPCStatus) -> Void] = []
    }
    private let state = Locked(State())

    public init() {}

    /// The cancellation's reason (``GRPCStatus/Code/cancelled`` or
    /// ``GRPCStatus/Code/deadlineExceeded``), or nil while the call is live.
    public var reason: GRPCStatus? {
        state.withLock { $0.reason }
    }

    /// Runs `callback` once when the call is cancelled; at once if it already was.
    public func onCancel(_ callback: @escaping @Sendable (GRPCStatus) -> Void) {
        let firedReason: GRPCStatus? = state.withLock { state in
            if let reason = state.reason { return reason }
            state.callbacks.append(callback)
            return nil
        }
        if let firedReason { callback(firedReason) }
    }

    func cancel(_ reason: GRPCStatus) {
        let callbacks: [@Sendable (GRPCStatus) -> Void] = state.withLock { state in
            guard state.reason == nil else { return [] }
            state.reason = reason
            defer { state.callbacks = [] }
            return state.callbacks
        }
        for callback in callbacks { callback(reason) }
    }
}
