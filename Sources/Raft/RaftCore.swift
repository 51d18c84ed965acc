/// The Raft state machine of one node: roles, terms, votes, timers and message handling.
///
/// Pure: it reads storage, but never writes it, and it does no I/O, reads no clock and starts no
/// thread. ``RaftNode`` wraps it with the ready/advance protocol the application drives.
struct RaftCore {
    let id: NodeID
    var term: UInt64 = 0
    var vote: NodeID = noNode
    var log: RaftLog
    var tracker: ProgressTracker
    var role: StateRole = .follower
    /// Whether this node is a learner in the configuration in force.
    var isLearner = false
    var lead: NodeID = noNode
    /// The node leadership is being handed to, while a transfer is in progress.
    var leadTransferee: NodeID = noNode
    /// The log index of the latest membership change proposed; a new one waits until it is applied.
    var pendingConfIndex: UInt64 = 0
    /// Hand-offs tried by a leader that is no longer a voter (see ``handOffLeadership()``).
    var handOffAttempts = 0
    /// Payload bytes proposed by this leader and not yet committed.
    var uncommittedSize: UInt64 = 0
    var readOnly: ReadOnlyRequests
    /// Read requests that arrived before this leader committed an entry of its own term.
    var pendingReadIndexMessages: [Message] = []
    var readStates: [ReadState] = []

    /// Messages that may go out at once.
    var messages: [Message] = []
    /// Messages that may go out only once this node's entries and hard state are durable.
    var messagesAfterPersist: [Message] = []
    /// Messages to this node itself (its own vote), delivered once its state is durable.
    var selfMessagesAfterPersist: [Message] = []

    var electionElapsed = 0
    var heartbeatElapsed = 0
    let checkQuorum: Bool
    let preVote: Bool
    let heartbeatTimeout: Int
    let electionTimeout: Int
    var randomizedElectionTimeout = 0
    let disableProposalForwarding: Bool
    let maxMessageSize: UInt64
    let maxUncommittedSize: UInt64
    var random: SplitMix64

    init(config: RaftConfig) throws(RaftConfigError) {
        try config.validate()
        id = config.id
        log = RaftLog(storage: config.storage, maxApplyingSize: config.maxCommittedSizePerReady)
        tracker = ProgressTracker(maxInflight: config.maxInflightMessages, maxInflightBytes: config.maxInflightBytes)
        readOnly = ReadOnlyRequests(option: config.readOnlyOption)
        checkQuorum = config.checkQuorum
        preVote = config.preVote
        heartbeatTimeout = config.heartbeatTick
        electionTimeout = config.electionTick
        disableProposalForwarding = config.disableProposalForwarding
        maxMessageSize = config.maxSizePerMessage
        maxUncommittedSize = config.maxUncommittedEntriesSize == 0 ? .max : config.maxUncommittedEntriesSize
        random = SplitMix64(seed: config.randomSeed == 0 ? config.id &* 0x2545_F491_4F6C_DD1D : config.randomSeed)

        let hardState: HardState
        let confState: ConfState
        do {
            (hardState, confState) = try config.storage.initialState()
        } catch {
            throw .invalid("storage has no initial state: \(error)")
        }
        let changer: ConfChanger
        do {
            changer = try ConfChanger.restore(confState, tracker: tracker, lastIndex: log.lastIndex)
        } catch {
            throw .invalid("storage holds an impossible membership: \(error)")
        }
        switchToConfig(changer.config, changer.progress)
        if !hardState.isEmpty {
            guard hardState.commit >= log.committed, hardState.commit <= log.lastIndex else {
                throw .invalid("commit \(hardState.commit) is out of range [\(log.committed), \(log.lastIndex)]")
            }
            log.committed = hardState.commit
            term = hardState.term
            vote = hardState.vote
        }
        if config.applied > 0 {
            guard config.applied <= log.committed, config.applied >= log.applied else {
                throw .invalid("applied \(config.applied) is out of range [\(log.applied), \(log.committed)]")
            }
            log.applied(to: config.applied)
        }
        becomeFollower(term: term, leader: noNode)
    }

