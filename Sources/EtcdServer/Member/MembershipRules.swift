import Raft

/// etcd's rules for membership changes: what a `MemberAdd`, `MemberRemove`, `MemberUpdate` or
/// `MemberPromote` must satisfy against the applied membership before it is proposed, and which
/// committed changes Raft's configuration makes stale when they are applied.
///
/// Pure: ``MemberLoop`` supplies the membership, which peers are connected and how far a
/// learner got, and proposes (or refuses with the error) as told.
struct MembershipRules {
    var membership: Membership
    var localID: NodeID
    /// etcd's `--strict-reconfig-check`.
    var strictReconfigCheck: Bool
    /// etcd's `--max-learners` (1 by default): learners at most at once.
    var maxLearners = 1
    /// Whether this member is connected to member `id` (it counts as started).
    var isConnected: (NodeID) -> Bool

    /// The member a `MemberAdd` would add under `newID`, or etcd's reason to refuse it.
    func add(peerURLs: [String], isLearner: Bool, newID: UInt64) -> Result<Member, EtcdError> {
        if let error = badOrUsed(peerURLs, except: nil) { return .failure(error) }
        if isLearner {
            guard membership.members.filter(\.isLearner).count < maxLearners else { return .failure(.tooManyLearners) }
        } else if strictReconfigCheck && !enoughStartedVoters(adding: 1) {
            return .failure(.notEnoughStartedMembers)
        }
        guard membership[newID] == nil, !membership.removed.contains(newID) else { return .failure(.memberExists) }
        return .success(Member(id: newID, name: "", peerURLs: peerURLs.sorted(), clientURLs: [], isLearner: isLearner))
    }

    /// The member a `MemberRemove` would remove, or etcd's reason to refuse it.
    func remove(_ id: UInt64) -> Result<Member, EtcdError> {
        guard let member = membership[id] else { return .failure(.memberNotFound) }
        if strictReconfigCheck && !member.isLearner && !enoughStartedVoters(removing: id) {
            return .failure(.notEnoughStartedMembers)
        }
        return .success(member)
    }

    /// etcd's reason to refuse a `MemberUpdate` giving member `id` these peer URLs, if any.
    func update(_ id: UInt64, peerURLs: [String]) -> EtcdError? {
        guard membership[id] != nil else { return .memberNotFound }
        return badOrUsed(peerURLs, except: id)
    }

    /// The learner a `MemberPromote` names, or etcd's reason to refuse it; whether it caught up
    /// only the leader can tell (``promotion(of:caughtUp:)``).
    func learner(_ id: UInt64) -> Result<Member, EtcdError> {
        guard let member = membership[id] else { return .failure(.memberNotFound) }
        guard member.isLearner else { return .failure(.memberNotLearner) }
        return .success(member)
    }

    /// On the leader: etcd's reason to refuse promoting a learner, if any.
    func promotion(caughtUp: Bool) -> EtcdError? {
        guard caughtUp else { return .learnerNotReady }
        if strictReconfigCheck && !enoughStartedVoters(adding: 1) { return .notEnoughStartedMembers }
        return nil
    }

    /// etcd's readiness rule: the learner has acknowledged at least 90% of what the leader has.
    static func isCaughtUp(learnerMatch: UInt64, leaderMatch: UInt64) -> Bool {
        Double(learnerMatch) >= Double(leaderMatch) * 0.9
    }

    /// Whether enough voters would be started (connected, or this member) after the change to
    /// keep a quorum: etcd's `--strict-reconfig-check`.
    func enoughStartedVoters(adding added: Int = 0, removing removed: NodeID? = nil) -> Bool {
        let voters = membership.members.filter { !$0.isLearner && $0.id != removed }
        let started = voters.filter { $0.id == localID || isConnected($0.id) }.count
        // etcd's exception: a one-member cluster (after --force-new-cluster or a restore) may
        // add a second voter, which cannot have started before it is added.
        if added == 1 && voters.count == 1 && started == 1 { return true }
        return started >= (voters.count + added) / 2 + 1
    }

    /// Why Raft's configuration `confState` makes a committed `change` stale, if it does:
    /// adding a member twice, a learner past `maxLearners`, removing one that is gone. Decided
    /// from the configuration (and `--max-learners`, which every member must be given alike,
    /// as in etcd), so every member decides alike.
    static func staleness(of change: ConfChange, in confState: ConfState, maxLearners: Int = 1) -> EtcdError? {
        let voters = Set(confState.voters + confState.votersOutgoing)
        let learners = Set(confState.learners + confState.learnersNext)
        for single in change.changes {
            switch single.kind {
            case .addNode where voters.contains(single.node): return .memberExists
            case .addLearner where voters.contains(single.node) || learners.contains(single.node): return .memberExists
            case .addLearner where learners.count >= maxLearners: return .tooManyLearners
            case .removeNode where !voters.contains(single.node) && !learners.contains(single.node): return .memberNotFound
            default: continue
            }
        }
        return nil
    }

    /// Peer URLs that are empty or malformed, or that a member other than `except` uses.
    private func badOrUsed(_ peerURLs: [String], except: UInt64?) -> EtcdError? {
        guard !peerURLs.isEmpty, peerURLs.allSatisfy({ PeerURL($0) != nil }) else { return .memberBadURLs }
        let inUse = Set(membership.members.filter { $0.id != except }.flatMap(\.peerURLs))
        guard peerURLs.allSatisfy({ !inUse.contains($0) }) else { return .peerURLExists }
        return nil
    }
}
