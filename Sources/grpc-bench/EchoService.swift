import Foundation
import GRPCWire
import SwiftProtobuf

/// A test service of every streaming kind, on `Google_Protobuf_BytesValue` messages, used by
/// the interop script (a Python grpcio client) and by the CPU benchmark.
enum EchoService {
    static let unary = "/grpcbench.Echo/Unary"
    /// Answers one request with three copies of it.
    static let serverStream = "/grpcbench.Echo/Expand"
    /// Answers all requests with one message holding their values concatenated.
    static let clientStream = "/grpcbench.Echo/Collect"
    /// Echoes each request as it arrives; finishes when the client does.
    static let bidirectional = "/grpcbench.Echo/Chat"

    static func router() -> ServerRouter {
        var router = ServerRouter()
        router.unary(unary) { (request: Google_Protobuf_BytesValue, responder: UnaryResponder<Google_Protobuf_BytesValue>) in
            responder.succeed(request)
        }
        router.serverStreaming(serverStream) {
            (request: Google_Protobuf_BytesValue, call: ServerCall<Google_Protobuf_BytesValue, Google_Protobuf_BytesValue>) in
            for _ in 0..<3 { call.send(request, flush: false) }
            call.finish()
        }
        router.streaming(clientStream, kind: .clientStreaming) { (call: ServerCall<Google_Protobuf_BytesValue, Google_Protobuf_BytesValue>) in
            var collected = Google_Protobuf_BytesValue()
            call.onMessage = { collected.value.append($0.value) }
            call.onEnd = {
                call.send(collected)
                call.finish()
            }
        }
        router.streaming(bidirectional) { (call: ServerCall<Google_Protobuf_BytesValue, Google_Protobuf_BytesValue>) in
            call.onMessage = { call.send($0) }
            call.onEnd = { call.finish() }
        }
        return router
    }
}