    var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    var softState: SoftState { SoftState(leader: lead, role: role) }

    // MARK: - Sending

    mutating func send(_ message: Message) {
        var m = message
        // Forwarded messages keep their origin (a transfer names its transferee there).
        if m.from == noNode { m.from = id }
        switch m.type {
        case .vote, .voteResponse, .preVote, .preVoteResponse:
            // Votes carry the term of the election they are about, which may not be ours.
            precondition(m.term != 0, "term should be set when sending \(m.type)")
        case .propose, .readIndex:
            // Forwarded requests act like local ones at the leader: they carry no term.
            precondition(m.term == 0, "term should not be set when sending \(m.type)")
        default:
            precondition(m.term == 0, "term should not be set when sending \(m.type)")
            m.term = term
        }
        if m.to == id {
            selfMessagesAfterPersist.append(m)
        } else if m.type.mustFollowPersistence {
            messagesAfterPersist.append(m)
        } else {
            messages.append(m)
        }
    }

    // MARK: - Roles

    mutating func reset(term newTerm: UInt64) {
        if term != newTerm {
            term = newTerm
            vote = noNode
        }
        lead = noNode
        electionElapsed = 0
        heartbeatElapsed = 0
        randomizedElectionTimeout = electionTimeout + Int(random.next() % UInt64(electionTimeout))
        leadTransferee = noNode
        tracker.resetVotes()
        let next = log.lastIndex + 1
        let persisted = log.unstable.snapshot == nil ? log.unstable.offset - 1 : 0
        for nodeID in tracker.progress.keys {
            var pr = tracker.makeProgress(next: next, isLearner: tracker.progress[nodeID]!.isLearner)
            if nodeID == id {
                // Only what this node has persisted counts toward its own acknowledgement.
                pr.match = min(persisted, log.lastIndex)
            }
            tracker.progress[nodeID] = pr
        }
        pendingConfIndex = 0
        uncommittedSize = 0
        handOffAttempts = 0
        readOnly.reset()
    }

    mutating func becomeFollower(term newTerm: UInt64, leader: NodeID) {
        reset(term: newTerm)
        lead = leader
        role = .follower
    }

    mutating func becomeCandidate() {
        precondition(role != .leader, "invalid transition [leader -> candidate]")
        reset(term: term + 1)
        vote = id
        role = .candidate
    }

    mutating func becomePreCandidate() {
        precondition(role != .leader, "invalid transition [leader -> pre-candidate]")
        // A pre-candidate keeps its term and vote: it only asks whether it could win.
        tracker.resetVotes()
        lead = noNode
        role = .preCandidate
    }

    mutating func becomeLeader() {
        precondition(role != .follower, "invalid transition [follower -> leader]")
        reset(term: term)
        lead = id
        role = .leader
        tracker.progress[id]?.becomeReplicate()
        tracker.progress[id]?.recentActive = true
        // Any entry after the last one may be a membership change we do not know about yet.
        pendingConfIndex = log.lastIndex
        // The empty entry of a new term lets the leader commit (and learn the commit index of) its predecessors' entries.
        let appended = appendEntries([Entry(term: 0, index: 0)])
        precondition(appended, "empty entry was dropped")
    }

    /// Whether this node may campaign: a voter, with no snapshot waiting to be persisted.
    var isPromotable: Bool {
        guard let pr = tracker.progress[id] else { return false }
        return !pr.isLearner && log.unstable.snapshot == nil
    }

    // MARK: - Ticks

    mutating func tick() {
        if role == .leader {
            tickHeartbeat()
        } else {
            tickElection()
        }
    }

    private var pastElectionTimeout: Bool { electionElapsed >= randomizedElectionTimeout }

    private mutating func tickElection() {
        electionElapsed += 1
        if isPromotable && pastElectionTimeout {
            electionElapsed = 0
            try? step(Message(type: .hup, from: id))
        }
    }

