import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import SwiftProtobuf

/// `etcdserverpb.Lease`. Grants and revocations go through Raft; keep-alives and time-to-live
/// questions are answered by the leader's lessor (a follower forwards them), as in etcd.
enum LeaseService {
    static func register(_ server: EtcdServer, on router: inout ServerRouter) {
        router.unary(Etcdserverpb_LeaseRPCs.leaseGrant.path) {
            (request: Etcdserverpb_LeaseGrantRequest, responder: UnaryResponder<Etcdserverpb_LeaseGrantResponse>) in
            server.grantLease(request) { result in
                responder.complete(result, as: { if case .leaseGrant(let response) = $0 { response } else { nil } })
            }
        }
        router.unary(Etcdserverpb_LeaseRPCs.leaseRevoke.path) {
            (request: Etcdserverpb_LeaseRevokeRequest, responder: UnaryResponder<Etcdserverpb_LeaseRevokeResponse>) in
            server.propose(.leaseRevoke(request)) { result in
                responder.complete(result, as: { if case .leaseRevoke(let response) = $0 { response } else { nil } })
            }
        }
        router.unary(Etcdserverpb_LeaseRPCs.leaseTimeToLive.path) {
            (request: Etcdserverpb_LeaseTimeToLiveRequest, responder: UnaryResponder<Etcdserverpb_LeaseTimeToLiveResponse>) in
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
            var response = Etcdserverpb_LeaseLeasesResponse()
            response.header = server.header(revision: server.currentRevision)
            response.leases = server.leaseIDs.map { id in .with { $0.id = id } }
            responder.succeed(response)
        }
        router.streaming(Etcdserverpb_LeaseRPCs.leaseKeepAlive.path) {
            (call: ServerCall<Etcdserverpb_LeaseKeepAliveRequest, Etcdserverpb_LeaseKeepAliveResponse>) in
            let sender = call.sender
            call.onMessage = { request in
                // The header is taken before the renewal, as etcd does.
                let header = server.header(revision: server.currentRevision)
                server.renewLease(request.id) { result in
                    var response = Etcdserverpb_LeaseKeepAliveResponse()
                    response.header = header
                    response.id = request.id
                    switch result {
                    case .success(let ttl): response.ttl = ttl
                    // An unknown lease is answered with TTL 0, and the stream goes on.
                    case .failure(.leaseNotFound): response.ttl = 0
                    case .failure(let error): return sender.finish(GRPCStatus(error))
                    }
                    _ = sender.send(response)
                }
            }
        }
    }
}
