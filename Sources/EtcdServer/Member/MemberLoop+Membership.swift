import Dispatch
import EtcdProto
import Foundation
import Lease
import Logging
import MVCC
import Raft
import WAL

/// Membership: changes applied from the log, and membership requests checked and proposed.
extension MemberLoop {
    /// Applies a committed membership change to Raft and, unless `replaying` an entry the
    /// backend already holds (after a snapshot from the leader: the stored membership has it),
    /// to the member list. A change Raft's configuration says is stale (adding a member twice,
    /// removing one that is gone, a second learner) is skipped, decided from the configuration
    /// alone so every member decides alike, replaying or not; its client gets etcd's error.
    func applyMembershipChange(_ entry: Entry, replaying: Bool) {
        guard let change = ConfChange(encoded: entry.data) else {
            EtcdServer.fatal("committed membership change \(entry.index) does not decode", ConfigurationError("bad encoding"))
        }
        let context = try? MembershipChangeContext(encoded: change.context)
        if let refusal = MembershipRules.staleness(of: change, in: confState, maxLearners: configuration.maxLearners) {
            if !replaying, let context, context.proposer == localID, let waiter = proposals.endedMembershipChange(context.requestID) {
                waiter.completion(.failure(refusal))
            }
            return
        }
        do {
            confState = try node.applyConfChange(change)
        } catch {
            logger.warning("ignored a membership change that cannot apply", metadata: ["error": "\(error)"])
            return
        }
        guard !replaying else { return }
        membershipChanged = true
        // Leaving a joint configuration carries no member.
        guard let context else { return }
        var member = context.member
        for single in change.changes {
            switch single.kind {
            case .addNode where membership[single.node] != nil:
                membership.update(single.node) { $0.isLearner = false }
                member = membership[single.node]!
                logger.info("promoted learner to voting member", metadata: ["member-id": "\(hex(single.node))"])
            case .addNode, .addLearner:
                membership.add(member)
                logger.info("added member", metadata: [
                    "member-id": "\(hex(member.id))", "peer-urls": "\(member.peerURLs)", "is-learner": "\(member.isLearner)",
                ])
            case .removeNode:
                member = membership[single.node] ?? member
                membership.remove(single.node)
                logger.info("removed member", metadata: ["member-id": "\(hex(single.node))"])
            }
        }
        if context.proposer == localID, let waiter = proposals.endedMembershipChange(context.requestID) {
            let result: EtcdServer.MembershipResult = .success((member, membership.members))
            pendingMembershipCompletions.append({ waiter.completion(result) })
        }
    }

    func applyAttributesUpdate(_ update: MemberAttributesUpdate) {
        guard membership[update.id] != nil else { return }
        membership.update(update.id) { member in
            if let name = update.name { member.name = name }
            if let clientURLs = update.clientURLs { member.clientURLs = clientURLs }
            if let peerURLs = update.peerURLs { member.peerURLs = peerURLs }
        }
        membershipChanged = true
        if update.proposer == localID {
            if publishing?.id == update.requestID {
                publishing = nil
                publishedSinceStart = true
                // Ready once the batch holding it is committed, as the other answers are.
                pendingMembershipCompletions.append { [readiness] in readiness.markReady() }
            }
            if let waiter = proposals.endedMembershipChange(update.requestID) {
                let result: EtcdServer.MembershipResult = .success((membership[update.id]!, membership.members))
                pendingMembershipCompletions.append({ waiter.completion(result) })
            }
        }
    }

    /// After a batch that changed the membership is committed: peers, what requests see,
    /// answers to the clients that asked, and stopping if this member was removed.
    func membershipApplied() {
        membershipChanged = false
        transport.setPeers(membership.peers)
        published.publish(membership: membership)
        let completions = pendingMembershipCompletions
        pendingMembershipCompletions = []
        for complete in completions { complete() }
        if membership.removed.contains(localID) && !removedFromCluster {
            removedFromCluster = true
            logger.warning("the member has been permanently removed from the cluster; stopping", metadata: [
                "local-member-id": "\(hex(localID))",
            ])
            configuration.onRemovedFromCluster?()
        }
    }

