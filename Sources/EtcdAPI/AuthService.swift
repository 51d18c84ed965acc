import Auth
import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import SwiftProtobuf

/// `etcdserverpb.Auth`. Changes go through Raft (passwords hashed first); lookups answer from
/// the member's auth state once a linearizable read confirms it is current. Who may call what
/// is ``AuthInterceptor``'s to decide, except looking up oneself or one's own role.
enum AuthService {
    static func register(_ server: EtcdServer, on router: inout ServerRouter) {
        router.unary(Etcdserverpb_AuthRPCs.authenticate.path) {
            (request: Etcdserverpb_AuthenticateRequest, responder: UnaryResponder<Etcdserverpb_AuthenticateResponse>) in
            server.authenticate(request) { result in
                switch result {
                case .success(let response): responder.succeed(response)
                case .failure(let error): responder.fail(GRPCStatus(error))
                }
            }
        }
        change(Etcdserverpb_AuthRPCs.authEnable, server, &router) { (_: Etcdserverpb_AuthEnableRequest) in .enable }
        change(Etcdserverpb_AuthRPCs.authDisable, server, &router) { (_: Etcdserverpb_AuthDisableRequest) in .disable }
        change(Etcdserverpb_AuthRPCs.userAdd, server, &router) { .userAdd($0) }
        change(Etcdserverpb_AuthRPCs.userDelete, server, &router) { .userDelete($0) }
        change(Etcdserverpb_AuthRPCs.userChangePassword, server, &router) { .userChangePassword($0) }
        change(Etcdserverpb_AuthRPCs.userGrantRole, server, &router) { .userGrantRole($0) }
        change(Etcdserverpb_AuthRPCs.userRevokeRole, server, &router) { .userRevokeRole($0) }
        change(Etcdserverpb_AuthRPCs.roleAdd, server, &router) { .roleAdd($0) }
        change(Etcdserverpb_AuthRPCs.roleDelete, server, &router) { .roleDelete($0) }
        change(Etcdserverpb_AuthRPCs.roleGrantPermission, server, &router) { .roleGrantPermission($0) }
        change(Etcdserverpb_AuthRPCs.roleRevokePermission, server, &router) { .roleRevokePermission($0) }

        lookup(Etcdserverpb_AuthRPCs.authStatus, server, &router) { (_, auth, _) in
            .with {
                $0.enabled = auth.enabled
                $0.authRevision = auth.revision
            }
        }
        lookup(Etcdserverpb_AuthRPCs.userGet, server, &router) { request, auth, caller throws(AuthError) in
            if caller?.user != request.name { try server.requireRoot(caller) }
            guard let user = auth.users[request.name] else { throw .userNotFound }
            return .with { $0.roles = user.roles }
        }
        lookup(Etcdserverpb_AuthRPCs.userList, server, &router) { (_, auth, _) in
            .with { $0.users = auth.users.keys.sorted() }
        }
        lookup(Etcdserverpb_AuthRPCs.roleGet, server, &router) { request, auth, caller throws(AuthError) in
            let holds = caller.flatMap { auth.users[$0.user]?.roles.contains(request.role) } ?? false
            if !holds { try server.requireRoot(caller) }
            guard let role = auth.roles[request.role] else { throw .roleNotFound }
            // The root role may do everything, whatever permissions were granted to it (etcd 3.6).
            if role.name == AuthState.rootRole {
                return .with { $0.perm = [.with { $0.permType = .readwrite; $0.key = Data(); $0.rangeEnd = Data([0]) }] }
            }
            return .with {
                $0.perm = role.permissions.map { permission in
                    .with {
                        $0.permType = Authpb_Permission.TypeEnum(rawValue: permission.access.rawValue) ?? .read
                        $0.key = Data(permission.key)
                        $0.rangeEnd = Data(permission.rangeEnd)
                    }
                }
            }
        }
        lookup(Etcdserverpb_AuthRPCs.roleList, server, &router) { (_, auth, _) in
            .with { $0.roles = auth.roles.keys.sorted() }
        }
    }

    /// A change through Raft, answered with the response the apply made.
    private static func change<Request: Message, Response: Message>(
        _ rpc: RPC<Request, Response>, _ server: EtcdServer, _ router: inout ServerRouter,
        _ make: @escaping @Sendable (Request) -> AuthRequest
    ) {
        router.unary(rpc.path) { (request: Request, responder: UnaryResponder<Response>) in
            server.proposeAuth(make(request), by: responder.context.caller) { result in
                responder.complete(result, as: { if case .auth(let response as Response) = $0 { response } else { nil } })
            }
        }
    }

    /// A lookup in the auth state, once it is known to be current.
    private static func lookup<Request: Message, Response: Message & HasResponseHeader>(
        _ rpc: RPC<Request, Response>, _ server: EtcdServer, _ router: inout ServerRouter,
        _ answer: @escaping @Sendable (Request, AuthState, AuthIdentity?) throws(AuthError) -> Response
    ) {
        router.unary(rpc.path) { (request: Request, responder: UnaryResponder<Response>) in
            server.linearizableRead { result in
                if case .failure(let error) = result { return responder.fail(GRPCStatus(error)) }
                do throws(AuthError) {
                    var response = try answer(request, server.authState, responder.context.caller)
                    response.header = server.header(revision: server.currentRevision)
                    responder.succeed(response)
                } catch {
                    responder.fail(GRPCStatus(error))
                }
            }
        }
    }
}

/// Responses with etcd's header.
protocol HasResponseHeader {
    var header: Etcdserverpb_ResponseHeader { get set }
}

extension Etcdserverpb_AuthStatusResponse: HasResponseHeader {}
extension Etcdserverpb_AuthUserGetResponse: HasResponseHeader {}
extension Etcdserverpb_AuthUserListResponse: HasResponseHeader {}
extension Etcdserverpb_AuthRoleGetResponse: HasResponseHeader {}
extension Etcdserverpb_AuthRoleListResponse: HasResponseHeader {}
