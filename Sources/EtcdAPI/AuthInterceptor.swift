import Auth
import EtcdProto
import EtcdServer
import GRPCWire
import NIOCore
import TransportSecurity

/// Auth at the door of every call: finds who is calling (a `token` or `authorization` metadata
/// token, else with `--client-cert-auth` the client certificate's common name), refuses bad
/// tokens, and checks the calls that need a root user or any authenticated user. Handlers get
/// the caller as the context's ``ServerContext/caller``; key permissions are checked against the
/// request itself (reads when served, writes when applied, watches when created).
///
/// With auth off it costs one lock read per call.
package struct AuthInterceptor: ServerInterceptor {
    /// What a method needs from its caller before its handler runs.
    enum Rule {
        /// Nothing (a login, health checks).
        case open
        /// The handler checks the request's keys (nobody at all is let through to be refused
        /// there with etcd's error).
        case keys
        /// Any user with current credentials.
        case caller
        /// A user holding the root role.
        case root
    }

    let server: EtcdServer
    /// Whether a certificate's common name stands for a user (`--client-cert-auth`).
    let certificateIdentities: Bool
    /// Whether the common name comes from metadata ``forwardedCommonNameKey`` instead of the
    /// connection: only on the gateway's private socket, where the gateway passes on the name
    /// in the certificate its HTTP client presented.
    let commonNameForwarded: Bool

    /// The metadata the gateway passes a verified client certificate's common name in.
    package static let forwardedCommonNameKey = "swift-etcd-gateway-common-name"

    package init(server: EtcdServer, certificateIdentities: Bool, commonNameForwarded: Bool = false) {
        self.server = server
        self.certificateIdentities = certificateIdentities
        self.commonNameForwarded = commonNameForwarded
    }

    package func callStarted(_ method: ServerMethod, context: inout ServerContext) -> CallAdmission {
        guard server.isAuthEnabled else { return .proceed }
        let rule = Self.rules[method.path] ?? .caller
        if case .open = rule { return .proceed }
        if let token = context.metadata("token") ?? context.metadata("authorization") {
            switch server.resolve(token: token) {
            case .identity(let identity):
                context.attachment = identity
                return admission(rule, identity)
            case .invalid:
                return .refuse(GRPCStatus(AuthError.invalidAuthToken))
            case .later:
                let promise = context.eventLoop.makePromise(of: (any Sendable)?.self)
                server.resolveLater(token: token) { [self] result in
                    switch result {
                    case .success(let identity):
                        if case .refuse(let status) = admission(rule, identity) { return promise.fail(status) }
                        promise.succeed(identity)
                    case .failure(let error):
                        promise.fail(GRPCStatus(error))
                    }
                }
                return .wait(promise.futureResult)
            }
        }
        var identity: AuthIdentity?
        if certificateIdentities, let name = commonName(context) {
            identity = server.identity(commonName: name)
            context.attachment = identity
        }
        return admission(rule, identity)
    }

    /// The common name of the caller's verified client certificate, if it presented one.
    private func commonName(_ context: ServerContext) -> String? {
        if commonNameForwarded { return context.metadata(Self.forwardedCommonNameKey) }
        return context.peerCertificate().flatMap(ClientCertificateName.commonName(of:))
    }

    private func admission(_ rule: Rule, _ identity: AuthIdentity?) -> CallAdmission {
        do throws(AuthError) {
            switch rule {
            case .open, .keys: break
            case .caller: try server.requireCaller(identity)
            case .root: try server.requireRoot(identity)
            }
        } catch {
            return .refuse(GRPCStatus(error))
        }
        return .proceed
    }

    /// etcd 3.6's rules, with its later security fixes: member lists, status and leases need an
    /// authenticated user; membership changes and maintenance a root user. Methods not listed
    /// need an authenticated user.
    static let rules: [String: Rule] = {
        var rules: [String: Rule] = [:]
        rules[Grpc_Health_V1_HealthRPCs.check.path] = .open
        rules[Grpc_Health_V1_HealthRPCs.watch.path] = .open
        rules[Etcdserverpb_AuthRPCs.authenticate.path] = .open
        // Themselves, or a role they hold: the handler decides.
        rules[Etcdserverpb_AuthRPCs.userGet.path] = .caller
        rules[Etcdserverpb_AuthRPCs.roleGet.path] = .caller
        for rpc in [
            Etcdserverpb_AuthRPCs.authEnable.path, Etcdserverpb_AuthRPCs.authDisable.path, Etcdserverpb_AuthRPCs.authStatus.path,
            Etcdserverpb_AuthRPCs.userAdd.path, Etcdserverpb_AuthRPCs.userDelete.path, Etcdserverpb_AuthRPCs.userChangePassword.path,
            Etcdserverpb_AuthRPCs.userGrantRole.path, Etcdserverpb_AuthRPCs.userRevokeRole.path, Etcdserverpb_AuthRPCs.userList.path,
            Etcdserverpb_AuthRPCs.roleAdd.path, Etcdserverpb_AuthRPCs.roleDelete.path, Etcdserverpb_AuthRPCs.roleList.path,
            Etcdserverpb_AuthRPCs.roleGrantPermission.path, Etcdserverpb_AuthRPCs.roleRevokePermission.path,
            Etcdserverpb_ClusterRPCs.memberAdd.path, Etcdserverpb_ClusterRPCs.memberRemove.path,
            Etcdserverpb_ClusterRPCs.memberUpdate.path, Etcdserverpb_ClusterRPCs.memberPromote.path,
            Etcdserverpb_MaintenanceRPCs.defragment.path, Etcdserverpb_MaintenanceRPCs.hash.path,
            Etcdserverpb_MaintenanceRPCs.hashKV.path, Etcdserverpb_MaintenanceRPCs.snapshot.path,
            Etcdserverpb_MaintenanceRPCs.moveLeader.path, Etcdserverpb_MaintenanceRPCs.downgrade.path,
        ] {
            rules[rpc] = .root
        }
        for rpc in [
            Etcdserverpb_KVRPCs.range.path, Etcdserverpb_KVRPCs.put.path, Etcdserverpb_KVRPCs.deleteRange.path,
            Etcdserverpb_KVRPCs.txn.path, Etcdserverpb_WatchRPCs.watch.path,
        ] {
            rules[rpc] = .keys
        }
        return rules
    }()
}

extension ServerContext {
    /// Who makes the call, as ``AuthInterceptor`` found out; nil without credentials (or with
    /// auth off).
    var caller: AuthIdentity? { attachment as? AuthIdentity }
}
