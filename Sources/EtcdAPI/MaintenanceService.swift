import Dispatch
import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf

/// `etcdserverpb.Maintenance`: status, alarms, hashes, backups, defragmentation, leadership.
enum MaintenanceService {
    /// `Snapshot` messages written but not yet sent: enough to keep the connection busy, few
    /// enough that a slow client holds little of the member's memory.
    static let backupMessagesInFlight = 8

    static func register(_ server: EtcdServer, on router: inout ServerRouter) {
        router.serverStreaming(Etcdserverpb_MaintenanceRPCs.snapshot.path) {
            (_: Etcdserverpb_SnapshotRequest, call: ServerCall<Etcdserverpb_SnapshotRequest, Etcdserverpb_SnapshotResponse>) in
            let sender = call.sender
            // The transfer blocks a thread of its own for as long as the client reads.
            Thread.detachNewThread {
                var inFlight: [EventLoopFuture<Void>] = []
                do {
                    try server.streamBackup { response in
                        inFlight.append(sender.send(response))
                        if inFlight.count >= backupMessagesInFlight { try inFlight.removeFirst().wait() }
                    }
                    for future in inFlight { try future.wait() }
                    sender.finish()
                } catch let error as EtcdError {
                    sender.finish(GRPCStatus(error))
                } catch let status as GRPCStatus {
                    sender.finish(status)
                } catch {
                    sender.finish(GRPCStatus(.unknown, "etcdserver: \(error)"))
                }
            }
        }
        router.unary(Etcdserverpb_MaintenanceRPCs.downgrade.path) {
            (request: Etcdserverpb_DowngradeRequest, responder: UnaryResponder<Etcdserverpb_DowngradeResponse>) in
            server.downgrade(request, by: responder.context.caller) { responder.complete($0.mapError(GRPCStatus.init)) }
        }
        router.unary(Etcdserverpb_MaintenanceRPCs.hash.path) {
            (_: Etcdserverpb_HashRequest, responder: UnaryResponder<Etcdserverpb_HashResponse>) in
            answerOffTheLoop(responder) { try server.backendHash() }
        }
        router.unary(Etcdserverpb_MaintenanceRPCs.defragment.path) {
            (_: Etcdserverpb_DefragmentRequest, responder: UnaryResponder<Etcdserverpb_DefragmentResponse>) in
            answerOffTheLoop(responder) { try server.defragment() }
        }
        router.unary(Etcdserverpb_MaintenanceRPCs.alarm.path) {
            (request: Etcdserverpb_AlarmRequest, responder: UnaryResponder<Etcdserverpb_AlarmResponse>) in
            server.alarm(request, by: responder.context.caller) { responder.complete($0.mapError(GRPCStatus.init)) }
        }
        router.unary(Etcdserverpb_MaintenanceRPCs.status.path) {
            (_: Etcdserverpb_StatusRequest, responder: UnaryResponder<Etcdserverpb_StatusResponse>) in
            do {
                responder.succeed(try server.status())
            } catch {
                responder.fail(GRPCStatus(.unavailable, "etcdserver: \(error)"))
            }
        }
        router.unary(Etcdserverpb_MaintenanceRPCs.hashKV.path) {
            (request: Etcdserverpb_HashKVRequest, responder: UnaryResponder<Etcdserverpb_HashKVResponse>) in
            answerOffTheLoop(responder) { try server.hashKV(revision: request.revision) }
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
    }
}

extension MaintenanceService {
    /// Answers with what `body` returns, computed on a global queue: for calls that read or
    /// rewrite the whole backend, which must not hold an event loop.
    static func answerOffTheLoop<Response>(_ responder: UnaryResponder<Response>, _ body: @escaping @Sendable () throws -> Response) {
        DispatchQueue.global().async {
            do {
                responder.succeed(try body())
            } catch let error as EtcdError {
                responder.fail(GRPCStatus(error))
            } catch {
                responder.fail(GRPCStatus(.unknown, "etcdserver: \(error)"))
            }
        }
    }
}

/// `etcdserverpb.Cluster`: membership, changed through Raft like every write.
enum ClusterService {
    static func register(_ server: EtcdServer, on router: inout ServerRouter) {
        router.unary(Etcdserverpb_ClusterRPCs.memberList.path) {
            (request: Etcdserverpb_MemberListRequest, responder: UnaryResponder<Etcdserverpb_MemberListResponse>) in
            let answer: @Sendable () -> Void = {
                var response = Etcdserverpb_MemberListResponse()
                response.header = membershipHeader(server)
                response.members = server.members.map(Etcdserverpb_Member.init)
                responder.succeed(response)
            }
            guard request.linearizable else { return answer() }
            server.linearizableRead { result in
                switch result {
                case .success: answer()
                case .failure(let error): responder.fail(GRPCStatus(error))
                }
            }
        }
        router.unary(Etcdserverpb_ClusterRPCs.memberAdd.path) {
            (request: Etcdserverpb_MemberAddRequest, responder: UnaryResponder<Etcdserverpb_MemberAddResponse>) in
            server.addMember(peerURLs: request.peerUrls, isLearner: request.isLearner) { result in
                respond(result, server, responder) { response, member, members in
                    response.member = member
                    response.members = members
                }
            }
        }
        router.unary(Etcdserverpb_ClusterRPCs.memberRemove.path) {
            (request: Etcdserverpb_MemberRemoveRequest, responder: UnaryResponder<Etcdserverpb_MemberRemoveResponse>) in
            server.removeMember(request.id) { result in
                respond(result, server, responder) { response, _, members in response.members = members }
            }
        }
        router.unary(Etcdserverpb_ClusterRPCs.memberUpdate.path) {
            (request: Etcdserverpb_MemberUpdateRequest, responder: UnaryResponder<Etcdserverpb_MemberUpdateResponse>) in
            server.updateMember(request.id, peerURLs: request.peerUrls) { result in
                respond(result, server, responder) { response, _, members in response.members = members }
            }
        }
        router.unary(Etcdserverpb_ClusterRPCs.memberPromote.path) {
            (request: Etcdserverpb_MemberPromoteRequest, responder: UnaryResponder<Etcdserverpb_MemberPromoteResponse>) in
            server.promoteMember(request.id) { result in
                respond(result, server, responder) { response, _, members in response.members = members }
            }
        }
    }

