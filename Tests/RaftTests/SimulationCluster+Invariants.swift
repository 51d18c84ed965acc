import Glibc
@testable import Raft

/// What the simulation checks after every step, and the events it records.
extension SimulatedCluster {
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
