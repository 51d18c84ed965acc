// raft-bench: how fast the Raft library alone commits entries.
//
// Three nodes in one process, an instant network (messages handed over directly), no disk
// (entries go to MemoryStorage). The leader proposes batches of fixed-size commands; the run ends
// when every node has applied `--entries` of them. Prints entries/second and a RESULT line.
//
//   swift run -c release raft-bench [--entries N] [--batch B] [--size BYTES] [--inflight M]
//
// `scripts/raft-bench.sh` also counts allocations per entry under valgrind.

import Raft

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct Options {
    var entries = 1_000_000
    var batch = 1_024
    var size = 128
    var inflight = 256

    init(arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            guard let value = iterator.next().flatMap(Int.init) else {
                fatalError("usage: raft-bench [--entries N] [--batch B] [--size BYTES] [--inflight M]")
            }
            switch flag {
            case "--entries": entries = value
            case "--batch": batch = value
            case "--size": size = value
            case "--inflight": inflight = value
            default: fatalError("raft-bench: unknown flag \(flag)")
            }
        }
    }
}

/// One in-process member: its node, its storage and how much it applied.
struct Member {
    var node: RaftNode
    let storage: MemoryStorage
    var appliedCommands = 0
}

func makeCluster(_ options: Options) -> [Member] {
    let ids: [NodeID] = [1, 2, 3]
    return ids.map { id in
        let storage = MemoryStorage(voters: ids)
        var config = RaftConfig(id: id, storage: storage)
        config.maxInflightMessages = options.inflight
        config.maxSizePerMessage = 1 << 20
        config.maxCommittedSizePerReady = 1 << 30
        return Member(node: try! RaftNode(config: config), storage: storage)
    }
}

/// Runs one ready/advance cycle on every member and delivers what they sent; false when nothing happened.
func pump(_ members: inout [Member], outbox: inout [Message]) -> Bool {
    var progressed = false
    for i in members.indices where members[i].node.hasReady {
        progressed = true
        let ready = members[i].node.ready()
        outbox.append(contentsOf: ready.messages)
        if let snapshot = ready.snapshot { try! members[i].storage.applySnapshot(snapshot) }
        members[i].storage.append(ready.entries)
        if let hardState = ready.hardState { members[i].storage.setHardState(hardState) }
        outbox.append(contentsOf: ready.messagesAfterPersist)
        for entry in ready.committedEntries where entry.kind == .normal && !entry.data.isEmpty {
            members[i].appliedCommands += 1
        }
        members[i].node.advance()
    }
    for message in outbox {
        try? members[Int(message.to - 1)].node.step(message)
    }
    if !outbox.isEmpty { progressed = true }
    outbox.removeAll(keepingCapacity: true)
    return progressed
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

let options = Options(arguments: CommandLine.arguments)
var members = makeCluster(options)
var outbox: [Message] = []
outbox.reserveCapacity(64)

members[0].node.campaign()
for _ in 0..<100 where members[0].node.status().softState.role != .leader {
    _ = pump(&members, outbox: &outbox)
}
precondition(members[0].node.status().softState.role == .leader, "node 1 did not win the election")
while pump(&members, outbox: &outbox) {}

let command = [UInt8](repeating: 0xAB, count: options.size)
let batch = [[UInt8]](repeating: command, count: options.batch)
var proposed = 0
let start = now()
while members.contains(where: { $0.appliedCommands < options.entries }) {
    if proposed < options.entries {
        let count = min(options.batch, options.entries - proposed)
        try! members[0].node.propose(batch: count == options.batch ? batch : Array(batch.prefix(count)))
        proposed += count
    }
    _ = pump(&members, outbox: &outbox)
}
let seconds = now() - start
let rate = Double(options.entries) / seconds
print(
    "raft-bench: 3 nodes, \(options.entries) entries of \(options.size) B in batches of \(options.batch):"
        + " \((seconds * 1000).rounded() / 1000) s, \(Int(rate)) entries/s"
)
print("RESULT entries=\(options.entries) seconds=\((seconds * 1000).rounded() / 1000) entries_per_s=\(Int(rate))")
