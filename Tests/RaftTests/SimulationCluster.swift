#if canImport(Glibc)
import Glibc
#endif
@testable import Raft

/// A safety or liveness property the simulation saw broken.
struct SimulationFailure: Error, CustomStringConvertible {
    let seed: UInt64
    let nodeCount: Int
    let step: Int
    let message: String

    var description: String {
        "seed \(seed) (\(nodeCount) nodes) failed at step \(step): \(message)\n"
            + "reproduce: RAFT_SEED=\(seed) RAFT_NODES=\(nodeCount) swift test --filter Simulation"
    }
}

/// What one simulated run does: how many nodes, how hostile the network, which Raft options.
struct SimulationPlan {
    var seed: UInt64
    var nodeCount: Int
    /// Steps of faults before the network heals.
    var chaosSteps = 4_000
    /// Ticks the healed cluster gets to elect a leader and commit a fresh proposal.
    var livenessTicks = 400
    var preVote: Bool
    var checkQuorum: Bool
    /// Small messages split the log into many appends, which opens more interleavings.
    var maxSizePerMessage: UInt64
    var maxInflightMessages: Int
    /// Per-mille chance that a step drops an in-flight message.
    var dropRate: UInt64

    init(seed: UInt64, nodeCount: Int) {
        self.seed = seed
        self.nodeCount = nodeCount
        var random = SplitMix64(seed: seed ^ 0x5EED)
        preVote = random.next() % 2 == 0
        checkQuorum = random.next() % 2 == 0
        maxSizePerMessage = [8, 16, 64, 1 << 20][Int(random.next() % 4)]
        maxInflightMessages = [1, 4, 256][Int(random.next() % 3)]
        dropRate = [5, 20, 60][Int(random.next() % 3)]
    }
}

/// One simulated member: its Raft node (nil while crashed), its storage (which survives crashes),
/// and the state machine it applies to.
final class SimulatedMember {
    let id: NodeID
    var node: RaftNode?
    let storage: MemoryStorage
    var applied: UInt64 = 0
    var confState: ConfState
    /// Persisted log: index → hash of the whole prefix ending there (for the log-matching check).
    var prefixHash: [UInt64: UInt64] = [0: 0]
    /// Members this one saw removed; like etcd's transport, it drops their messages from then on.
    var removedPeers: Set<NodeID> = []
    /// Outstanding read requests: context → the highest index acknowledged anywhere when the read began.
    var pendingReads: [[UInt8]: UInt64] = [:]

    init(id: NodeID, voters: [NodeID]) {
        self.id = id
        storage = MemoryStorage(voters: voters)
        confState = ConfState(voters: voters)
    }
}

/// A deterministic cluster: every choice (which message, which fault, which node ticks) comes from one seeded generator.
struct SimulatedCluster {
    struct InFlight {
        var message: Message
    }

    let plan: SimulationPlan
    var random: SplitMix64
    var members: [NodeID: SimulatedMember] = [:]
    let ids: [NodeID]
    var network: [InFlight] = []
    /// Links that drop everything: (from, to). Symmetric partitions cut both directions.
    var cutLinks: Set<[NodeID]> = []
    var step = 0
    var nextValue: UInt64 = 1
    var nextReadContext: UInt64 = 1

    // Global knowledge for the invariants.
    /// The leader seen for each term.
    var leaders: [UInt64: NodeID] = [:]
    /// Every applied entry, by index: all members must apply the same entry there.
    var appliedEntries: [UInt64: Entry] = [:]
    var highestApplied: UInt64 = 0
    /// (index, term) → hash of the log prefix ending at that entry, as first persisted anywhere.
    var prefixRegistry: [IndexTerm: UInt64] = [:]
    var readsChecked = 0
    var tracing = false
    var proposalsMade = 0
    /// Members whose removal was proposed: like etcd, an ID is never added back once removed.
    var retiring: Set<NodeID> = []
    var crashes = 0
    var snapshotsRestored = 0
    var confChangesApplied = 0
    var maxNetwork = 0
    /// The liveness phase's proposal, and the index it was applied at once it was.
    var watchedValue: [UInt8]?
    var watchedIndex: UInt64?

    struct IndexTerm: Hashable {
        var index: UInt64
        var term: UInt64
    }

    init(plan: SimulationPlan) throws {
        self.plan = plan
        random = SplitMix64(seed: plan.seed)
        ids = (1...UInt64(plan.nodeCount)).map { $0 }
        for id in ids {
            members[id] = SimulatedMember(id: id, voters: ids)
        }
        for id in ids {
            try start(id)
        }
    }

    func config(for member: SimulatedMember, randomSeed: UInt64) -> RaftConfig {
        var config = RaftConfig(id: member.id, storage: member.storage)
        config.electionTick = 10
        config.heartbeatTick = 1
        config.preVote = plan.preVote
        config.checkQuorum = plan.checkQuorum
        config.maxSizePerMessage = plan.maxSizePerMessage
        config.maxInflightMessages = plan.maxInflightMessages
        config.applied = member.applied
        // Drawn from the run's generator: seeds derived by arithmetic (say id + step) can collide,
        // giving two nodes identical timeouts forever, which real clocks never do.
        config.randomSeed = randomSeed
        return config
    }

