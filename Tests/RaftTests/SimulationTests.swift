#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
import TestSupport

@testable import Raft

/// Deterministic simulation of whole clusters under faults. `RAFT_SEEDS` sets how many seeds run
/// (spread over 3, 5 and 7 nodes); `RAFT_SEED` and `RAFT_NODES` replay one failing run exactly.
@Suite("Simulation", .cpuBound)
struct SimulationTests {
    static let environment = Environment()

    struct Environment {
        let seeds: Int
        let replaySeed: UInt64?
        let replayNodes: Int?

        init() {
            func value(_ name: String) -> String? {
                getenv(name).map { String(cString: $0) }
            }
            seeds = value("RAFT_SEEDS").flatMap(Int.init) ?? 2_100
            replaySeed = value("RAFT_SEED").flatMap(UInt64.init)
            replayNodes = value("RAFT_NODES").flatMap(Int.init)
        }
    }

    @Test("seeded clusters keep Raft's safety properties and recover liveness", arguments: [3, 5, 7])
    func seededClusters(nodeCount: Int) async throws {
        let env = Self.environment
        if let seed = env.replaySeed {
            guard env.replayNodes == nil || env.replayNodes == nodeCount else { return }
            var cluster = try SimulatedCluster(plan: SimulationPlan(seed: seed, nodeCount: nodeCount))
            try cluster.run()
            return
        }
        let perSize = (env.seeds + 2) / 3
        var totals = (reads: 0, proposals: 0, leaders: 0)
        for n in 0..<perSize {
            let seed = UInt64(nodeCount) * 1_000_000 + UInt64(n)
            var cluster = try SimulatedCluster(plan: SimulationPlan(seed: seed, nodeCount: nodeCount))
            do {
                try cluster.run()
            } catch let failure as SimulationFailure {
                Issue.record("\(failure)")
                return
            }
            if getenv("RAFT_VERBOSE") != nil {
                print("seed \(seed): applied \(cluster.highestApplied) leaders \(cluster.leaders.count) reads \(cluster.readsChecked) crashes \(cluster.crashes) snapshots \(cluster.snapshotsRestored) conf \(cluster.confChangesApplied) maxnet \(cluster.maxNetwork) steps \(cluster.step)")
            }
            totals.reads += cluster.readsChecked
            totals.proposals += cluster.proposalsMade
            totals.leaders += cluster.leaders.count
            // Seeds are CPU-bound: give the shared test thread pool back between them, so tests of
            // timing-sensitive code running in parallel are not starved.
            await Task.yield()
        }
        print("simulation: \(perSize) seeds of \(nodeCount) nodes passed (\(totals.leaders) terms with leaders, \(totals.proposals) proposals, \(totals.reads) reads checked)")
        #expect(totals.leaders > perSize)
    }
}
