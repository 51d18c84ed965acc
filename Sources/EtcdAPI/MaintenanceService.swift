import EtcdProto
import EtcdServer
import GRPCWire

/// The parts of `etcdserverpb.Maintenance` and `etcdserverpb.Cluster` that report on and steer
/// the cluster: `Status`, `MoveLeader`, `MemberList`.
enum MaintenanceService {
    static func register(_ server: EtcdServer, on router: inout ServerRouter) {
        router.unary(Etcdserverpb_MaintenanceRPCs.status.path) {
            (_: Etcdserverpb_StatusRequest, responder: UnaryResponder<Etcdserverpb_StatusResponse>) in
            do {
                responder.succeed(try server.status())
            } catch {
                responder.fail(GRPCStatus(.unavailable, "etcdserver: \(error)"))
            }
        }
        router.unary(Etcdserverpb_MaintenanceRPCs.moveLeader.path) {
            (request: Etcdserverpb_MoveLeaderRequest, responder: UnaryResponder<Etcdserverpb_MoveLeaderResponse>) in
            server.moveLeader(to: request.targetID) { result in
                switch result {
                case .success:
                    var response = Etcdserverpb_MoveLeaderResponse()
                    response.header = server.header(revision: server.currentRevision)
                    responder.succeed(response)
                case .failure(let error):
                    responder.fail(GRPCStatus(error))
                }
            }
        }
        router.unary(Etcdserverpb_ClusterRPCs.memberList.path) {
            (_: Etcdserverpb_MemberListRequest, responder: UnaryResponder<Etcdserverpb_MemberListResponse>) in
            responder.succeed(server.memberList())
        }
    }
}