    mutating func start(_ id: NodeID) throws {
        let member = members[id]!
        // The state machine restarts from the snapshot and re-applies the log after it.
        let snapshot = try member.storage.snapshot()
        member.applied = snapshot.metadata.index
        member.confState = snapshot.metadata.confState
        member.pendingReads.removeAll()
        member.node = try RaftNode(config: config(for: member, randomSeed: random.next() | 1))
    }

    func fail(_ message: String) -> SimulationFailure {
        SimulationFailure(seed: plan.seed, nodeCount: plan.nodeCount, step: step, message: message)
    }

    mutating func chance(_ percent: UInt64) -> Bool {
        random.next() % 1000 < percent
    }

    mutating func pick<T>(_ values: [T]) -> T {
        values[Int(random.next() % UInt64(values.count))]
    }

    var liveIDs: [NodeID] { ids.filter { members[$0]!.node != nil } }

    // MARK: - Driving one member

    /// Runs one ready/persist/send/apply/advance cycle; with `crashes`, may crash between sending and persisting.
    mutating func processReady(_ id: NodeID, crashes: Bool) throws {
        let member = members[id]!
        guard var node = member.node, node.hasReady else { return }
        let ready = node.ready()
        for message in ready.messages { network.append(InFlight(message: message)) }
        if crashes && chance(10) {
            self.crashes += 1
            // Crash before the disk write: everything handed out but not persisted is lost.
            member.node = nil
            return
        }
        if let snapshot = ready.snapshot {
            try member.storage.applySnapshot(snapshot)
            guard let base = prefixRegistry[IndexTerm(index: snapshot.metadata.index, term: snapshot.metadata.term)]
            else { throw fail("node \(id) received a snapshot at \(snapshot.metadata.index) no log ever held") }
            member.prefixHash = [snapshot.metadata.index: base]
        }
        if !ready.entries.isEmpty {
            try persist(ready.entries, on: member)
        }
        if let hardState = ready.hardState {
            member.storage.setHardState(hardState)
        }
        if crashes && chance(5) {
            self.crashes += 1
            member.node = nil
            return
        }
        for message in ready.messagesAfterPersist { network.append(InFlight(message: message)) }
        if let snapshot = ready.snapshot {
            snapshotsRestored += 1
            member.applied = snapshot.metadata.index
            member.confState = snapshot.metadata.confState
            if let known = appliedEntries[snapshot.metadata.index], known.term != snapshot.metadata.term {
                throw fail("node \(id) restored a snapshot at \(snapshot.metadata.index) of term \(snapshot.metadata.term) but term \(known.term) was applied there")
            }
        }
        for entry in ready.committedEntries {
            try apply(entry, on: member, node: &node)
        }
        try checkReads(ready.readStates, on: member)
        node.advance()
        member.node = node
    }

    mutating func persist(_ entries: [Entry], on member: SimulatedMember) throws {
        member.storage.append(entries)
        for index in member.prefixHash.keys where index >= entries[0].index {
            member.prefixHash[index] = nil
        }
        guard var hash = member.prefixHash[entries[0].index - 1] else {
            throw fail("node \(member.id) persisted entry \(entries[0].index) after a gap")
        }
        for entry in entries {
            hash = Self.chain(hash, entry)
            member.prefixHash[entry.index] = hash
            let key = IndexTerm(index: entry.index, term: entry.term)
            if let known = prefixRegistry[key] {
                if known != hash {
                    throw fail("log matching: node \(member.id) holds entry (\(entry.index), term \(entry.term)) after a different prefix")
                }
            } else {
                prefixRegistry[key] = hash
            }
        }
    }

    static func chain(_ previous: UInt64, _ entry: Entry) -> UInt64 {
        var hash = previous ^ 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        for shift in stride(from: 0, to: 64, by: 8) {
            mix(UInt8(truncatingIfNeeded: entry.term >> UInt64(shift)))
            mix(UInt8(truncatingIfNeeded: entry.index >> UInt64(shift)))
        }
        mix(entry.kind.rawValue)
        for byte in entry.data { mix(byte) }
        return hash
    }

    mutating func apply(_ entry: Entry, on member: SimulatedMember, node: inout RaftNode) throws {
        guard entry.index == member.applied + 1 else {
            throw fail("node \(member.id) applied \(entry.index) right after \(member.applied)")
        }
        if let known = appliedEntries[entry.index] {
            if known != entry {
                throw fail("state machine safety: node \(member.id) applied term \(entry.term) at \(entry.index), another applied term \(known.term)")
            }
        } else {
            appliedEntries[entry.index] = entry
        }
        member.applied = entry.index
        if entry.data == watchedValue { watchedIndex = watchedIndex ?? entry.index }
        highestApplied = max(highestApplied, entry.index)
        if entry.kind == .confChange, let change = ConfChange(encoded: entry.data) {
            // An impossible change fails the same way on every member; nothing changes then.
            if let state = try? node.applyConfChange(change) {
                confChangesApplied += 1
                member.confState = state
                let members = Set(state.voters + state.votersOutgoing + state.learners)
                for change in change.changes where change.kind == .removeNode && !members.contains(change.node) {
                    member.removedPeers.insert(change.node)
                }
            }
        }
    }

    mutating func checkReads(_ states: [ReadState], on member: SimulatedMember) throws {
        for state in states {
            guard let before = member.pendingReads.removeValue(forKey: state.context) else { continue }
            readsChecked += 1
            if state.index < before {
                throw fail("linearizable read: node \(member.id) got read index \(state.index) for a read that began after index \(before) was acknowledged")
            }
        }
    }

}
