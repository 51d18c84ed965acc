/// The membership in force: voters (joint or not), learners, and learners waiting for the joint state to end.
struct TrackerConfig: Hashable {
    var voters = JointConfig()
    var autoLeave = false
    var learners: Set<NodeID> = []
    /// Outgoing voters that become learners when the joint configuration is left.
    var learnersNext: Set<NodeID> = []

    var confState: ConfState {
        ConfState(
            voters: voters.incoming.voters.sorted(),
            votersOutgoing: voters.outgoing.voters.sorted(),
            learners: learners.sorted(),
            learnersNext: learnersNext.sorted(),
            autoLeave: autoLeave
        )
    }
}

/// The leader's bookkeeping: the configuration, each member's progress, and votes in an election.
struct ProgressTracker {
    private(set) var config = TrackerConfig()
    /// Entries may be updated in place; members are added and removed only through ``setMembers(_:_:)``.
    var progress: [NodeID: Progress] = [:]
    var votes: [NodeID: Bool] = [:]
    let maxInflight: Int
    let maxInflightBytes: UInt64

    init(maxInflight: Int, maxInflightBytes: UInt64) {
        self.maxInflight = maxInflight
        self.maxInflightBytes = maxInflightBytes
    }

    /// The highest index a quorum of voters has stored.
    func committed() -> UInt64 {
        let progress = self.progress
        return config.voters.committedIndex { progress[$0]?.match }
    }

    /// Whether `id` is the only voter (so, leading, it commits and confirms reads alone).
    func isSingleton(_ id: NodeID) -> Bool {
        !config.voters.isJoint && config.voters.incoming.voters.count == 1 && config.voters.incoming.voters.contains(id)
    }

    /// Every member with a progress entry, in ascending ID order so that messages go out
    /// deterministically; kept in step with `progress` by ``setMembers(_:_:)``.
    private(set) var sortedIDs: [NodeID] = []

    /// Puts a configuration and its progress map in force.
    mutating func setMembers(_ config: TrackerConfig, _ progress: [NodeID: Progress]) {
        self.config = config
        self.progress = progress
        sortedIDs = progress.keys.sorted()
    }

    /// Whether a quorum of voters was heard from recently; used by check-quorum and lease reads.
    func quorumActive() -> Bool {
        var votes: [NodeID: Bool] = [:]
        for (id, pr) in progress where !pr.isLearner {
            votes[id] = pr.recentActive
        }
        return config.voters.voteResult(votes) == .won
    }

    mutating func resetVotes() {
        votes.removeAll(keepingCapacity: true)
    }

    mutating func recordVote(_ id: NodeID, granted: Bool) {
        if votes[id] == nil { votes[id] = granted }
    }

    func tallyVotes() -> (granted: Int, rejected: Int, result: VoteResult) {
        var granted = 0
        var rejected = 0
        for (id, pr) in progress where !pr.isLearner {
            switch votes[id] {
            case .some(true): granted += 1
            case .some(false): rejected += 1
            case .none: break
            }
        }
        return (granted, rejected, config.voters.voteResult(votes))
    }

    func makeProgress(next: UInt64, isLearner: Bool) -> Progress {
        Progress(
            next: next,
            isLearner: isLearner,
            inflightCapacity: maxInflight,
            inflightMaxBytes: maxInflightBytes
        )
    }
}
