/// A member's identity inside one Raft group. Zero means "nobody" (no leader, no vote).
public typealias NodeID = UInt64

/// The node ID that means "nobody": no leader known, no vote cast.
public let noNode: NodeID = 0

/// What an entry's payload is: an application command or a membership change.
public enum EntryKind: UInt8, Sendable, Hashable {
    /// Application data; an empty payload is the no-op a new leader appends.
    case normal = 0
    /// An encoded ``ConfChange``.
    case confChange = 1
}

/// One slot of the replicated log.
public struct Entry: Sendable, Hashable {
    public var term: UInt64
    public var index: UInt64
    public var kind: EntryKind
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, kind: EntryKind = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data
    }

    /// Bytes this entry counts for in message-size and uncommitted-size limits.
    var payloadSize: UInt64 { UInt64(data.count) }
}

/// The state a node must persist before it answers anyone: term, vote and commit index.
public struct HardState: Sendable, Hashable {
    public var term: UInt64
    public var vote: NodeID
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: NodeID = noNode, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    /// True for the state of a node that never took part in any election.
    public var isEmpty: Bool { term == 0 && vote == noNode && commit == 0 }
}

/// The membership a log position carries: voters (two sets while joint), learners, and whether
/// a joint configuration leaves itself automatically.
public struct ConfState: Sendable, Hashable {
    public var voters: [NodeID]
    /// Voters of the outgoing configuration; non-empty only while in joint consensus.
    public var votersOutgoing: [NodeID]
    public var learners: [NodeID]
    /// Learners that become learners only once the joint configuration is left (they are outgoing voters now).
    public var learnersNext: [NodeID]
    public var autoLeave: Bool

    public init(
        voters: [NodeID] = [],
        votersOutgoing: [NodeID] = [],
        learners: [NodeID] = [],
        learnersNext: [NodeID] = [],
        autoLeave: Bool = false
    ) {
        self.voters = voters
        self.votersOutgoing = votersOutgoing
        self.learners = learners
        self.learnersNext = learnersNext
        self.autoLeave = autoLeave
    }

    /// The same membership regardless of the order the IDs are listed in.
    public func isEquivalent(to other: ConfState) -> Bool {
        voters.sorted() == other.voters.sorted() && votersOutgoing.sorted() == other.votersOutgoing.sorted()
            && learners.sorted() == other.learners.sorted() && learnersNext.sorted() == other.learnersNext.sorted()
            && autoLeave == other.autoLeave
    }
}

/// Where a snapshot sits in the log and which membership holds there.
public struct SnapshotMetadata: Sendable, Hashable {
    public var index: UInt64
    public var term: UInt64
    public var confState: ConfState

    public init(index: UInt64 = 0, term: UInt64 = 0, confState: ConfState = ConfState()) {
        self.index = index
        self.term = term
        self.confState = confState
    }
}

/// The application state up to ``SnapshotMetadata/index``, standing in for the log before it.
public struct Snapshot: Sendable, Hashable {
    public var metadata: SnapshotMetadata
    /// The application's own encoding of its state; opaque to Raft.
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata = SnapshotMetadata(), data: [UInt8] = []) {
        self.metadata = metadata
        self.data = data
    }

    public var isEmpty: Bool { metadata.index == 0 }
}

/// The part of a node's role that is not persisted.
public enum StateRole: Sendable, Hashable, CustomStringConvertible {
    case follower, preCandidate, candidate, leader

    public var description: String {
        switch self {
        case .follower: "StateFollower"
        case .preCandidate: "StatePreCandidate"
        case .candidate: "StateCandidate"
        case .leader: "StateLeader"
        }
    }
}

/// Who leads and what this node is; handed out by ``RaftNode/ready()`` only when it changes.
public struct SoftState: Sendable, Hashable {
    public var leader: NodeID
    public var role: StateRole

    public init(leader: NodeID, role: StateRole) {
        self.leader = leader
        self.role = role
    }
}

/// An answer to ``RaftNode/readIndex(context:)``: reads that started before the request may be served
/// once the local applied index reaches `index`.
public struct ReadState: Sendable, Hashable {
    public var index: UInt64
    public var context: [UInt8]

    public init(index: UInt64, context: [UInt8]) {
        self.index = index
        self.context = context
    }
}

/// How a leader confirms it still leads before answering a read.
public enum ReadOnlyOption: Sendable, Hashable {
    /// A heartbeat round acknowledged by a quorum (Raft thesis §6.4). Safe with any clock.
    case safe
    /// The leader's lease from check-quorum (thesis §6.4.1); assumes bounded clock drift.
    case leaseBased
}

/// Whether a snapshot the application sent reached its follower.
public enum SnapshotStatus: Sendable, Hashable {
    case finished, failure
}

/// What a message asks or answers.
public enum MessageType: UInt8, Sendable, Hashable, CaseIterable {
    /// Local: start an election.
    case hup
    /// Local: a leader's heartbeat tick.
    case beat
    /// Append entries proposed by the application (local, or forwarded by a follower).
    case propose
    case append
    case appendResponse
    case vote
    case voteResponse
    case snapshot
    case heartbeat
    case heartbeatResponse
    /// Local: the application could not reach a peer.
    case unreachable
    /// Local: the application reports how sending a snapshot went.
    case snapshotStatus
    /// Local: a leader's check that a quorum is still active.
    case checkQuorum
    /// Ask the leader to hand leadership to `from`'s chosen transferee.
    case transferLeader
    /// A leader tells its transferee to campaign now.
    case timeoutNow
    case readIndex
    case readIndexResponse
    case preVote
    case preVoteResponse

    /// Messages a node makes for itself; they never cross the network.
    var isLocal: Bool {
        switch self {
        case .hup, .beat, .unreachable, .snapshotStatus, .checkQuorum: true
        default: false
        }
    }

    /// Responses whose sender must have persisted its state first.
    var mustFollowPersistence: Bool {
        switch self {
        case .appendResponse, .voteResponse, .preVoteResponse: true
        default: false
        }
    }

    var isResponse: Bool {
        switch self {
        case .appendResponse, .voteResponse, .heartbeatResponse, .unreachable, .readIndexResponse, .preVoteResponse:
            true
        default: false
        }
    }
}

/// Everything nodes say to each other. Fields unused by a message type keep their zero values.
public struct Message: Sendable, Hashable {
    public var type: MessageType
    public var to: NodeID
    public var from: NodeID
    public var term: UInt64
    /// For appends: the term of the entry at `index`. For rejections: the hint's term.
    public var logTerm: UInt64
    public var index: UInt64
    public var entries: [Entry]
    public var commit: UInt64
    public var snapshot: Snapshot?
    public var reject: Bool
    /// For a rejected append: the index the follower suggests probing at.
    public var rejectHint: UInt64
    /// Read-index request context, or a campaign's reason (transfer) for votes.
    public var context: [UInt8]

    public init(
        type: MessageType,
        to: NodeID = noNode,
        from: NodeID = noNode,
        term: UInt64 = 0,
        logTerm: UInt64 = 0,
        index: UInt64 = 0,
        entries: [Entry] = [],
        commit: UInt64 = 0,
        snapshot: Snapshot? = nil,
        reject: Bool = false,
        rejectHint: UInt64 = 0,
        context: [UInt8] = []
    ) {
        self.type = type
        self.to = to
        self.from = from
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.snapshot = snapshot
        self.reject = reject
        self.rejectHint = rejectHint
        self.context = context
    }
}

/// The context a vote request carries when it comes from a leadership transfer, so that voters
/// grant it even inside their leader lease.
let campaignTransferContext: [UInt8] = Array("CampaignTransfer".utf8)
