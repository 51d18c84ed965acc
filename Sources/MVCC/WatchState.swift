import Backend
import DequeModule
import Dispatch
import Synchronization

/// A watcher, known by its stream and its ID on that stream.
struct WatcherKey: Hashable {
    let stream: ObjectIdentifier
    let id: Int64
}

struct Watcher {
    let id: Int64
    let range: KeyRange
    let skipsPuts: Bool
    let skipsDeletes: Bool
    let progressNotify: Bool
    /// The first revision whose events it has not been handed: older ones never reach it.
    var next: Int64
    var synced: Bool
    var sentEventsSinceProgress = false

    func wants(_ change: Change) -> Bool {
        guard change.revision.main >= next, range.contains(change.kv.key) else { return false }
        switch change.kind {
        case .put: return !skipsPuts
        case .delete: return !skipsDeletes
        }
    }

    mutating func delivered(through main: Int64, sentEvents: Bool = true) {
        next = main + 1
        if sentEvents { sentEventsSinceProgress = true }
    }
}

struct Stream {
    let sink: any WatchSink
    var watchers: [Int64: Watcher] = [:]
    var nextAutoID: Int64 = 0
    var unsyncedCount = 0
    /// A progress request waits for every watcher to be synced.
    var progressWanted = false

    /// What `changes` (one batch) bring each of the watchers `ids`: one delivery per watcher
    /// that wants any. A watcher that wants them all shares the batch's array.
    func deliveries(of changes: [Change], to ids: Set<Int64>, revision: Int64) -> (any WatchSink, [WatchDelivery]) {
        var deliveries: [WatchDelivery] = []
        deliveries.reserveCapacity(ids.count)
        for id in ids {
            guard let watcher = watchers[id] else { continue }
            let wanted = changes.allSatisfy { watcher.wants($0) } ? changes : changes.filter { watcher.wants($0) }
            if !wanted.isEmpty { deliveries.append(WatchDelivery(watchID: id, kind: .events(wanted), revision: revision)) }
        }
        return (sink, deliveries)
    }

    /// The sink took `deliveries`: their watchers have had everything up to their last event.
    mutating func delivered(_ deliveries: ArraySlice<WatchDelivery>) {
        for delivery in deliveries {
            guard case .events(let events) = delivery.kind else { continue }
            watchers[delivery.watchID]?.delivered(through: events.last!.revision.main)
        }
    }
}

/// Which watchers one catch-up pass serves and which history it reads.
struct CatchUpPlan: Sendable {
    let epoch: Int
    let from: Int64
    let through: Int64
    let watchers: [(WatcherKey, Watcher)]
}

extension WatcherKey: Sendable {}
extension Watcher: Sendable {}

struct State {
    /// The store's revision as of the newest batch the hub was told about. Only the revision:
    /// a copy of the store kept here would make the apply thread copy every index node it
    /// changes in the next batch (see ``PublishedState``).
    var revision: Int64
    /// The newest revision the backend holds (at most `revision`).
    var committedRevision: Int64
    /// History before this main revision may be gone from the backend.
    var compactionFloor: Int64
    /// Changes whenever the backend is replaced, so a pass that read across it is discarded.
    var epoch = 0
    var replacing = false
    var streams: [ObjectIdentifier: Stream] = [:]
    /// Synced watchers of one key, by key, then by stream.
    var singleKey: [[UInt8]: [ObjectIdentifier: Set<Int64>]] = [:]
    /// Synced watchers of a range of keys, by stream.
    var ranged: [ObjectIdentifier: Set<Int64>] = [:]
    var unsynced: Set<WatcherKey> = []
    var recent: RecentChanges
    var catchUpScheduled = false
    var stopped = false
    /// Events handed to streams so far (etcd's `etcd_debugging_mvcc_events_total`).
    var eventsOffered: UInt64 = 0
    /// Sinks that took deliveries under the current hold of the lock, to be told once it is
    /// released (``WatchSink/deliveriesOffered()``).
    private var offered: [any WatchSink] = []

