import Auth
import Backend
import Dispatch
import EtcdProto
import Foundation
import Lease
import Locking
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
        askLeader(
            until: .now + configuration.requestTimeout, local: { [leaderLeases] in leaderLeases.renew(id, completion: $0) },
            forwarded: .renewLease(id: id), answer: { $0.leaseTTL.map { .success($0) } ?? .failure(.timeout) },
            completion: completion)
    }

    /// `LeaseTimeToLive`: the leader's exact answer (a follower asks it); nil for no such lease.
    package func leaseTimeToLive(_ id: Int64, completion: @escaping @Sendable (Result<LeaseTimeToLive?, EtcdError>) -> Void) {
        askLeader(
            until: .now + configuration.requestTimeout, local: { [leaderLeases] in leaderLeases.timeToLive(id, completion: $0) },
            forwarded: .leaseTimeToLive(id: id), answer: { .success($0.timeToLive) }, completion: completion)
    }

    /// Asks the leader's lessor: this member's while it leads, otherwise the leader's through
    /// the peer connection. While there is no leader, or the leader cannot answer yet (just
    /// elected, it has not applied its first entry; or it has just lost leadership), asks again
    /// every 50 ms until `deadline`, as etcd does: a keep-alive sent during an election waits
    /// for the next leader instead of failing (a refusal would end the client's keep-alive).
    private func askLeader<Answer: Sendable>(
        until deadline: ContinuousClock.Instant,
        local: @escaping @Sendable (@escaping @Sendable (Result<Answer, EtcdError>) -> Void) -> Void,
        forwarded request: PeerRequest, answer: @escaping @Sendable (PeerResponse) -> Result<Answer, EtcdError>,
        completion: @escaping @Sendable (Result<Answer, EtcdError>) -> Void
    ) {
        let settle: @Sendable (Result<Answer, EtcdError>) -> Void = { [self] result in
            guard case .failure(let error) = result, [.notLeader, .noLeader, .timeout].contains(error) else { return completion(result) }
            let retryAt = ContinuousClock.now + .milliseconds(50)
            guard retryAt < deadline else { return completion(.failure(error == .noLeader ? .noLeader : .timeout)) }
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) {
                self.askLeader(until: deadline, local: local, forwarded: request, answer: answer, completion: completion)
            }
        }
        if lessor.isPrimary { return local(settle) }
        guard let leader = leaderID, leader != memberID else { return settle(.failure(.noLeader)) }
        transport.forward(request, to: leader) { result in settle(result.flatMap(answer)) }
    }

    /// `LeaseLeases`: every lease this member knows, by ID.
    package var leaseIDs: [Int64] { lessor.ids }
}

/// The leader's answers about leases, for its own clients and for the followers that forward
/// theirs. Each waits until the leader has applied every entry it has said is committed: a
/// follower may have applied a lease's grant, and answered the client, before the leader
/// applied it, and the client's first keep-alive must not find the lease missing (which would
/// end its session). etcd's leader waits for its applied index in the same way.
struct LeaderLeaseAnswers: Sendable {
    let lessor: Lessor
    let progress: ApplyProgress
    let inbox: MemberInbox
    /// How long to wait for the loop to apply.
    let timeout: Duration

    /// The lease's TTL once renewed, or `lease not found`.
    func renew(_ id: Int64, completion: @escaping @Sendable (Result<Int64, EtcdError>) -> Void) {
        afterApplyingCommitted { [lessor] applied in
            completion(applied.flatMap {
                guard lessor.isPrimary else { return .failure(.notLeader) }
                do {
                    return .success(try lessor.renew(id: id, now: .now))
                } catch {
                    return .failure(.leaseNotFound)
                }
            })
        }
    }

    /// The lease's time to live, nil for no such lease.
    func timeToLive(_ id: Int64, completion: @escaping @Sendable (Result<LeaseTimeToLive?, EtcdError>) -> Void) {
        afterApplyingCommitted { [lessor] applied in
            completion(applied.flatMap {
                guard lessor.isPrimary else { return .failure(.notLeader) }
                return .success(lessor.timeToLive(id: id, now: .now).map {
                    LeaseTimeToLive(grantedTTL: $0.grantedTTL, remainingMilliseconds: Lessor.milliseconds($0.remaining), keys: $0.keys)
                })
            })
        }
    }

    private func afterApplyingCommitted(_ body: @escaping @Sendable (Result<Void, EtcdError>) -> Void) {
        if progress.isCaughtUp { return body(.success(())) }
        let wait = EtcdServer.ReadWaiter(completion: body, deadline: .now + timeout)
        if !inbox.submit({ $0.appliedWaits.append(wait) }) { body(.failure(.stopped)) }
    }
}
