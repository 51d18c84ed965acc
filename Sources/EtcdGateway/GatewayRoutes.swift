import EtcdHTTP
import EtcdProto
import GRPCWire
import NIOCore
import NIOHPACK
import SwiftProtobuf

/// One `/v3/…` path of the gateway: the RPC it calls, and how to call it with JSON.
struct GatewayRoute: Sendable {
    /// A unary call: JSON body in, JSON answer out (or the call's error status).
    typealias Unary = @Sendable (
        _ body: [UInt8], _ channel: GatewayChannel, _ metadata: HPACKHeaders, _ timeout: TimeAmount?, _ eventLoop: any EventLoop
    ) -> EventLoopFuture<String>
    /// A streaming call relaying one HTTP exchange.
    typealias Streaming = @Sendable (_ client: GRPCClient, _ metadata: HPACKHeaders, _ timeout: TimeAmount?, _ maximumObjectBytes: Int,
        _ responses: any HTTPStreamWriter) -> any HTTPStreamingExchange

    enum Call: Sendable {
        case unary(Unary)
        case streaming(Streaming)
    }

    let rpcPath: String
    let call: Call

    static func unary<Request: Message, Response: Message>(_ rpc: RPC<Request, Response>) -> GatewayRoute {
        GatewayRoute(rpcPath: rpc.path, call: .unary { body, channel, metadata, timeout, eventLoop in
            let request: Request
            do {
                request = try GatewayJSON.decode(Request.self, from: body)
            } catch {
                return eventLoop.makeFailedFuture(error)
            }
            return channel.withConnection({ connection in
                connection.startUnary(rpc.path, request, metadata: metadata, timeout: timeout, responseType: Response.self)
                    .map(GatewayJSON.encode)
            }, on: eventLoop)
        })
    }

    static func streaming<Request: Message, Response: Message>(_ rpc: RPC<Request, Response>) -> GatewayRoute {
        GatewayRoute(rpcPath: rpc.path, call: .streaming { client, metadata, timeout, maximumObjectBytes, responses in
            GatewayStream<Request, Response>(
                rpc: rpc, client: client, metadata: metadata, timeout: timeout, maximumObjectBytes: maximumObjectBytes,
                responses: responses)
        })
    }

    /// Every path etcd 3.6's gateway serves, under `/v3` (and `/v3beta`, which etcd still maps).
    static let table: [String: GatewayRoute] = {
        typealias KV = Etcdserverpb_KVRPCs
        typealias Lease = Etcdserverpb_LeaseRPCs
        typealias Cluster = Etcdserverpb_ClusterRPCs
        typealias Maintenance = Etcdserverpb_MaintenanceRPCs
        typealias Auth = Etcdserverpb_AuthRPCs
        typealias Lock = V3lockpb_LockRPCs
        typealias Election = V3electionpb_ElectionRPCs
        let routes: [(String, GatewayRoute)] = [
            ("/kv/range", .unary(KV.range)),
            ("/kv/put", .unary(KV.put)),
            ("/kv/deleterange", .unary(KV.deleteRange)),
            ("/kv/txn", .unary(KV.txn)),
            ("/kv/compaction", .unary(KV.compact)),
            ("/watch", .streaming(Etcdserverpb_WatchRPCs.watch)),
            ("/lease/grant", .unary(Lease.leaseGrant)),
            ("/lease/revoke", .unary(Lease.leaseRevoke)),
            ("/kv/lease/revoke", .unary(Lease.leaseRevoke)),
            ("/lease/keepalive", .streaming(Lease.leaseKeepAlive)),
            ("/lease/timetolive", .unary(Lease.leaseTimeToLive)),
            ("/kv/lease/timetolive", .unary(Lease.leaseTimeToLive)),
            ("/lease/leases", .unary(Lease.leaseLeases)),
            ("/kv/lease/leases", .unary(Lease.leaseLeases)),
            ("/cluster/member/add", .unary(Cluster.memberAdd)),
            ("/cluster/member/remove", .unary(Cluster.memberRemove)),
            ("/cluster/member/update", .unary(Cluster.memberUpdate)),
            ("/cluster/member/list", .unary(Cluster.memberList)),
            ("/cluster/member/promote", .unary(Cluster.memberPromote)),
            ("/maintenance/alarm", .unary(Maintenance.alarm)),
            ("/maintenance/status", .unary(Maintenance.status)),
            ("/maintenance/defragment", .unary(Maintenance.defragment)),
            ("/maintenance/hash", .unary(Maintenance.hash)),
            ("/maintenance/hashkv", .unary(Maintenance.hashKV)),
            ("/maintenance/snapshot", .streaming(Maintenance.snapshot)),
            ("/maintenance/transfer-leadership", .unary(Maintenance.moveLeader)),
            ("/maintenance/downgrade", .unary(Maintenance.downgrade)),
            ("/auth/enable", .unary(Auth.authEnable)),
            ("/auth/disable", .unary(Auth.authDisable)),
            ("/auth/status", .unary(Auth.authStatus)),
            ("/auth/authenticate", .unary(Auth.authenticate)),
            ("/auth/user/add", .unary(Auth.userAdd)),
            ("/auth/user/get", .unary(Auth.userGet)),
            ("/auth/user/list", .unary(Auth.userList)),
            ("/auth/user/delete", .unary(Auth.userDelete)),
            ("/auth/user/changepw", .unary(Auth.userChangePassword)),
            ("/auth/user/grant", .unary(Auth.userGrantRole)),
            ("/auth/user/revoke", .unary(Auth.userRevokeRole)),
            ("/auth/role/add", .unary(Auth.roleAdd)),
            ("/auth/role/get", .unary(Auth.roleGet)),
            ("/auth/role/list", .unary(Auth.roleList)),
            ("/auth/role/delete", .unary(Auth.roleDelete)),
            ("/auth/role/grant", .unary(Auth.roleGrantPermission)),
            ("/auth/role/revoke", .unary(Auth.roleRevokePermission)),
            ("/lock/lock", .unary(Lock.lock)),
            ("/lock/unlock", .unary(Lock.unlock)),
            ("/election/campaign", .unary(Election.campaign)),
            ("/election/proclaim", .unary(Election.proclaim)),
            ("/election/leader", .unary(Election.leader)),
            ("/election/observe", .streaming(Election.observe)),
            ("/election/resign", .unary(Election.resign)),
        ]
        var table: [String: GatewayRoute] = [:]
        table.reserveCapacity(routes.count * 2)
        for (path, route) in routes {
            table["/v3" + path] = route
            table["/v3beta" + path] = route
        }
        return table
    }()

    static let streamingPaths = Set(table.compactMap { path, route in
        if case .streaming = route.call { path } else { nil }
    })
}