    init(store: KeyValueStore) {
        revision = store.revision
        committedRevision = store.revision
        compactionFloor = store.compactedRevision
        recent = RecentChanges(after: revision)
    }

    /// Hands `deliveries` to `sink`; how many it took.
    mutating func offer(_ deliveries: [WatchDelivery], to sink: any WatchSink) -> Int {
        let taken = sink.offer(deliveries)
        if taken > 0 { offered.append(sink) }
        for delivery in deliveries.prefix(taken) {
            if case .events(let changes) = delivery.kind { eventsOffered += UInt64(changes.count) }
        }
        return taken
    }

    /// The sinks that took deliveries since the last call (a sink may appear more than once).
    mutating func takeOffered() -> [any WatchSink] {
        guard !offered.isEmpty else { return [] }
        defer { offered = [] }
        return offered
    }

    mutating func index(_ key: WatcherKey, _ range: KeyRange) {
        if range.end == nil {
            singleKey[range.key, default: [:]][key.stream, default: []].insert(key.id)
        } else {
            ranged[key.stream, default: []].insert(key.id)
        }
    }

    private mutating func unindex(_ key: WatcherKey, _ range: KeyRange) {
        if range.end == nil {
            singleKey[range.key]?[key.stream]?.remove(key.id)
            if singleKey[range.key]?[key.stream]?.isEmpty == true { singleKey[range.key]?[key.stream] = nil }
            if singleKey[range.key]?.isEmpty == true { singleKey[range.key] = nil }
        } else {
            ranged[key.stream]?.remove(key.id)
            if ranged[key.stream]?.isEmpty == true { ranged[key.stream] = nil }
        }
    }

    mutating func remove(_ key: WatcherKey, _ watcher: Watcher) {
        if watcher.synced {
            unindex(key, watcher.range)
        } else {
            unsynced.remove(key)
            streams[key.stream]?.unsyncedCount -= 1
        }
        streams[key.stream]?.watchers[key.id] = nil
    }

    /// A synced watcher misses changes from `main` on; it will read them from the backend.
    mutating func fallBehind(_ key: WatcherKey, from main: Int64) {
        guard var watcher = streams[key.stream]?.watchers[key.id], watcher.synced else { return }
        unindex(key, watcher.range)
        watcher.synced = false
        watcher.next = main
        streams[key.stream]!.watchers[key.id] = watcher
        streams[key.stream]!.unsyncedCount += 1
        unsynced.insert(key)
    }

    /// An unsynced watcher has every change up to the newest revision: it joins the synced.
    mutating func catchUp(_ key: WatcherKey) {
        guard let watcher = streams[key.stream]?.watchers[key.id], !watcher.synced else { return }
        unsynced.remove(key)
        streams[key.stream]!.watchers[key.id]!.synced = true
        streams[key.stream]!.unsyncedCount -= 1
        index(key, watcher.range)
        answerProgressIfSynced(key.stream)
    }

    /// Hands an unsynced watcher whose missing history is all in memory its events, and
    /// makes it synced.
    mutating func catchUpFromRecent(_ key: WatcherKey, _ watcher: Watcher, maxBytes: Int) {
        var events = recent.changes(from: watcher.next).filter { watcher.wants($0) }
        var through = revision
        if let cut = WatchHub.cut(events, maxBytes: maxBytes) {
            events = cut.events
            through = cut.through
        }
        if !events.isEmpty {
            let delivery = WatchDelivery(watchID: key.id, kind: .events(events), revision: revision)
            guard offer([delivery], to: streams[key.stream]!.sink) == 1 else { return }
        }
        streams[key.stream]!.watchers[key.id]!.delivered(through: through, sentEvents: !events.isEmpty)
        if through >= revision { catchUp(key) }
    }

    mutating func cancelCompacted(_ key: WatcherKey, _ watcher: Watcher) {
        guard let sink = streams[key.stream]?.sink else { return }
        remove(key, watcher)
        // etcd reports the compaction with no revision in the header.
        _ = offer([WatchDelivery(watchID: key.id, kind: .compacted(compactionFloor), revision: 0)], to: sink)
        answerProgressIfSynced(key.stream)
    }

