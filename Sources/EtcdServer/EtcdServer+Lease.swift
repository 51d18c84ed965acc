import Auth
import Backend
import Dispatch
import EtcdProto
import Foundation
import Lease
import Logging
import MVCC
import NIOCore
import NIOPosix
import Raft
import Synchronization
import WAL

/// Leases: grants through Raft, keep-alives and time-to-live answered by the leader.
extension EtcdServer {
    // MARK: Leases

    /// Restores the lessor from `backend`: its leases, and the keys whose current record
    /// names one.
    static func restoreLeases(_ lessor: Lessor, from backend: SQLiteBackend, store: KeyValueStore) throws {
        let attachments = try backend.recordsWithLeases()
            .filter { store.currentRevision(of: $0.key) == $0.revision }
            .map { (key: $0.key, lease: $0.lease) }
        lessor.restore(try backend.leases(), attachments: attachments, now: .now)
    }

    /// `LeaseGrant`: etcd refuses TTLs above its maximum before proposing; an ID of 0 gets one
    /// of this member's.
    package func grantLease(
        _ request: Etcdserverpb_LeaseGrantRequest, by caller: AuthIdentity?,
        completion: @escaping @Sendable (Result<WriteResponse, EtcdError>) -> Void
    ) {
        guard request.ttl <= Lessor.maxTTL else { return completion(.failure(.leaseTTLTooLarge)) }
        var request = request
        if request.id == 0 {
            request.id = nextLeaseIDs.withLock { next in
                defer { next &+= 1 }
                return Int64(bitPattern: next & UInt64(Int64.max))
            }
        }
        propose(.leaseGrant(request), by: caller, completion: completion)
    }

    /// `LeaseKeepAlive` for one lease: renewed by the leader (a follower forwards it); the
    /// lease's TTL, or `lease not found`.
    package func renewLease(_ id: Int64, completion: @escaping @Sendable (Result<Int64, EtcdError>) -> Void) {
        if lessor.isPrimary { return completion(Self.renew(id, on: lessor)) }
        guard let leader = leaderID else { return completion(.failure(.noLeader)) }
        transport.forward(.renewLease(id: id), to: leader) { result in
            completion(result.flatMap { response in response.leaseTTL.map { .success($0) } ?? .failure(.timeout) })
        }
    }

    /// `LeaseTimeToLive`: the leader's exact answer (a follower asks it); nil for no such lease.
    package func leaseTimeToLive(_ id: Int64, completion: @escaping @Sendable (Result<LeaseTimeToLive?, EtcdError>) -> Void) {
        if lessor.isPrimary { return completion(Self.timeToLive(id, on: lessor)) }
        guard let leader = leaderID else { return completion(.failure(.noLeader)) }
        transport.forward(.leaseTimeToLive(id: id), to: leader) { result in completion(result.map(\.timeToLive)) }
    }

    /// `LeaseLeases`: every lease this member knows, by ID.
    package var leaseIDs: [Int64] { lessor.ids }

    static func renew(_ id: Int64, on lessor: Lessor) -> Result<Int64, EtcdError> {
        guard lessor.isPrimary else { return .failure(.notLeader) }
        do {
            return .success(try lessor.renew(id: id, now: .now))
        } catch {
            return .failure(.leaseNotFound)
        }
    }

    static func timeToLive(_ id: Int64, on lessor: Lessor) -> Result<LeaseTimeToLive?, EtcdError> {
        guard lessor.isPrimary else { return .failure(.notLeader) }
        return .success(lessor.timeToLive(id: id, now: .now).map {
            LeaseTimeToLive(grantedTTL: $0.grantedTTL, remainingMilliseconds: Lessor.milliseconds($0.remaining), keys: $0.keys)
        })
    }
}
