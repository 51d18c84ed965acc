import NIOCore
import SwiftProtobuf

/// The routing table from `/package.Service/Method` paths to typed handlers.
///
/// Handlers run on the event loop that owns the stream, with no task hop; a handler that
/// needs another executor hands work over explicitly (and the ``UnaryResponder`` or
/// ``ServerCall`` hops back). The `async` variant of ``unary(_:_:)-(_,(Request,ServerContext)async throws->Response)``
/// exists for convenience on paths where one task per call does not matter.
public struct ServerRouter: Sendable {
    enum Implementation: Sendable {
        /// Dispatched when the single request message has arrived.
        case unary(@Sendable (ByteBuffer, ServerStreamHandler.Handle) -> Void)
        /// Started as soon as the request headers arrive; the observer receives the messages.
        case streaming(@Sendable (ServerStreamHandler.Handle) -> any StreamObserver)
    }

    /// A registered method: how to start it, and what interceptors are told about it.
    struct Route: Sendable {
        let implementation: Implementation
        let method: ServerMethod
    }

    private(set) var methods: [String: Route] = [:]
    private var services: Set<Substring> = []

    public init() {}

    /// Whether a handler is registered for `path`.
    public func handles(_ path: String) -> Bool {
        methods[path] != nil
    }

    /// Registers a unary method whose handler answers through a responder usable from any thread.
    public mutating func unary<Request: Message, Response: Message>(
        _ path: String,
        _ handler: @escaping @Sendable (Request, UnaryResponder<Response>) -> Void
    ) {
        register(path, kind: .unary, .unary { payload, stream in
            let request: Request
            do {
                request = try Request(grpcPayload: payload)
            } catch {
                stream.handler.abandon(GRPCStatus(.internal, "grpc: error unmarshalling request: \(error)"))
                return
            }
            handler(request, UnaryResponder(stream: stream, requestBytes: payload.readableBytes))
        })
    }

    /// Registers a unary method served by an `async` function, run in a task per call; the task
    /// is cancelled when the call is.
    public mutating func unary<Request: Message, Response: Message>(
        _ path: String,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) {
        unary(path) { (request: Request, responder: UnaryResponder<Response>) in
            let task = Task {
                do {
                    responder.succeed(try await handler(request, responder.context))
                } catch let status as GRPCStatus {
                    responder.fail(status)
                } catch {
                    responder.fail(GRPCStatus(.unknown, "\(error)"))
                }
            }
            responder.context.cancellation.onCancel { _ in task.cancel() }
        }
    }

    /// Registers a server-streaming method: the handler gets the one request and a call to send on.
    public mutating func serverStreaming<Request: Message, Response: Message>(
        _ path: String,
        _ handler: @escaping @Sendable (Request, ServerCall<Request, Response>) -> Void
    ) {
        register(path, kind: .serverStreaming, .streaming { stream in
            let call = ServerCall<Request, Response>(stream: stream)
            var started = false
            call.onMessage = { request in
                guard !started else {
                    call.finish(GRPCStatus(.internal, "grpc: expected one request message for a server-streaming method"))
                    return
                }
                started = true
                handler(request, call)
            }
            call.onEnd = {
                if !started { call.finish(GRPCStatus(.internal, "grpc: no request message for a server-streaming method")) }
            }
            return call
        })
    }

    /// Registers a client-streaming or bidirectional-streaming method (`kind` says which, for
    /// interceptors). The handler runs when the request headers arrive and sets the call's
    /// callbacks; for client streaming it sends its one response and finishes once
    /// ``ServerCall/onEnd`` fires.
    public mutating func streaming<Request: Message, Response: Message>(
        _ path: String,
        kind: ServerMethod.Kind = .bidirectionalStreaming,
        _ handler: @escaping @Sendable (ServerCall<Request, Response>) -> Void
    ) {
        register(path, kind: kind, .streaming { stream in
            let call = ServerCall<Request, Response>(stream: stream)
            handler(call)
            return call
        })
    }

    private mutating func register(_ path: String, kind: ServerMethod.Kind, _ implementation: Implementation) {
        precondition(methods[path] == nil, "method \(path) registered twice")
        guard let service = Self.service(of: path) else { preconditionFailure("method path \(path) is not /package.Service/Method") }
        let name = String(path[path.index(after: service.endIndex)...])
        methods[path] = Route(
            implementation: implementation, method: ServerMethod(path: path, service: String(service), name: name, kind: kind))
        services.insert(service)
    }

    /// The UNIMPLEMENTED status for a path with no handler, worded as gRPC-Go words it.
    func unknownMethodStatus(_ path: String) -> GRPCStatus {
        guard let service = Self.service(of: path) else {
            return GRPCStatus(.unimplemented, "malformed method name: \"\(path)\"")
        }
        let method = path[path.index(after: service.endIndex)...]
        if services.contains(service) {
            return GRPCStatus(.unimplemented, "unknown method \(method) for service \(service)")
        }
        return GRPCStatus(.unimplemented, "unknown service \(service)")
    }

    private static func service(of path: String) -> Substring? {
        guard path.first == "/", let slash = path.dropFirst().firstIndex(of: "/"),
            slash > path.index(after: path.startIndex), slash < path.index(before: path.endIndex)
        else { return nil }
        return path[path.index(after: path.startIndex)..<slash]
    }
}

/// Receives a streaming call's inbound events on the stream's event loop.
protocol StreamObserver: AnyObject {
    func receive(_ payload: ByteBuffer)
    func requestsEnded()
    func cancelled(_ reason: GRPCStatus)
    func writabilityChanged(_ isWritable: Bool)
    /// The call is over; drop every callback (they usually capture the call itself).
    func ended()
}