    mutating func answerProgressIfSynced(_ streamID: ObjectIdentifier) {
        guard let stream = streams[streamID], stream.progressWanted, stream.unsyncedCount == 0 else { return }
        streams[streamID]!.progressWanted = false
        guard !stream.watchers.isEmpty else { return }
        _ = offer([WatchDelivery(watchID: -1, kind: .progress, revision: revision)], to: stream.sink)
    }

    /// Settles what needs no history (compacted or future starts) and picks up to `count`
    /// unsynced watchers whose sinks have room, with the revisions to read for them.
    mutating func planCatchUp(watchers count: Int, maxBytes: Int) -> CatchUpPlan? {
        guard !stopped, !replacing else {
            catchUpScheduled = false
            return nil
        }
        let current = revision
        // History past this is not in the backend yet, only (maybe) among the recent changes.
        let readable = min(current, committedRevision)
        var chosen: [(WatcherKey, Watcher)] = []
        for key in unsynced {
            guard let stream = streams[key.stream], let watcher = stream.watchers[key.id] else { continue }
            if watcher.next < compactionFloor {
                cancelCompacted(key, watcher)
            } else if watcher.next > current {
                catchUp(key)
            } else if recent.covers(from: watcher.next), stream.sink.hasRoom {
                catchUpFromRecent(key, watcher, maxBytes: maxBytes)
            } else if watcher.next <= readable, chosen.count < count, stream.sink.hasRoom {
                chosen.append((key, watcher))
            }
            // Otherwise it waits: for room, or for the backend to commit what it needs.
        }
        guard let from = chosen.map(\.1.next).min() else {
            catchUpScheduled = false
            return nil
        }
        return CatchUpPlan(epoch: epoch, from: from, through: readable, watchers: chosen)
    }

    var hasUnsyncedWithRoom: Bool {
        unsynced.contains { streams[$0.stream]?.sink.hasRoom == true }
    }

    /// The periodic progress notification: synced watchers that asked for it and were sent no
    /// events since the last one (and whose start is not in the future) learn the newest revision.
    mutating func notifyIdleWatchers() {
        let current = revision
        for (streamID, stream) in streams {
            var deliveries: [WatchDelivery] = []
            for watcher in stream.watchers.values where watcher.progressNotify {
                if watcher.synced, !watcher.sentEventsSinceProgress, watcher.next <= current + 1 {
                    deliveries.append(WatchDelivery(watchID: watcher.id, kind: .progress, revision: current))
                }
                streams[streamID]!.watchers[watcher.id]!.sentEventsSinceProgress = false
            }
            if !deliveries.isEmpty { _ = offer(deliveries, to: stream.sink) }
        }
    }
}

/// The newest applied batches of changes, bounded in count and bytes: every change from
/// `start` to the newest revision.
struct RecentChanges {
    private var batches: Deque<[Change]> = []
    private var count = 0
    private var bytes = 0
    /// Every change of a main revision at or after this one is held.
    private(set) var start: Int64

    /// Holds nothing: the newest revision is `revision`.
    init(after revision: Int64) {
        start = revision + 1
    }

    func covers(from main: Int64) -> Bool { main >= start }

    mutating func append(_ changes: [Change], limits: WatchHub.Limits) {
        batches.append(changes)
        count += changes.count
        bytes += changes.reduce(0) { $0 + $1.estimatedSize }
        while count > limits.recentChanges || bytes > limits.recentBytes, let oldest = batches.popFirst() {
            count -= oldest.count
            bytes -= oldest.reduce(0) { $0 + $1.estimatedSize }
            start = oldest.last!.revision.main + 1
        }
    }

    /// The held changes of main revisions from `main` on, in order.
    func changes(from main: Int64) -> [Change] {
        var result: [Change] = []
        for batch in batches.reversed() {
            guard let first = batch.first else { continue }
            if first.revision.main >= main {
                result.append(contentsOf: batch.reversed())
            } else {
                result.append(contentsOf: batch.reversed().prefix { $0.revision.main >= main })
                break
            }
        }
        return result.reversed()
    }
}
