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

/// Membership and leadership: member add/remove/update/promote, move-leader, who leads.
extension EtcdServer {
    /// `Maintenance.MoveLeader`: hands leadership to voting member `target`; `completion` runs
    /// once `target` leads, or with etcd's error when this member does not lead, `target` cannot
    /// lead, or the transfer takes longer than the request timeout.
    package func moveLeader(to target: UInt64, completion: @escaping @Sendable (Result<Void, EtcdError>) -> Void) {
        let transfer = LeaderTransfer(target: target, completion: completion, deadline: .now + configuration.requestTimeout)
        if !inbox.submit({ $0.transfers.append(transfer) }) { completion(.failure(.stopped)) }
    }

    /// Whether this member is a learner (it refuses writes and linearizable reads, as etcd's do).
    package var isLearner: Bool { published.withLock { $0.membership[memberID]?.isLearner ?? false } }

    /// Changes the membership (`MemberAdd`, `MemberRemove`, `MemberUpdate`, `MemberPromote`);
    /// `completion` runs once the change is applied here, or with etcd's error.
    func changeMembership(_ request: MembershipRequest, completion: @escaping @Sendable (MembershipResult) -> Void) {
        let proposal = MembershipProposal(request: request, completion: completion, deadline: .now + configuration.requestTimeout)
        if !inbox.submit({ $0.membershipChanges.append(proposal) }) { completion(.failure(.stopped)) }
    }

    package func addMember(peerURLs: [String], isLearner: Bool, completion: @escaping @Sendable (MembershipResult) -> Void) {
        changeMembership(.add(peerURLs: peerURLs, isLearner: isLearner), completion: completion)
    }

    package func removeMember(_ id: UInt64, completion: @escaping @Sendable (MembershipResult) -> Void) {
        changeMembership(.remove(id: id), completion: completion)
    }

    package func updateMember(_ id: UInt64, peerURLs: [String], completion: @escaping @Sendable (MembershipResult) -> Void) {
        changeMembership(.update(id: id, peerURLs: peerURLs), completion: completion)
    }

    package func promoteMember(_ id: UInt64, completion: @escaping @Sendable (MembershipResult) -> Void) {
        changeMembership(.promote(id: id), completion: completion)
    }


    /// The member this one knows as leader; nil while there is none.
    package var leaderID: UInt64? {
        let leader = published.withLock { $0.raft.leader }
        return leader == noNode ? nil : leader
    }

    /// The members as this member has applied them.
    package var members: [Member] { published.withLock { $0.membership.members } }
}
