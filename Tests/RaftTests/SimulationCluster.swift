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

    // MARK: - Invariants checked after every step

    mutating func checkInvariants() throws {
        for id in liveIDs {
            let core = members[id]!.node!.core
            guard core.role == .leader else { continue }
            if let known = leaders[core.term] {
                if known != id {
                    throw fail("election safety: nodes \(known) and \(id) both lead term \(core.term)")
                }
                continue
            }
            leaders[core.term] = id
            // Leader completeness: a new leader holds every entry applied (so committed) anywhere.
            let first = core.log.firstIndex
            var index = max(first, 1)
            while index <= highestApplied {
                if let entry = appliedEntries[index] {
                    let term = core.log.zeroTermOnError(index)
                    if term != entry.term {
                        throw fail("leader completeness: leader \(id) of term \(core.term) has term \(term) at committed index \(index), expected \(entry.term)")
                    }
                }
                index += 1
            }
        }
    }

    // MARK: - Events

    mutating func deliver(_ position: Int) throws {
        let message = network.remove(at: position).message
        guard !cutLinks.contains([message.from, message.to]), let member = members[message.to],
            !member.removedPeers.contains(message.from),
            var node = member.node
        else {
            lost(message)
            return
        }
        if message.type == .snapshot {
            reportSnapshot(message, .finished)
        }
        if tracing { print("deliver \(message.type) \(message.from)->\(message.to) term \(message.term) index \(message.index) logTerm \(message.logTerm) reject \(message.reject) entries \(message.entries.count)") }
        // A forwarded proposal meeting a node that lost its leader, or a response from a node outside
        // the membership, is dropped, as a server would drop it.
        try? node.step(message)
        member.node = node
    }

    mutating func drop(_ position: Int) {
        lost(network.remove(at: position).message)
    }

    /// A transport tells the sender when a snapshot could not be delivered, so it can retry.
    mutating func lost(_ message: Message) {
        if message.type == .snapshot {
            reportSnapshot(message, .failure)
        }
    }

    mutating func reportSnapshot(_ message: Message, _ status: SnapshotStatus) {
        guard var sender = members[message.from]?.node else { return }
        sender.reportSnapshot(message.to, status: status)
        members[message.from]!.node = sender
    }

    mutating func propose(at id: NodeID) {
        guard var node = members[id]!.node else { return }
        let data = Self.valueBytes(nextValue)
        nextValue += 1
        proposalsMade += 1
        try? node.propose(data)
        members[id]!.node = node
    }

    mutating func read(at id: NodeID) {
        let member = members[id]!
        guard var node = member.node else { return }
        let context = [0x52] + Self.valueBytes(nextReadContext)
        nextReadContext += 1
        if (try? node.readIndex(context: context)) != nil {
            member.pendingReads[context] = highestApplied
        }
        member.node = node
    }

    mutating func leaderID() -> NodeID? {
        var best: (term: UInt64, id: NodeID)?
        for id in liveIDs {
            let core = members[id]!.node!.core
            if core.role == .leader, core.term > (best?.term ?? 0) { best = (core.term, id) }
        }
        return best?.id
    }

    mutating func changeMembership() {
        guard let leader = leaderID(), var node = members[leader]!.node else { return }
        let kinds: [ConfChangeSingle.Kind] = [.addNode, .addNode, .addLearner, .addLearner, .removeNode]
        let candidates = ids.filter { !retiring.contains($0) }
        guard !candidates.isEmpty else { return }
        // Like etcd, voters are never demoted to learners: a demoted voter holding the newest
        // entries could leave the remaining voters unable to win an election.
        let voters = node.core.tracker.config.voters.allVoters
        func change() -> ConfChangeSingle {
            let id = pick(candidates)
            let kind = pick(kinds)
            return ConfChangeSingle(kind == .addLearner && voters.contains(id) ? .addNode : kind, id)
        }
        var changes = [change()]
        if chance(400) { changes.append(change()) }
        // Like etcd-raft (its README warns about removing a member of a two-member cluster), a change
        // that keeps less than a majority of the old voters can stall for good if a removed member
        // holds the newest entries and the leader crashes before the rest learn the commit: avoid it.
        var newVoters = node.core.tracker.config.voters.incoming.voters
        for change in changes {
            switch change.kind {
            case .addNode: newVoters.insert(change.node)
            case .addLearner, .removeNode: newVoters.remove(change.node)
            }
        }
        let oldVoters = node.core.tracker.config.voters.incoming.voters
        guard newVoters.intersection(oldVoters).count > oldVoters.count / 2 else { return }
        for change in changes where change.kind == .removeNode { retiring.insert(change.node) }
        let transition = pick([ConfChange.Transition.auto, .jointImplicit, .jointExplicit])
        let change = node.core.tracker.config.voters.isJoint && chance(500)
            ? ConfChange.leaveJoint : ConfChange(transition: transition, changes: changes)
        try? node.proposeConfChange(change)
        members[leader]!.node = node
    }

    mutating func transferLeadership() {
        guard let leader = leaderID(), var node = members[leader]!.node else { return }
        node.transferLeadership(to: pick(ids))
        members[leader]!.node = node
    }

    mutating func compact(_ id: NodeID) throws {
        let member = members[id]!
        guard member.node != nil, member.applied > (try member.storage.snapshot()).metadata.index + 5 else { return }
        try member.storage.createSnapshot(at: member.applied, confState: member.confState, data: [])
        let keep = random.next() % 4
        if member.applied > keep + 1 {
            try member.storage.compact(through: member.applied - keep)
        }
    }

    mutating func changePartitions() {
        cutLinks.removeAll()
        switch random.next() % 4 {
        case 0:
            break
        case 1:
            // Symmetric: the cluster splits in two.
            let minority = ids.filter { _ in chance(400) }
            for a in minority {
                for b in ids where !minority.contains(b) {
                    cutLinks.insert([a, b])
                    cutLinks.insert([b, a])
                }
            }
        case 2:
            // Asymmetric: one node hears others but cannot be heard (or the reverse).
            let node = pick(ids)
            let outbound = chance(500)
            for other in ids where other != node {
                cutLinks.insert(outbound ? [node, other] : [other, node])
            }
        default:
            // Random individual links.
            for a in ids {
                for b in ids where a != b && chance(150) { cutLinks.insert([a, b]) }
            }
        }
    }

    /// One random event of the hostile phase.
    mutating func chaosStep() throws {
        step += 1
        maxNetwork = max(maxNetwork, network.count)
        let roll = random.next() % 1000
        switch roll {
        case 0..<400:
            if !network.isEmpty {
                // Any in-flight message may arrive next: reordering is the default.
                try deliver(Int(random.next() % UInt64(network.count)))
            }
        case 400..<(400 + plan.dropRate):
            if !network.isEmpty { drop(Int(random.next() % UInt64(network.count))) }
        case (400 + plan.dropRate)..<(410 + plan.dropRate):
            if !network.isEmpty { network.append(network[Int(random.next() % UInt64(network.count))]) }
        case (410 + plan.dropRate)..<550:
            let id = pick(ids)
            if var node = members[id]!.node {
                node.tick()
                members[id]!.node = node
            }
        case 550..<830:
            try processReady(pick(ids), crashes: true)
        case 830..<910:
            propose(at: pick(ids))
        case 910..<940:
            read(at: pick(ids))
        case 940..<943:
            let id = pick(ids)
            if members[id]!.node != nil {
                crashes += 1
                members[id]!.node = nil
            }
        case 943..<955:
            let id = pick(ids)
            if members[id]!.node == nil { try start(id) }
        case 955..<961:
            changePartitions()
        case 961..<967:
            changeMembership()
        case 967..<972:
            transferLeadership()
        default:
            try compact(pick(ids))
        }
        try checkInvariants()
    }

    /// Delivers everything and processes every ready until the cluster is quiet (bounded).
    mutating func settle() throws {
        for _ in 0..<200 {
            var busy = false
            for id in liveIDs where members[id]!.node!.hasReady {
                busy = true
                try processReady(id, crashes: false)
                try checkInvariants()
            }
            var deliveries = 0
            while !network.isEmpty && deliveries < 10_000 {
                deliveries += 1
                busy = true
                step += 1
                try deliver(Int(random.next() % UInt64(network.count)))
                try checkInvariants()
            }
            if !busy { return }
        }
    }

    /// Heals everything, then requires a leader and a committed fresh proposal within the tick bound.
    mutating func checkLiveness() throws {
        tracing = getenv("RAFT_TRACE") != nil
        cutLinks.removeAll()
        for id in ids where members[id]!.node == nil { try start(id) }
        for _ in 0..<plan.livenessTicks {
            try settle()
            if let leader = leaderID(), var node = members[leader]!.node {
                if let index = watchedIndex {
                    let voters = node.core.tracker.config.voters.allVoters
                    if voters.allSatisfy({ members[$0]!.applied >= index }) { return }
                } else if watchedValue == nil || !isPending(watchedValue!, at: leader) {
                    let value = watchedValue ?? Self.valueBytes(nextValue)
                    nextValue += 1
                    watchedValue = value
                    try? node.propose(value)
                    members[leader]!.node = node
                }
            }
            for id in ids {
                members[id]!.node!.tick()
            }
        }
        let leader = leaderID().map(String.init) ?? "none"
        throw fail("liveness: no commit within \(plan.livenessTicks) healed ticks (leader \(leader))\n\(describe())")
    }

    /// Each member's Raft state, for failure reports.
    func describe() -> String {
        ids.map { id in
            let member = members[id]!
            guard let core = member.node?.core else { return "  \(id): down" }
            var line = "  \(id): \(core.role) term \(core.term) vote \(core.vote) lead \(core.lead) last \(core.log.lastIndex)"
                + " commit \(core.log.committed) applied \(member.applied) voters \(core.tracker.config.confState)"
                + " elapsed \(core.electionElapsed)/\(core.randomizedElectionTimeout) promotable \(core.isPromotable) unstableSnap \(core.log.unstable.snapshot?.metadata.index ?? 0) first \(core.log.firstIndex)"
                + " watched \(watchedValue.map { String(describing: $0) } ?? "-") at \(watchedIndex.map(String.init) ?? "-")"
            if core.role == .leader {
                for (peer, pr) in core.tracker.progress.sorted(by: { $0.key < $1.key }) {
                    line += "\n     \(peer): \(pr.state) match \(pr.match) next \(pr.next) inflight \(pr.inflightCount) probeSent \(pr.probeSent) active \(pr.recentActive) learner \(pr.isLearner)"
                }
                line += "\n     pendingConf \(core.pendingConfIndex) transferee \(core.leadTransferee) uncommitted \(core.uncommittedSize)"
            }
            return line
        }.joined(separator: "\n")
    }

    static func valueBytes(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> UInt64($0 * 8)) }
    }

    func isPending(_ data: [UInt8], at leader: NodeID) -> Bool {
        guard let log = members[leader]!.node?.core.log, log.committed < log.lastIndex,
            let entries = try? log.slice(log.committed + 1, log.lastIndex + 1, maxSize: .max)
        else { return false }
        return entries.contains { $0.data == data }
    }

    /// Runs the whole plan; throws the first property violation.
    mutating func run() throws {
        for _ in 0..<plan.chaosSteps {
            try chaosStep()
        }
        try checkLiveness()
    }
}
