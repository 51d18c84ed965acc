import Testing

@testable import Raft

/// A directed link between two nodes, used to drop messages on it.
struct RaftTestLink: Hashable {
    var from: NodeID
    var to: NodeID
}

/// An in-memory network of `RaftNode`s, each with its own `MemoryStorage`. Deterministic: nothing
/// happens unless a test ticks, proposes, processes or delivers. Every loop is bounded.
struct RaftTestNetwork {
    var nodes: [NodeID: RaftNode] = [:]
    var storages: [NodeID: MemoryStorage] = [:]
    /// Messages on these links are dropped.
    var cutLinks: Set<RaftTestLink> = []
    /// Messages of these types are dropped everywhere.
    var droppedTypes: Set<MessageType> = []
    /// Committed entries each node applied, in order.
    var applied: [NodeID: [Entry]] = [:]
    /// Read states each node received.
    var readStates: [NodeID: [ReadState]] = [:]
    /// The membership each node last reported (from applied conf changes or snapshots).
    var confStates: [NodeID: ConfState] = [:]
    /// Conf changes that failed to apply, per node.
    var confChangeErrors: [NodeID: [ConfChangeError]] = [:]
    /// The last Ready each node handed out.
    var lastReady: [NodeID: Ready] = [:]
    /// Every message actually delivered, in order.
    var delivered: [Message] = []

    static func config(_ id: NodeID, _ storage: MemoryStorage) -> RaftConfig {
        var c = RaftConfig(id: id, storage: storage)
        c.electionTick = 10
        c.heartbeatTick = 1
        return c
    }

    init(voters: [NodeID], learners: [NodeID] = [], configure: (inout RaftConfig) -> Void = { _ in }) {
        for id in voters + learners {
            addNode(id, storage: MemoryStorage(voters: voters, learners: learners), configure: configure)
        }
    }

    /// Builds a network from prepared storages (for logs that already hold entries).
    init(storages: [NodeID: MemoryStorage], configure: (inout RaftConfig) -> Void = { _ in }) {
        for (id, storage) in storages.sorted(by: { $0.key < $1.key }) {
            addNode(id, storage: storage, configure: configure)
        }
    }

    mutating func addNode(_ id: NodeID, storage: MemoryStorage, configure: (inout RaftConfig) -> Void = { _ in }) {
        var c = Self.config(id, storage)
        configure(&c)
        nodes[id] = try! RaftNode(config: c)
        storages[id] = storage
    }

    // MARK: - Accessors

    func core(_ id: NodeID) -> RaftCore { nodes[id]!.core }
    func role(_ id: NodeID) -> StateRole { nodes[id]!.core.role }
    func term(_ id: NodeID) -> UInt64 { nodes[id]!.core.term }
    func lead(_ id: NodeID) -> NodeID { nodes[id]!.core.lead }
    func committed(_ id: NodeID) -> UInt64 { nodes[id]!.core.log.committed }
    func lastIndex(_ id: NodeID) -> UInt64 { nodes[id]!.core.log.lastIndex }
    func progress(_ leader: NodeID, _ peer: NodeID) -> Progress? { nodes[leader]!.core.tracker.progress[peer] }
    func appliedData(_ id: NodeID) -> [[UInt8]] {
        (applied[id] ?? []).filter { $0.kind == .normal && !$0.data.isEmpty }.map(\.data)
    }

    // MARK: - Links

    mutating func cut(_ a: NodeID, _ b: NodeID) {
        cutLinks.insert(RaftTestLink(from: a, to: b))
        cutLinks.insert(RaftTestLink(from: b, to: a))
    }

    mutating func isolate(_ id: NodeID) {
        for other in nodes.keys where other != id { cut(id, other) }
    }

    mutating func heal() {
        cutLinks.removeAll()
        droppedTypes.removeAll()
    }

    // MARK: - Driving

    mutating func tick(_ id: NodeID, times: Int = 1) {
        for _ in 0..<times { nodes[id]!.tick() }
    }

    /// One ready/persist/apply/advance cycle of one node; returns what it wants to send (not delivered).
    @discardableResult
    mutating func process(_ id: NodeID) -> [Message] {
        guard var node = nodes[id], node.hasReady else { return [] }
        let storage = storages[id]!
        let rd = node.ready()
        lastReady[id] = rd
        if let snapshot = rd.snapshot {
            try! storage.applySnapshot(snapshot)
            confStates[id] = snapshot.metadata.confState
        }
        storage.append(rd.entries)
        if let hs = rd.hardState { storage.setHardState(hs) }
        readStates[id, default: []] += rd.readStates
        for entry in rd.committedEntries {
            applied[id, default: []].append(entry)
            if entry.kind == .confChange, let change = ConfChange(encoded: entry.data) {
                do {
                    confStates[id] = try node.applyConfChange(change)
                } catch {
                    confChangeErrors[id, default: []].append(error)
                }
            }
        }
        node.advance()
        nodes[id] = node
        return rd.messages + rd.messagesAfterPersist
    }

    /// Steps each message into its recipient unless it is dropped; errors are ignored.
    mutating func deliver(_ messages: [Message]) {
        for m in messages {
            guard nodes[m.to] != nil, !droppedTypes.contains(m.type),
                !cutLinks.contains(RaftTestLink(from: m.from, to: m.to))
            else { continue }
            delivered.append(m)
            try? nodes[m.to]!.step(m)
        }
    }

    /// Processes every node and delivers their messages until nothing is left (bounded).
    mutating func stabilize(maxRounds: Int = 200) {
        for _ in 0..<maxRounds {
            var messages: [Message] = []
            for id in nodes.keys.sorted() { messages += process(id) }
            if messages.isEmpty && !nodes.values.contains(where: { $0.hasReady }) { return }
            deliver(messages)
        }
    }

    /// Makes `id` campaign and runs the network until it settles.
    mutating func elect(_ id: NodeID) {
        nodes[id]!.campaign()
        stabilize()
    }

    /// Ticks `id` and settles the network after each tick.
    mutating func tickAndStabilize(_ id: NodeID, times: Int = 1) {
        for _ in 0..<times {
            nodes[id]!.tick()
            stabilize()
        }
    }

    mutating func propose(_ id: NodeID, _ data: String) throws(RaftError) {
        try nodes[id]!.propose(Array(data.utf8))
    }
}

/// Storage holding `terms.count` entries (index i+1 has term terms[i]) and a hard state.
func raftTestStorage(voters: [NodeID], learners: [NodeID] = [], terms: [UInt64], hardState: HardState) -> MemoryStorage {
    let storage = MemoryStorage(voters: voters, learners: learners)
    storage.append(terms.enumerated().map { Entry(term: $0.element, index: UInt64($0.offset + 1)) })
    storage.setHardState(hardState)
    return storage
}

func raftBytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Returns the error `body` throws, or nil.
func raftError(_ body: () throws(RaftError) -> Void) -> RaftError? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}

extension RaftTestNetwork {
    /// Proposes on node 1 and settles the network.
    mutating func proposeAndCommit(_ data: String, on id: NodeID = 1) throws(RaftError) {
        try propose(id, data)
        stabilize()
    }
}

extension RaftTestNetwork {
    /// Nodes 1-3 with node 1 leading and node 3 one entry behind (cut off while "a" committed).
    static func leaderWithLaggingNode3() throws(RaftError) -> RaftTestNetwork {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        net.isolate(3)
        try net.propose(1, "a")
        net.stabilize()
        return net
    }
}
