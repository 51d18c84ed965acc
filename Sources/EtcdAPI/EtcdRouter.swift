import EtcdProto
import EtcdServer
import GRPCWire
import SwiftProtobuf

/// Builds the routing table for everything a swift-etcd member serves over gRPC.
package enum EtcdRouter {
    /// The full table for `server`: every RPC of etcd's v3 API has an entry. RPCs whose service
    /// has not landed yet answer UNIMPLEMENTED with a message naming the RPC, so clients fail
    /// fast and clearly instead of hanging.
    package static func make(serving server: EtcdServer) -> ServerRouter {
        var router = ServerRouter()
        registerHealth(&router)
        KVService.register(server, on: &router)
        MaintenanceService.register(server, on: &router)
        ClusterService.register(server, on: &router)
        WatchService.register(server, on: &router)
        LeaseService.register(server, on: &router)
        AuthService.register(server, on: &router)
        LockService.register(server, on: &router)
        ElectionService.register(server, on: &router)
        for (path, kind) in RPCCatalog.all where !router.handles(path) {
            router.answerUnimplemented(path, kind: kind)
        }
        return router
    }

    /// gRPC message limits for a member: requests up to `--max-request-bytes` plus 512 KiB of
    /// gRPC overhead reach the handlers, which refuse those above `--max-request-bytes` with
    /// etcd's `request is too large`; larger messages are refused by the gRPC layer, as etcd does.
    package static func messageLimits(for server: EtcdServer) -> GRPCServer.MessageLimits {
        var limits = GRPCServer.MessageLimits()
        limits.maximumReceiveMessageSize = server.configuration.maxRequestBytes + 512 * 1024
        return limits
    }

    /// `grpc.health.v1.Health`: the member reports SERVING for the whole server ("").
    private static func registerHealth(_ router: inout ServerRouter) {
        router.unary(Grpc_Health_V1_HealthRPCs.check.path) {
            (request: Grpc_Health_V1_HealthCheckRequest, responder: UnaryResponder<Grpc_Health_V1_HealthCheckResponse>) in
            guard request.service.isEmpty else {
                return responder.fail(GRPCStatus(.notFound, "unknown service"))
            }
            responder.succeed(.with { $0.status = .serving })
        }
    }
}

extension ServerRouter {
    /// Answers every call to `path` with UNIMPLEMENTED, without decoding its messages.
    mutating func answerUnimplemented(_ path: String, kind: RPCKind) {
        let status = GRPCStatus(.unimplemented, "swift-etcd: \(path.dropFirst()) is not implemented yet")
        switch kind {
        case .unary:
            unary(path) { (_: Google_Protobuf_Empty, responder: UnaryResponder<Google_Protobuf_Empty>) in
                responder.fail(status)
            }
        case .clientStreaming, .serverStreaming, .bidirectionalStreaming:
            streaming(path) { (call: ServerCall<Google_Protobuf_Empty, Google_Protobuf_Empty>) in
                call.finish(status)
            }
        }
    }
}
