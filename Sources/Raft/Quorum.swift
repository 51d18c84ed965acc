/// The outcome of counting votes.
public enum VoteResult: Sendable, Hashable {
    /// Not decided yet: enough voters have not answered.
    case pending
    case lost
    case won
}

/// A set of voters deciding by simple majority.
struct MajorityConfig: Hashable {
    var voters: Set<NodeID>

    init(_ voters: some Sequence<NodeID> = []) {
        self.voters = Set(voters)
    }

    /// The highest index acknowledged by a majority. An empty configuration commits everything,
    /// so that it never holds back the other half of a joint configuration.
    func committedIndex(_ acked: (NodeID) -> UInt64?) -> UInt64 {
        let n = voters.count
        guard n > 0 else { return .max }
        // Small clusters are the rule: a fixed-size insertion sort avoids a heap allocation per call.
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: n) { buffer in
            var count = 0
            for id in voters {
                let value = acked(id) ?? 0
                var i = count
                while i > 0 && buffer[i - 1] > value {
                    buffer[i] = buffer[i - 1]
                    i -= 1
                }
                buffer[i] = value
                count += 1
            }
            // Sorted ascending: the value at n - (n/2 + 1) is acknowledged by n/2 + 1 voters.
            return buffer[n - (n / 2 + 1)]
        }
    }

    func voteResult(_ votes: [NodeID: Bool]) -> VoteResult {
        guard !voters.isEmpty else { return .won }
        var granted = 0
        var missing = 0
        for id in voters {
            switch votes[id] {
            case .some(true): granted += 1
            case .some(false): break
            case .none: missing += 1
            }
        }
        let quorum = voters.count / 2 + 1
        if granted >= quorum { return .won }
        if granted + missing >= quorum { return .pending }
        return .lost
    }
}

/// The voter configuration: one majority, or two during joint consensus where both must agree.
struct JointConfig: Hashable {
    var incoming = MajorityConfig()
    /// Empty unless in a joint configuration.
    var outgoing = MajorityConfig()

    var isJoint: Bool { !outgoing.voters.isEmpty }

    var allVoters: Set<NodeID> { incoming.voters.union(outgoing.voters) }

    func contains(_ id: NodeID) -> Bool {
        incoming.voters.contains(id) || outgoing.voters.contains(id)
    }

    func committedIndex(_ acked: (NodeID) -> UInt64?) -> UInt64 {
        min(incoming.committedIndex(acked), outgoing.committedIndex(acked))
    }

    func voteResult(_ votes: [NodeID: Bool]) -> VoteResult {
        let first = incoming.voteResult(votes)
        let second = outgoing.voteResult(votes)
        if first == second { return first }
        if first == .lost || second == .lost { return .lost }
        return .pending
    }
}