    private mutating func tickHeartbeat() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= electionTimeout {
            electionElapsed = 0
            if checkQuorum {
                try? step(Message(type: .checkQuorum, from: id))
            }
            // A transfer that did not finish within an election timeout is abandoned.
            if role == .leader && leadTransferee != noNode {
                leadTransferee = noNode
            }
            if role == .leader && !isVoter {
                handOffLeadership()
            }
            maybeLeaveJointConfiguration()
        }
        guard role == .leader else { return }
        if heartbeatElapsed >= heartbeatTimeout {
            heartbeatElapsed = 0
            try? step(Message(type: .beat, from: id))
        }
    }

    // MARK: - Stepping

    /// Handles one message from the network or from this node itself.
    mutating func step(_ m: Message) throws(RaftError) {
        if m.term == 0 {
            // Local message.
        } else if m.term > term {
            if m.type == .vote || m.type == .preVote {
                let forced = m.context == campaignTransferContext
                let inLease = checkQuorum && lead != noNode && electionElapsed < electionTimeout
                // Within a leader lease, ignore disruptive candidates (thesis §4.2.3) unless a transfer sent them.
                if !forced && inLease { return }
            }
            switch m.type {
            case .preVote:
                // Never change our term for a pre-vote.
                break
            case .preVoteResponse where !m.reject:
                // The term is taken up once the pre-election is won.
                break
            case .append, .heartbeat, .snapshot:
                becomeFollower(term: m.term, leader: m.from)
            default:
                becomeFollower(term: m.term, leader: noNode)
            }
        } else if m.term < term {
            if (checkQuorum || preVote) && (m.type == .heartbeat || m.type == .append) {
                // A stale leader (cut off, then back) learns our term from this and steps down; without
                // it, a node that lost its term to pre-vote could never disrupt the stale leader.
                send(Message(type: .appendResponse, to: m.from))
            } else if m.type == .preVote {
                send(Message(type: .preVoteResponse, to: m.from, term: term, reject: true))
            }
            return
        }

        switch m.type {
        case .hup:
            hup(preVote ? .preElection : .election)
        case .vote, .preVote:
            handleVoteRequest(m)
        default:
            switch role {
            case .leader: try stepLeader(m)
            case .candidate, .preCandidate: try stepCandidate(m)
            case .follower: try stepFollower(m)
            }
        }
    }

    private mutating func stepFollower(_ m: Message) throws(RaftError) {
        switch m.type {
        case .propose:
            guard lead != noNode else { throw .proposalDropped(.noLeader) }
            guard !disableProposalForwarding else { throw .proposalDropped(.forwardingDisabled) }
            forwardToLeader(m)
        case .append:
            electionElapsed = 0
            lead = m.from
            handleAppend(m)
        case .heartbeat:
            electionElapsed = 0
            lead = m.from
            handleHeartbeat(m)
        case .snapshot:
            electionElapsed = 0
            lead = m.from
            handleSnapshot(m)
        case .transferLeader:
            guard lead != noNode else { throw .proposalDropped(.noLeader) }
            forwardToLeader(m)
        case .timeoutNow:
            // Leadership transfer: campaign at once, skipping pre-vote (the leader asked for it).
            hup(.transfer)
        case .readIndex:
            guard lead != noNode else { throw .proposalDropped(.noLeader) }
            forwardToLeader(m)
        case .readIndexResponse:
            readStates.append(ReadState(index: m.index, context: m.context))
        default:
            break
        }
    }

    private mutating func forwardToLeader(_ m: Message) {
        var forwarded = m
        forwarded.to = lead
        forwarded.term = 0
        send(forwarded)
    }

}

extension MessageType {
    /// The response type for a vote or pre-vote request.
    var responseType: MessageType {
        switch self {
        case .vote: .voteResponse
        case .preVote: .preVoteResponse
        default: preconditionFailure("\(self) is not a vote request")
        }
    }
}
