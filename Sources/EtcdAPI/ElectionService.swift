import Coordination
import EtcdProto
import EtcdServer
import GRPCWire
import SwiftProtobuf
import NIOCore

/// `v3electionpb.Election`: etcd's election recipe run by the member for its caller.
/// `Campaign` waits until the caller leads (a cancelled campaign resigns); `Proclaim` and
/// `Resign` act only for the leader key they are given; `Observe` streams every leader.
enum ElectionService {
    static func register(_ server: EtcdServer, on router: inout ServerRouter) {
        router.unary(V3electionpb_ElectionRPCs.campaign.path) {
            (request: V3electionpb_CampaignRequest, context) async throws -> V3electionpb_CampaignResponse in
            try await MemberCoordinationStore.serve(server, context) { store in
                let lease = try await request.lease == 0 ? store.grantLease(ttl: LockService.defaultSessionTTL) : request.lease
                let (leader, header) = try await ElectionRecipe.campaign(request.name, lease: lease, value: request.value, on: store)
                return .with {
                    $0.header = header
                    $0.leader = leader
                }
            }
        }
        router.unary(V3electionpb_ElectionRPCs.proclaim.path) {
            (request: V3electionpb_ProclaimRequest, context) async throws -> V3electionpb_ProclaimResponse in
            try await MemberCoordinationStore.serve(server, context) { store in
                guard request.hasLeader else { throw CoordinationError.missingLeaderKey }
                let header = try await ElectionRecipe.proclaim(request.value, as: request.leader, on: store)
                return .with { $0.header = header }
            }
        }
        router.unary(V3electionpb_ElectionRPCs.resign.path) {
            (request: V3electionpb_ResignRequest, context) async throws -> V3electionpb_ResignResponse in
            try await MemberCoordinationStore.serve(server, context) { store in
                guard request.hasLeader else { throw CoordinationError.missingLeaderKey }
                let header = try await ElectionRecipe.resign(request.leader, on: store)
                return .with { $0.header = header }
            }
        }
        router.unary(V3electionpb_ElectionRPCs.leader.path) {
            (request: V3electionpb_LeaderRequest, context) async throws -> V3electionpb_LeaderResponse in
            try await MemberCoordinationStore.serve(server, context) { store in
                let leader = try await ElectionRecipe.leader(request.name, on: store)
                return .with {
                    $0.header = leader.header
                    $0.kv = leader.kv
                }
            }
        }
        router.serverStreaming(V3electionpb_ElectionRPCs.observe.path) {
            (request: V3electionpb_LeaderRequest, call: ServerCall<V3electionpb_LeaderRequest, V3electionpb_LeaderResponse>) in
            let store = MemberCoordinationStore(server: server, caller: call.context.caller)
            let sender = call.sender
            let task = Task {
                do {
                    for try await leader in ElectionRecipe.observe(request.name, on: store) {
                        // Waiting for each send keeps a slow reader from piling up answers.
                        try await sender.send(.with {
                            $0.header = leader.header
                            $0.kv = leader.kv
                        }).get()
                    }
                    sender.finish()
                } catch {
                    sender.finish(GRPCStatus(coordinationFailure: error))
                }
            }
            call.onCancel = { _ in task.cancel() }
        }
    }
}
