/// Why a membership change could not be applied.
public enum ConfChangeError: Error, Sendable, Hashable, CustomStringConvertible {
    case alreadyJoint
    case notJoint
    case zeroVoterJoint
    case removedAllVoters
    case moreThanOneVoterChanged

    public var description: String {
        switch self {
        case .alreadyJoint: "config is already joint"
        case .notJoint: "can't leave a non-joint config"
        case .zeroVoterJoint: "can't make a zero-voter config joint"
        case .removedAllVoters: "removed all voters"
        case .moreThanOneVoterChanged: "more than one voter changed without entering joint config"
        }
    }
}

/// Computes the configuration and progress map that result from a membership change, without
/// touching the ones in force (so a rejected change leaves nothing half-applied).
struct ConfChanger {
    var config: TrackerConfig
    var progress: [NodeID: Progress]
    /// The leader's last index; new members start probing just after it.
    let lastIndex: UInt64
    let tracker: ProgressTracker

    init(tracker: ProgressTracker, lastIndex: UInt64) {
        self.config = tracker.config
        self.progress = tracker.progress
        self.lastIndex = lastIndex
        self.tracker = tracker
    }

    mutating func enterJoint(autoLeave: Bool, _ changes: [ConfChangeSingle]) throws(ConfChangeError) {
        guard !config.voters.isJoint else { throw .alreadyJoint }
        guard !config.voters.incoming.voters.isEmpty else { throw .zeroVoterJoint }
        config.voters.outgoing = config.voters.incoming
        try apply(changes)
        config.autoLeave = autoLeave
    }

    mutating func leaveJoint() throws(ConfChangeError) {
        guard config.voters.isJoint else { throw .notJoint }
        for id in config.learnersNext {
            config.learners.insert(id)
            progress[id]?.isLearner = true
        }
        config.learnersNext.removeAll()
        for id in config.voters.outgoing.voters
        where !config.voters.incoming.voters.contains(id) && !config.learners.contains(id) {
            progress[id] = nil
        }
        config.voters.outgoing = MajorityConfig()
        config.autoLeave = false
    }

    /// A change of at most one voter, outside joint consensus.
    mutating func simple(_ changes: [ConfChangeSingle]) throws(ConfChangeError) {
        guard !config.voters.isJoint else { throw .alreadyJoint }
        let before = config.voters.incoming.voters
        try apply(changes)
        if before.symmetricDifference(config.voters.incoming.voters).count > 1 {
            throw .moreThanOneVoterChanged
        }
    }

    private mutating func apply(_ changes: [ConfChangeSingle]) throws(ConfChangeError) {
        for change in changes where change.node != noNode {
            switch change.kind {
            case .addNode: makeVoter(change.node)
            case .addLearner: makeLearner(change.node)
            case .removeNode: remove(change.node)
            }
        }
        guard !config.voters.incoming.voters.isEmpty else { throw .removedAllVoters }
    }

    private mutating func makeVoter(_ id: NodeID) {
        guard progress[id] != nil else {
            addProgress(id, isLearner: false)
            return
        }
        progress[id]?.isLearner = false
        config.learners.remove(id)
        config.learnersNext.remove(id)
        config.voters.incoming.voters.insert(id)
    }

    private mutating func makeLearner(_ id: NodeID) {
        guard let existing = progress[id] else {
            addProgress(id, isLearner: true)
            return
        }
        if existing.isLearner { return }
        // Drop it as a voter but keep its progress: it stays a member.
        remove(id)
        progress[id] = existing
        if config.voters.outgoing.voters.contains(id) {
            // Still an outgoing voter: it may only become a learner once the joint state ends.
            config.learnersNext.insert(id)
        } else {
            progress[id]?.isLearner = true
            config.learners.insert(id)
        }
    }

    private mutating func remove(_ id: NodeID) {
        guard progress[id] != nil else { return }
        config.voters.incoming.voters.remove(id)
        config.learners.remove(id)
        config.learnersNext.remove(id)
        if !config.voters.outgoing.voters.contains(id) {
            progress[id] = nil
        }
    }

    private mutating func addProgress(_ id: NodeID, isLearner: Bool) {
        var pr = tracker.makeProgress(next: max(lastIndex, 1), isLearner: isLearner)
        // A new member counts as active so check-quorum does not depose the leader before it answers.
        pr.recentActive = true
        progress[id] = pr
        if isLearner {
            config.learners.insert(id)
        } else {
            config.voters.incoming.voters.insert(id)
        }
    }

    /// Builds the configuration a `ConfState` describes, replaying it as a sequence of changes.
    static func restore(_ state: ConfState, tracker: ProgressTracker, lastIndex: UInt64) throws(ConfChangeError)
        -> ConfChanger
    {
        var changer = ConfChanger(tracker: tracker, lastIndex: lastIndex)
        var incoming = state.votersOutgoing.map { ConfChangeSingle(.removeNode, $0) }
        incoming += state.voters.map { ConfChangeSingle(.addNode, $0) }
        incoming += state.learners.map { ConfChangeSingle(.addLearner, $0) }
        incoming += state.learnersNext.map { ConfChangeSingle(.addLearner, $0) }
        if state.votersOutgoing.isEmpty {
            for change in incoming {
                // Restoring an empty membership is allowed (a node waiting to be added).
                // (its edits stay applied even though the check throws).
                do { try changer.simple([change]) } catch .removedAllVoters { continue }
            }
        } else {
            for id in state.votersOutgoing { try changer.simple([ConfChangeSingle(.addNode, id)]) }
            try changer.enterJoint(autoLeave: state.autoLeave, incoming)
        }
        return changer
    }
}
