extension RaftCore {
    /// Applies a committed membership change; every member applies the same changes in log order.
    mutating func applyConfChange(_ change: ConfChange) throws(ConfChangeError) -> ConfState {
        var changer = ConfChanger(tracker: tracker, lastIndex: log.lastIndex)
        if change.leavesJoint {
            try changer.leaveJoint()
        } else if case let (true, autoLeave) = change.entersJoint {
            try changer.enterJoint(autoLeave: autoLeave, change.changes)
        } else {
            try changer.simple(change.changes)
        }
        return switchToConfig(changer.config, changer.progress)
    }

    /// Whether this node votes in the configuration in force.
    var isVoter: Bool { tracker.config.voters.contains(id) && !isLearner }

    /// A leader removed from (or demoted in) the configuration keeps leading only until a voter
    /// takes over. Stepping down at once could strand the remaining voters: they may not know the
    /// change is committed, and while they still run the joint configuration they need votes from
    /// members that are already gone (etcd leaves this to its server, which stops the removed
    /// member after a delay). Proposals are dropped meanwhile; the hand-off is retried every
    /// election timeout until it succeeds.
    mutating func handOffLeadership() {
        // Recently heard-from voters first, the most up to date first among them; each retry
        // moves on to the next, so a successor that crashed or is cut off cannot stall the group.
        let successors = tracker.sortedIDs
            .filter { $0 != id && tracker.config.voters.contains($0) && tracker.progress[$0]?.isLearner == false }
            .sorted { a, b in
                let (pa, pb) = (tracker.progress[a]!, tracker.progress[b]!)
                if pa.recentActive != pb.recentActive { return pa.recentActive }
                if pa.match != pb.match { return pa.match > pb.match }
                return a < b
            }
        guard !successors.isEmpty else { return }
        let successor = successors[handOffAttempts % successors.count]
        handOffAttempts += 1
        try? stepLeader(Message(type: .transferLeader, from: successor))
    }

    /// Puts a new configuration in force and does what it implies for this node's role.
    @discardableResult
    mutating func switchToConfig(_ config: TrackerConfig, _ progress: [NodeID: Progress]) -> ConfState {
        tracker.setMembers(config, progress)
        let own = progress[id]
        isLearner = own?.isLearner ?? false
        guard role == .leader, !config.voters.incoming.voters.isEmpty else { return config.confState }
        if maybeCommit() {
            // A smaller quorum may commit more now.
            broadcastAppend()
        } else {
            for nodeID in tracker.sortedIDs where nodeID != id {
                maybeSendAppend(to: nodeID, sendIfEmpty: false)
            }
        }
        if leadTransferee != noNode && !tracker.config.voters.contains(leadTransferee) {
            leadTransferee = noNode
        }
        if !isVoter {
            handOffLeadership()
        }
        return config.confState
    }
}
