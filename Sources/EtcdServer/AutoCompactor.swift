import Foundation

/// etcd's automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`) as a
/// clock-free schedule: every member calls ``tick(now:revision:)`` as it starts and then every
/// ``tickInterval`` with the current revision; the leader compacts at the revision it returns.
///
/// - `periodic`: keeps the last `retention` of history. Every tenth of the compaction interval
///   (the retention, at most an hour) it records the revision; once the retention has passed,
///   and then every compaction interval, it compacts at the revision recorded `retention` ago.
/// - `revision`: every 5 minutes, compacts at the current revision less `retention` (unless
///   that was done already).
package struct AutoCompactor: Sendable, Equatable {
    package enum Mode: Sendable, Equatable {
        case periodic(Duration)
        case revision(Int64)
    }

    package let mode: Mode
    /// How often ``tick(now:revision:)`` is called.
    package let tickInterval: Duration
    private var samples: [Int64] = []
    private var lastSuccess: ContinuousClock.Instant?
    private var waitBeforeCompacting: Duration
    private var lastCompacted: Int64 = 0

    /// etcd's revision mode checks every 5 minutes; `revisionCheckInterval` shortens that for tests.
    package init(_ mode: Mode, revisionCheckInterval: Duration = .seconds(300)) {
        self.mode = mode
        switch mode {
        case .periodic(let retention):
            tickInterval = Self.compactionInterval(retention) / 10
            waitBeforeCompacting = retention
        case .revision:
            tickInterval = revisionCheckInterval
            waitBeforeCompacting = .zero
        }
    }

    /// Parses etcd's flags: a bare number is hours in periodic mode and revisions in revision
    /// mode; periodic mode also takes Go durations (`30m`, `1h30m`). Nil when compaction is off
    /// (retention 0); throws with etcd's wording for a value it refuses.
    package static func parse(mode: String, retention: String, duration: (String) -> Duration?) throws(ConfigurationError) -> Mode? {
        switch mode {
        case "periodic":
            if let hours = Int64(retention) {
                guard hours >= 0 else { throw ConfigurationError("--auto-compaction-retention: negative value \(retention)") }
                return hours == 0 ? nil : .periodic(.seconds(hours * 3600))
            }
            guard let period = duration(retention), period >= .zero else {
                throw ConfigurationError("--auto-compaction-retention: '\(retention)' is not a number of hours or a duration")
            }
            return period == .zero ? nil : .periodic(period)
        case "revision":
            guard let revisions = Int64(retention), revisions >= 0 else {
                throw ConfigurationError("--auto-compaction-retention: '\(retention)' is not a number of revisions")
            }
            return revisions == 0 ? nil : .revision(revisions)
        default:
            throw ConfigurationError("unknown auto-compaction-mode '\(mode)'")
        }
    }

    /// The retention, at most an hour: how often periodic compaction runs once started.
    private static func compactionInterval(_ retention: Duration) -> Duration {
        min(retention, .seconds(3600))
    }

    /// Called every ``tickInterval`` (by the leader); returns the revision to compact at, if
    /// one is due. Call ``compacted(_:at:)`` once that compaction succeeded.
    package mutating func tick(now: ContinuousClock.Instant, revision: Int64) -> Int64? {
        switch mode {
        case .periodic(let retention):
            let started = lastSuccess ?? now
            if lastSuccess == nil { lastSuccess = now }
            samples.append(revision)
            // samples[0] is the revision recorded one retention ago.
            let kept = Int(retention / tickInterval) + 1
            if samples.count > kept { samples.removeFirst(samples.count - kept) }
            guard now - started >= waitBeforeCompacting, let oldest = samples.first, oldest > lastCompacted else { return nil }
            return oldest
        case .revision(let retention):
            let target = revision - retention
            guard target > 0, target != lastCompacted else { return nil }
            return target
        }
    }

    /// Records a compaction at `revision` (or one the store had already passed).
    package mutating func compacted(_ revision: Int64, at now: ContinuousClock.Instant) {
        lastCompacted = max(lastCompacted, revision)
        lastSuccess = now
        if case .periodic(let retention) = mode { waitBeforeCompacting = Self.compactionInterval(retention) }
    }
}