    /// etcd's header for membership answers: cluster, member and term, no revision.
    private static func membershipHeader(_ server: EtcdServer) -> Etcdserverpb_ResponseHeader {
        server.header(revision: 0)
    }

    /// Answers a membership change: the response built by `fill`, or etcd's error.
    private static func respond<Response: MembershipResponse>(
        _ result: EtcdServer.MembershipResult, _ server: EtcdServer, _ responder: UnaryResponder<Response>,
        fill: (inout Response, Etcdserverpb_Member, [Etcdserverpb_Member]) -> Void
    ) {
        switch result {
        case .success(let (member, members)):
            var response = Response()
            response.header = membershipHeader(server)
            fill(&response, Etcdserverpb_Member(member), members.map(Etcdserverpb_Member.init))
            responder.succeed(response)
        case .failure(let error):
            responder.fail(GRPCStatus(error))
        }
    }
}

/// The membership responses: each has a header.
protocol MembershipResponse: SwiftProtobuf.Message {
    var header: Etcdserverpb_ResponseHeader { get set }
}

extension Etcdserverpb_MemberAddResponse: MembershipResponse {}
extension Etcdserverpb_MemberRemoveResponse: MembershipResponse {}
extension Etcdserverpb_MemberUpdateResponse: MembershipResponse {}
extension Etcdserverpb_MemberPromoteResponse: MembershipResponse {}

extension Etcdserverpb_Member {
    init(_ member: Member) {
        self.init()
        id = member.id
        name = member.name
        peerUrls = member.peerURLs
        clientUrls = member.clientURLs
        isLearner = member.isLearner
    }
}
