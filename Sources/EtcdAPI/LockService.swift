import Coordination
import EtcdProto
import EtcdServer
import GRPCWire
import SwiftProtobuf

/// `v3lockpb.Lock`: etcd's mutex recipe run by the member for its caller. `Lock` waits until
/// the lock is held (or the call is cancelled, which removes the caller's key); the key it
/// answers with is released by `Unlock` or when its lease ends.
enum LockService {
    /// The TTL of the lease etcd grants for a lock or campaign asked for without one (the
    /// default TTL of clientv3's sessions). Nobody keeps it alive.
    static let defaultSessionTTL: Int64 = 60

    static func register(_ server: EtcdServer, on router: inout ServerRouter) {
        router.unary(V3lockpb_LockRPCs.lock.path) { (request: V3lockpb_LockRequest, context) async throws -> V3lockpb_LockResponse in
            try await MemberCoordinationStore.serve(server, context) { store in
                let lease = try await request.lease == 0 ? store.grantLease(ttl: defaultSessionTTL) : request.lease
                let lock = try await LockRecipe.lock(request.name, lease: lease, on: store)
                return .with {
                    $0.header = lock.header
                    $0.key = lock.key
                }
            }
        }
        router.unary(V3lockpb_LockRPCs.unlock.path) { (request: V3lockpb_UnlockRequest, context) async throws -> V3lockpb_UnlockResponse in
            try await MemberCoordinationStore.serve(server, context) { store in
                let header = try await LockRecipe.unlock(request.key, on: store)
                return .with { $0.header = header }
            }
        }
    }
}