    // MARK: Membership requests

    var membershipRules: MembershipRules {
        MembershipRules(
            membership: membership, localID: localID, strictReconfigCheck: configuration.strictReconfigCheck,
            maxLearners: configuration.maxLearners, isConnected: transport.isConnected)
    }

    /// Checks a membership request against the applied membership and proposes it.
    func changeMembership(_ proposal: EtcdServer.MembershipProposal) {
        let rules = membershipRules
        switch proposal.request {
        case .add(let peerURLs, let isLearner):
            let newID = ClusterConfiguration.memberID(peerURLs: peerURLs, token: configuration.initialClusterToken, addedAt: Date())
            propose(rules.add(peerURLs: peerURLs, isLearner: isLearner, newID: newID), as: isLearner ? .addLearner : .addNode, proposal)
        case .remove(let memberID):
            propose(rules.remove(memberID), as: .removeNode, proposal)
        case .update(let memberID, let peerURLs):
            if let error = rules.update(memberID, peerURLs: peerURLs) { return proposal.completion(.failure(error)) }
            let id = proposals.waitForMembershipChange(proposal.completion, deadline: proposal.deadline)
            let update = MemberAttributesUpdate(proposer: localID, requestID: id, id: memberID, peerURLs: peerURLs.sorted())
            do {
                try node.propose(EntryEnvelope.encode(update))
            } catch {
                proposals.endedMembershipChange(id)?.completion(.failure(soft.leader == noNode ? .noLeader : .leaderChanged))
            }
        case .promote(let memberID):
            var checked = rules.learner(memberID)
            if case .success = checked {
                guard soft.role == .leader else {
                    // Only the leader knows how far the learner got; a forwarded request never bounces.
                    guard !proposal.forwarded, soft.leader != noNode else {
                        return proposal.completion(.failure(proposal.forwarded ? .notLeader : .noLeader))
                    }
                    return transport.forwardPromotion(of: memberID, to: soft.leader, completion: proposal.completion)
                }
                if let error = rules.promotion(caughtUp: isCaughtUp(memberID)) { checked = .failure(error) }
            }
            propose(checked, as: .addNode, proposal)
        }
    }

    /// Proposes the change `kind` of `member`, or fails `proposal` with the rules' refusal.
    func propose(
        _ checked: Result<Member, EtcdError>, as kind: ConfChangeSingle.Kind, _ proposal: EtcdServer.MembershipProposal
    ) {
        let member: Member
        switch checked {
        case .success(let checkedMember): member = checkedMember
        case .failure(let error): return proposal.completion(.failure(error))
        }
        let id = proposals.waitForMembershipChange(proposal.completion, deadline: proposal.deadline)
        let context = MembershipChangeContext(proposer: localID, requestID: id, member: member)
        do {
            try node.proposeConfChange(ConfChange(changes: [ConfChangeSingle(kind, member.id)], context: context.encoded()))
        } catch {
            proposals.endedMembershipChange(id)?.completion(.failure(soft.leader == noNode ? .noLeader : .leaderChanged))
        }
    }

    /// Whether `learner` has acknowledged enough of this leader's log to be promoted.
    func isCaughtUp(_ learner: NodeID) -> Bool {
        let progress = node.status().progress
        guard let own = progress[localID]?.match, let theirs = progress[learner]?.match else { return false }
        return MembershipRules.isCaughtUp(learnerMatch: theirs, leaderMatch: own)
    }

    /// Beyond etcd (`--auto-promote-learners`): the leader promotes a learner once it is caught up.
    func promoteCaughtUpLearners(_ now: ContinuousClock.Instant) {
        guard soft.role == .leader, !proposals.hasMembershipChangeInFlight else { return }
        for learner in membership.members where learner.isLearner && isCaughtUp(learner.id) {
            let proposal = EtcdServer.MembershipProposal(
                request: .promote(id: learner.id), completion: { _ in }, deadline: now + configuration.requestTimeout)
            logger.info("promoting a learner that caught up", metadata: ["member-id": "\(hex(learner.id))"])
            changeMembership(proposal)
            return
        }
    }
}
