import EtcdServer
import Testing

/// etcd's automatic compaction schedule, on a simulated clock.
@Suite("Auto compaction schedule")
struct AutoCompactorTests {
    /// Ticks `compactor` for `duration`, the revision growing by `perTick` each tick; returns
    /// (seconds since start, revision compacted at) for each compaction it asked for.
    private func run(_ compactor: inout AutoCompactor, for duration: Duration, perTick: Int64) -> [(Double, Int64)] {
        let start = ContinuousClock.now
        var now = start
        var revision: Int64 = 1
        var compactions: [(Double, Int64)] = []
        // The first tick comes as the member starts, then one every interval.
        while now - start <= duration {
            if let target = compactor.tick(now: now, revision: revision) {
                compactions.append(((now - start) / .seconds(1), target))
                compactor.compacted(target, at: now)
            }
            now += compactor.tickInterval
            revision += perTick
        }
        return compactions
    }

    @Test func periodicKeepsTheLastRetentionAndCompactsEveryRetentionUnderAnHour() {
        var compactor = AutoCompactor(.periodic(.seconds(600)))
        #expect(compactor.tickInterval == .seconds(60))
        let compactions = run(&compactor, for: .seconds(3000), perTick: 10)
        // First after 10 minutes, at the revision of the start; then every 10 minutes, at the
        // revision of 10 minutes before.
        #expect(compactions.map(\.0) == [600, 1200, 1800, 2400, 3000])
        #expect(compactions.map(\.1) == [1, 101, 201, 301, 401])
    }

    @Test func periodicOverAnHourCompactsHourlyKeepingTheWholeRetention() {
        var compactor = AutoCompactor(.periodic(.seconds(3 * 3600)))
        #expect(compactor.tickInterval == .seconds(360))
        let compactions = run(&compactor, for: .seconds(5 * 3600), perTick: 1)
        #expect(compactions.map(\.0) == [10800, 14400, 18000] as [Double])
        // Each keeps three hours of history: 30 ticks of one revision each.
        #expect(compactions.map(\.1) == [1, 11, 21])
    }

    @Test func revisionModeKeepsTheLastRetentionRevisions() {
        var compactor = AutoCompactor(.revision(1000))
        #expect(compactor.tickInterval == .seconds(300))
        #expect(compactor.tick(now: .now, revision: 900) == nil)
        #expect(compactor.tick(now: .now, revision: 1500) == 500)
        compactor.compacted(500, at: .now)
        #expect(compactor.tick(now: .now, revision: 1500) == nil)
        #expect(compactor.tick(now: .now, revision: 2600) == 1600)
    }

    @Test func flagsParseAsEtcdReadsThem() throws {
        let duration: (String) -> Duration? = { $0 == "30m" ? .seconds(1800) : nil }
        #expect(try AutoCompactor.parse(mode: "periodic", retention: "0", duration: duration) == nil)
        #expect(try AutoCompactor.parse(mode: "periodic", retention: "2", duration: duration) == .periodic(.seconds(7200)))
        #expect(try AutoCompactor.parse(mode: "periodic", retention: "30m", duration: duration) == .periodic(.seconds(1800)))
        #expect(try AutoCompactor.parse(mode: "revision", retention: "1000", duration: duration) == .revision(1000))
        #expect(throws: ConfigurationError("--auto-compaction-retention: '30m' is not a number of revisions")) {
            try AutoCompactor.parse(mode: "revision", retention: "30m", duration: duration)
        }
        #expect(throws: ConfigurationError("unknown auto-compaction-mode 'daily'")) {
            try AutoCompactor.parse(mode: "daily", retention: "1", duration: duration)
        }
    }
}
