/// How one Raft node behaves. Ticks are the unit of time; the application decides how long a tick is.
public struct RaftConfig {
    /// This node's ID; never zero.
    public var id: NodeID
    /// Ticks without hearing from a leader before a follower campaigns. The actual timeout is
    /// randomized in `[electionTick, 2 * electionTick)` so that candidates rarely collide.
    public var electionTick: Int = 10
    /// Ticks between a leader's heartbeats; must be less than `electionTick`.
    public var heartbeatTick: Int = 1
    /// The durable state this node restarts from.
    public var storage: any RaftStorage
    /// The last index the application has already applied (for example, stored with its state), so
    /// committed entries up to it are not handed out again after a restart.
    public var applied: UInt64 = 0
    /// Most payload bytes in one append message (at least one entry is always sent).
    public var maxSizePerMessage: UInt64 = 1 << 20
    /// Most payload bytes of committed entries handed out in one ``Ready``.
    public var maxCommittedSizePerReady: UInt64 = 1 << 26
    /// Most payload bytes of proposals a leader holds uncommitted; 0 for no limit. A proposal that
    /// would exceed it is dropped with ``RaftError/proposalDropped(_:)``.
    public var maxUncommittedEntriesSize: UInt64 = 0
    /// Most append messages in flight to one follower in the replicate state.
    public var maxInflightMessages: Int = 256
    /// Most payload bytes in flight to one follower; 0 for no limit.
    public var maxInflightBytes: UInt64 = 0
    /// A leader steps down when it has not heard from a quorum within an election timeout (thesis §6.2).
    public var checkQuorum = false
    /// Candidates first ask whether they could win before bumping the term (thesis §9.6).
    public var preVote = false
    /// How read-index requests are confirmed. `.leaseBased` requires `checkQuorum`.
    public var readOnlyOption: ReadOnlyOption = .safe
    /// Followers drop proposals instead of forwarding them to the leader.
    public var disableProposalForwarding = false
    /// Seed of the generator that randomizes election timeouts. Zero derives one from `id`, so runs
    /// are reproducible either way.
    public var randomSeed: UInt64 = 0

    public init(id: NodeID, storage: any RaftStorage) {
        self.id = id
        self.storage = storage
    }

    func validate() throws(RaftConfigError) {
        guard id != noNode else { throw .invalid("cannot use none as id") }
        guard heartbeatTick > 0 else { throw .invalid("heartbeat tick must be greater than 0") }
        guard electionTick > heartbeatTick else { throw .invalid("election tick must be greater than heartbeat tick") }
        guard maxInflightMessages > 0 else { throw .invalid("max inflight messages must be greater than 0") }
        guard maxInflightBytes == 0 || maxInflightBytes >= maxSizePerMessage else {
            throw .invalid("max inflight bytes must be >= max message size")
        }
        guard readOnlyOption != .leaseBased || checkQuorum else {
            throw .invalid("CheckQuorum must be enabled when ReadOnlyOption is ReadOnlyLeaseBased")
        }
    }
}

/// A configuration that cannot work, or storage that contradicts itself.
public enum RaftConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let reason): "invalid raft configuration: \(reason)"
        }
    }
}

/// Why a request to the node was not accepted.
public enum RaftError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The proposal (or read, or transfer) cannot be handled now; the caller may retry later.
    case proposalDropped(DropReason)
    /// Local-only message types cannot come from the network.
    case stepLocalMessage
    /// A response from a node that is not a member.
    case stepPeerNotFound
    /// A message from the network without a sender, or without a term where one is required.
    case invalidMessage

    public enum DropReason: Sendable, Hashable, CustomStringConvertible {
        case noLeader
        case forwardingDisabled
        case leadershipTransferInProgress
        case uncommittedSizeLimit
        case notMember

        public var description: String {
        switch self {
            case .noLeader: "no leader"
            case .forwardingDisabled: "proposal forwarding is disabled"
            case .leadershipTransferInProgress: "leadership transfer in progress"
            case .uncommittedSizeLimit: "too many uncommitted entries"
            case .notMember: "this node is no longer a member"
            }
        }
    }

    public var description: String {
        switch self {
        case .proposalDropped(let reason): "raft proposal dropped: \(reason)"
        case .stepLocalMessage: "raft: cannot step raft local message"
        case .stepPeerNotFound: "raft: cannot step as peer not found"
        case .invalidMessage: "raft: message without a sender or a term"
        }
    }
}

/// A small, fast, seedable generator (SplitMix64) so that election timeouts are random yet reproducible.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
