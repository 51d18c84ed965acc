import Auth
import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf

/// `etcdserverpb.Lease`. Grants and revocations go through Raft; keep-alives and time-to-live
/// questions are answered by the leader's lessor (a follower forwards them), as in etcd.
enum LeaseService {
    static func register(_ server: EtcdServer, on router: inout ServerRouter) {
        router.unary(Etcdserverpb_LeaseRPCs.leaseGrant.path) {
            (request: Etcdserverpb_LeaseGrantRequest, responder: UnaryResponder<Etcdserverpb_LeaseGrantResponse>) in
            server.grantLease(request, by: responder.context.caller) { result in
                responder.complete(result, as: { if case .leaseGrant(let response) = $0 { response } else { nil } })
            }
        }
        router.unary(Etcdserverpb_LeaseRPCs.leaseRevoke.path) {
            (request: Etcdserverpb_LeaseRevokeRequest, responder: UnaryResponder<Etcdserverpb_LeaseRevokeResponse>) in
            server.propose(.leaseRevoke(request), by: responder.context.caller) { result in
                responder.complete(result, as: { if case .leaseRevoke(let response) = $0 { response } else { nil } })
            }
        }
        router.unary(Etcdserverpb_LeaseRPCs.leaseTimeToLive.path) {
            (request: Etcdserverpb_LeaseTimeToLiveRequest, responder: UnaryResponder<Etcdserverpb_LeaseTimeToLiveResponse>) in
            if request.keys, let refusal = refusal({ () throws(AuthError) in
                try server.checkLeaseKeys(request.id, .read, caller: responder.context.caller)
            }) {
                return responder.fail(refusal)
            }
            server.leaseTimeToLive(request.id) { result in
                switch result {
                case .success(let timeToLive):
                    var response = Etcdserverpb_LeaseTimeToLiveResponse()
                    response.header = server.header(revision: server.currentRevision)
                    response.id = request.id
                    // etcd: -1 for a lease it does not know; whole seconds left, rounded down.
                    response.ttl = timeToLive.map { $0.remainingMilliseconds / 1000 } ?? -1
                    response.grantedTtl = timeToLive?.grantedTTL ?? 0
                    if request.keys { response.keys = (timeToLive?.keys ?? []).map { Data($0) } }
                    responder.succeed(response)
                case .failure(let error):
                    responder.fail(GRPCStatus(error))
                }
            }
        }
        router.unary(Etcdserverpb_LeaseRPCs.leaseLeases.path) {
            (_: Etcdserverpb_LeaseLeasesRequest, responder: UnaryResponder<Etcdserverpb_LeaseLeasesResponse>) in
            if let refusal = refusal({ () throws(AuthError) in try server.checkLeaseList(caller: responder.context.caller) }) {
                return responder.fail(refusal)
            }
            var response = Etcdserverpb_LeaseLeasesResponse()
            response.header = server.header(revision: server.currentRevision)
            response.leases = server.leaseIDs.map { id in .with { $0.id = id } }
            responder.succeed(response)
        }
        router.streaming(Etcdserverpb_LeaseRPCs.leaseKeepAlive.path) {
            (call: ServerCall<Etcdserverpb_LeaseKeepAliveRequest, Etcdserverpb_LeaseKeepAliveResponse>) in
            let sender = call.sender
            let eventLoop = call.context.eventLoop
            let requiresLeader = RequireLeader.isRequired(by: call.context)
            if requiresLeader, server.leaderID == nil { return call.finish(GRPCStatus(EtcdError.noLeader)) }
            // As etcd: every request is answered, and once the client has half-closed and the
            // last answer is out, the stream ends with OK (clients refresh a lease this way).
            let progress = NIOLoopBoundBox(KeepAliveProgress(), eventLoop: eventLoop)
            let end: @Sendable (GRPCStatus) -> Void = { status in
                progress.value.leaderCheck?.cancel()
                sender.finish(status)
            }
            if requiresLeader {
                progress.value.leaderCheck = RequireLeader.monitor(server, on: eventLoop) { end(GRPCStatus(EtcdError.noLeader)) }
            }
            let caller = call.context.caller
            call.onMessage = { request in
                // Keeping a lease alive keeps its keys: WRITE on them, as etcd checks.
                if let refusal = refusal({ () throws(AuthError) in try server.checkLeaseKeys(request.id, .write, caller: caller) }) {
                    return end(refusal)
                }
                progress.value.inFlight += 1
                // The header is taken before the renewal, as etcd does.
                let header = server.header(revision: server.currentRevision)
                server.renewLease(request.id) { result in
                    eventLoop.execute {
                        progress.value.inFlight -= 1
                        var response = Etcdserverpb_LeaseKeepAliveResponse()
                        response.header = header
                        response.id = request.id
                        switch result {
                        case .success(let ttl): response.ttl = ttl
                        // An unknown lease is answered with TTL 0, and the stream goes on.
                        case .failure(.leaseNotFound): response.ttl = 0
                        case .failure(let error): return end(GRPCStatus(error))
                        }
                        _ = sender.send(response)
                        if progress.value.clientEnded && progress.value.inFlight == 0 { end(.ok) }
                    }
                }
            }
            call.onEnd = {
                progress.value.clientEnded = true
                if progress.value.inFlight == 0 { end(.ok) }
            }
            call.onCancel = { _ in progress.value.leaderCheck?.cancel() }
        }
    }
}

/// The status a failed auth check answers with; nil when it passed.
private func refusal(_ check: () throws(AuthError) -> Void) -> GRPCStatus? {
    do throws(AuthError) {
        try check()
        return nil
    } catch {
        return GRPCStatus(error)
    }
}

/// A keep-alive stream's renewals in flight, whether the client has half-closed, and the
/// leader check of a stream that requires a leader.
private struct KeepAliveProgress {
    var inFlight = 0
    var clientEnded = false
    var leaderCheck: RepeatedTask?
}
