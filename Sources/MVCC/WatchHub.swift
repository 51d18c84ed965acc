import Backend
import DequeModule
import Dispatch
import Locking
import Synchronization

/// Where a watch stream takes the hub's deliveries: the gRPC stream in the server, a collector
/// in tests. One sink carries many watchers, each known by its ID on that sink.
package protocol WatchSink: AnyObject, Sendable {
    /// Takes deliveries, in order, while its backlog has room; returns how many it took.
    /// Deliveries without events (creation, cancellation, progress) must always be taken.
    /// Called with the hub's lock held: it must only append to its backlog, and leave starting
    /// to write them to ``deliveriesOffered()``.
    func offer(_ deliveries: [WatchDelivery]) -> Int
    /// Called once the hub released its lock, for each sink that took deliveries while it
    /// held it: start writing them (schedule the drain on the stream's event loop).
    func deliveriesOffered()
    /// Whether the backlog has room for events now.
    ///
    /// A sink that refused events or answered false here must call ``WatchHub/sinkHasRoom(_:)``
    /// once it has room again: its watchers wait for that to catch up.
    var hasRoom: Bool { get }
}

/// One response the hub hands a sink for one watcher.
package struct WatchDelivery: Sendable, Equatable {
    package enum Kind: Sendable, Equatable {
        /// The watcher exists.
        case created
        /// The watcher was not created (`watchID` is -1), for this reason.
        case refused(String)
        /// Events of whole revisions, in revision order.
        case events([Change])
        /// Everything up to `revision` was delivered (the stream's own request when `watchID`
        /// is -1, else the watcher's periodic notification).
        case progress
        /// The watcher needed history compacted away at this revision, and is gone.
        case compacted(Int64)
        /// The client cancelled the watcher.
        case canceled
    }

    package var watchID: Int64
    package var kind: Kind
    /// The store revision the response reports.
    package var revision: Int64

    package init(watchID: Int64, kind: Kind, revision: Int64) {
        self.watchID = watchID
        self.kind = kind
        self.revision = revision
    }
}

/// What one watcher asks for.
package struct WatchRequest: Sendable {
    package var range: KeyRange
    /// The first revision to report: 0 for changes after now; an older one replays history.
    package var startRevision: Int64
    /// The ID the client chose, or 0 for the stream's next free one.
    package var watchID: Int64
    package var skipsPuts: Bool
    package var skipsDeletes: Bool
    /// Whether the watcher wants periodic progress notifications when idle.
    package var progressNotify: Bool

    package init(
        range: KeyRange, startRevision: Int64 = 0, watchID: Int64 = 0, skipsPuts: Bool = false, skipsDeletes: Bool = false,
        progressNotify: Bool = false
    ) {
        self.range = range
        self.startRevision = startRevision
        self.watchID = watchID
        self.skipsPuts = skipsPuts
        self.skipsDeletes = skipsDeletes
        self.progressNotify = progressNotify
    }
}

/// The watchable side of the store: every watcher of every stream, fed with each applied
/// batch's changes and, when behind, with history read from the backend.
///
/// A watcher is *synced* when it has been handed every change up to the newest revision the
/// hub was told about; the apply thread hands such watchers new changes directly (``notify(_:store:)``).
/// A watcher starting in the past, or whose stream's backlog was full when changes came, is
/// *unsynced*: a background pass reads its history from the backend in bounded batches and,
/// once it has reached the newest revision, it rejoins the synced watchers. So a stream that
/// does not read holds at most its sink's backlog in memory, never delays the apply thread or
/// other streams, and loses nothing: its watchers resume from the backend when it reads again.
package final class WatchHub: Sendable {
    package struct Limits: Sendable {
        /// Changes, and bytes of them, read from the backend per catch-up batch and handed to
        /// one watcher at once (whole revisions: one may add more).
        package var catchUpChanges = 1000
        package var catchUpBytes = 1 << 20
        /// Unsynced watchers served by one catch-up pass.
        package var watchersPerPass = 512
        /// The newest changes kept in memory, so a watcher a little behind catches up without
        /// reading the backend (and one behind under heavy writes always reaches the head).
        package var recentChanges = 10_000
        package var recentBytes = 8 << 20
        /// How often idle watchers that asked for it get a progress notification
        /// (etcd's `--experimental-watch-progress-notify-interval`).
        package var progressInterval: Duration = .seconds(600)

        package init() {}
    }

    private let backend: SQLiteBackend
    private let limits: Limits
    private let timer: any WatchTimer
    private let state: Locked<State>
    private let queue = DispatchQueue(label: "swift-etcd.watch-catch-up")

    /// `timer` decides when timed work runs (progress notifications, retrying a failed read):
    /// real time unless a test passes a clock it advances by hand.
    package init(backend: SQLiteBackend, store: KeyValueStore, limits: Limits = Limits(), timer: any WatchTimer = DispatchWatchTimer()) {
        self.backend = backend
        self.limits = limits
        self.timer = timer
        state = Locked(State(store: store))
        scheduleProgressTick()
    }

    /// Runs `body` under the hub's lock, then, with the lock released, tells each sink that
    /// took deliveries to start writing them: nothing but appends to backlogs happens under
    /// the lock.
    private func withState<Result>(_ body: (inout State) -> Result) -> Result {
        let (result, offered) = state.withLock { state in
            let result = body(&state)
            return (result, state.takeOffered())
        }
        for sink in offered { sink.deliveriesOffered() }
        return result
    }

    /// What etcd's watch metrics report: streams, watchers, those catching up, events sent.
    package struct Statistics: Sendable, Equatable {
        package var streams: Int
        package var watchers: Int
        package var unsynced: Int
        package var events: UInt64
    }

    package func statistics() -> Statistics {
        state.withLock { state in
            Statistics(
                streams: state.streams.count, watchers: state.streams.values.reduce(0) { $0 + $1.watchers.count },
                unsynced: state.unsynced.count, events: state.eventsOffered)
        }
    }

    // MARK: Streams

    /// Creates a watcher on `sink`'s stream and returns its ID (nil when refused). The sink is
    /// offered its `created` response (or the refusal) before any event, then its events.
    @discardableResult
    package func watch(_ request: WatchRequest, on sink: any WatchSink) -> Int64? {
        let (id, behind) = withState { state -> (Int64?, Bool) in
            let streamID = ObjectIdentifier(sink)
            let current = state.revision
            var stream = state.streams[streamID] ?? Stream(sink: sink)
            func refuse(_ reason: String) -> (Int64?, Bool) {
                _ = state.offer([WatchDelivery(watchID: -1, kind: .refused(reason), revision: current)], to: sink)
                return (nil, false)
            }
            if request.range.isEmpty { return refuse("mvcc: watcher range is empty") }
            if request.startRevision < 0 { return refuse("etcdserver: mvcc: required revision has been compacted") }
            let id: Int64
            if request.watchID != 0 {
                guard stream.watchers[request.watchID] == nil else {
                    return refuse("mvcc: duplicate watch ID provided on the WatchStream")
                }
                id = request.watchID
            } else {
                while stream.watchers[stream.nextAutoID] != nil { stream.nextAutoID += 1 }
                id = stream.nextAutoID
                stream.nextAutoID += 1
            }
            _ = state.offer([WatchDelivery(watchID: id, kind: .created, revision: current)], to: sink)
            let start = request.startRevision
            let synced = start == 0 || start > current
            stream.watchers[id] = Watcher(
                id: id, range: request.range, skipsPuts: request.skipsPuts, skipsDeletes: request.skipsDeletes,
                progressNotify: request.progressNotify, next: synced ? max(current + 1, start) : start, synced: synced)
            let key = WatcherKey(stream: streamID, id: id)
            if synced {
                state.index(key, request.range)
            } else {
                state.unsynced.insert(key)
                stream.unsyncedCount += 1
            }
            state.streams[streamID] = stream
            return (id, !synced)
        }
        if behind { scheduleCatchUp() }
        return id
    }

    /// Cancels watcher `id` of `sink`'s stream, offering its `canceled` response; an unknown
    /// ID is ignored, as etcd does.
    package func cancel(_ id: Int64, on sink: any WatchSink) {
        withState { state in
            let streamID = ObjectIdentifier(sink)
            guard let watcher = state.streams[streamID]?.watchers[id] else { return }
            state.remove(WatcherKey(stream: streamID, id: id), watcher)
            _ = state.offer([WatchDelivery(watchID: id, kind: .canceled, revision: state.revision)], to: sink)
            state.answerProgressIfSynced(streamID)
        }
    }

    /// The stream asks for progress: once every watcher on it is synced (now, or when the
    /// last one catches up), it is offered one progress delivery with watch ID -1 for the
    /// newest revision. A stream without watchers gets nothing, as in etcd.
    package func requestProgress(on sink: any WatchSink) {
        withState { state in
            let streamID = ObjectIdentifier(sink)
            guard state.streams[streamID]?.watchers.isEmpty == false else { return }
            state.streams[streamID]!.progressWanted = true
            state.answerProgressIfSynced(streamID)
        }
    }

    /// The stream is over: forget its watchers.
    package func close(_ sink: any WatchSink) {
        withState { state in
            let streamID = ObjectIdentifier(sink)
            guard let stream = state.streams[streamID] else { return }
            for watcher in stream.watchers.values { state.remove(WatcherKey(stream: streamID, id: watcher.id), watcher) }
            state.streams[streamID] = nil
        }
    }

    /// The sink's backlog has room again: its unsynced watchers may catch up.
    package func sinkHasRoom(_ sink: any WatchSink) {
        let behind = withState { $0.streams[ObjectIdentifier(sink)].map { $0.unsyncedCount > 0 } ?? false }
        if behind { scheduleCatchUp() }
    }

    // MARK: The apply thread

    /// A compaction at `main` is about to be committed to the backend: history before it may
    /// disappear from any read that follows.
    package func compacting(atMain main: Int64) {
        withState { $0.compactionFloor = max($0.compactionFloor, main) }
    }

    /// Hands synced watchers the changes of one applied batch (whole revisions, in order),
    /// once `store` (which includes them) is visible to reads. A watcher whose sink is full
    /// falls behind and catches up later, from the newest changes kept in memory or from the
    /// backend once ``committed(through:)`` says it holds them.
    package func notify(_ changes: [Change], store: KeyValueStore) {
        let fellBehind = withState { state -> Bool in
            state.revision = store.revision
            state.compactionFloor = max(state.compactionFloor, store.compactedRevision)
            guard !changes.isEmpty else { return false }
            state.recent.append(changes, limits: limits)
            // The synced watchers that may want a change, by stream: those of each changed key
            // (a watcher of one key is indexed under that key only), and every range watcher.
            var candidates = state.ranged
            for key in Set(changes.lazy.map(\.kv.key)) {
                for (streamID, ids) in state.singleKey[key] ?? [:] {
                    if let others = candidates[streamID] { candidates[streamID] = others.union(ids) } else { candidates[streamID] = ids }
                }
            }
            var fellBehind = false
            for (streamID, ids) in candidates {
                guard let (sink, deliveries) = state.streams[streamID]?.deliveries(of: changes, to: ids, revision: store.revision)
                else { continue }
                let taken = deliveries.isEmpty ? 0 : state.offer(deliveries, to: sink)
                state.streams[streamID]!.delivered(deliveries.prefix(taken))
                for delivery in deliveries.dropFirst(taken) {
                    guard case .events(let events) = delivery.kind else { continue }
                    state.fallBehind(WatcherKey(stream: streamID, id: delivery.watchID), from: events[0].revision.main)
                    fellBehind = true
                }
            }
            return fellBehind
        }
        if fellBehind { scheduleCatchUp() }
    }

    /// The backend holds every change up to `revision` (its commits lag the applied batches):
    /// watchers catching up may read that far from it.
    package func committed(through revision: Int64) {
        let waiting = withState { state -> Bool in
            state.committedRevision = max(state.committedRevision, revision)
            return state.hasUnsyncedWithRoom
        }
        if waiting { scheduleCatchUp() }
    }

    /// The backend is about to be replaced (a snapshot from the leader): reads from now on
    /// may see another history, so catch-up passes wait.
    package func replacingBackend() {
        withState { state in
            state.replacing = true
            state.epoch += 1
        }
    }

    /// The backend was replaced and `store` rebuilt from it: every watcher catches up from
    /// the new backend (or learns that its history was compacted).
    package func replacedBackend(store: KeyValueStore) {
        withState { state in
            let previous = state.revision
            state.replacing = false
            state.epoch += 1
            state.revision = store.revision
            state.committedRevision = store.revision
            state.compactionFloor = max(state.compactionFloor, store.compactedRevision)
            state.recent = RecentChanges(after: store.revision)
            for (streamID, stream) in state.streams {
                for watcher in stream.watchers.values where watcher.synced {
                    state.fallBehind(WatcherKey(stream: streamID, id: watcher.id), from: max(watcher.next, previous + 1))
                }
            }
        }
        scheduleCatchUp()
    }

    /// Stops background work (the member is shutting down).
    package func stop() {
        withState { $0.stopped = true }
    }

    // MARK: Catching up

    private func scheduleCatchUp() {
        let schedule = withState { state -> Bool in
            guard !state.catchUpScheduled, !state.stopped else { return false }
            state.catchUpScheduled = true
            return true
        }
        if schedule { queue.async { self.catchUp() } }
    }

    /// One pass: picks unsynced watchers whose sinks have room, reads one batch of their
    /// history from the backend (outside the lock), hands each its events, and moves those
    /// that reached the newest revision to the synced watchers.
    private func catchUp() {
        let (planned, more) = withState { state -> (CatchUpPlan?, Bool) in
            let plan = state.planCatchUp(watchers: limits.watchersPerPass, maxBytes: limits.catchUpBytes)
            // Watchers served from memory in part still have history to read.
            return (plan, plan == nil && !state.stopped && !state.replacing && state.hasUnsyncedWithRoom)
        }
        guard let plan = planned else {
            if more { scheduleCatchUp() }
            return
        }
        let read: (changes: [Change], through: Int64)
        do {
            read = try backend.changes(
                from: plan.from, through: plan.through, limit: limits.catchUpChanges, maxBytes: limits.catchUpBytes)
        } catch {
            // A failed read is retried; the watchers keep their place.
            withState { $0.catchUpScheduled = false }
            timer.schedule(after: .milliseconds(100), on: queue) { self.scheduleCatchUp() }
            return
        }
        let again = withState { state -> Bool in
            state.catchUpScheduled = false
            guard state.epoch == plan.epoch else { return true }
            for (key, planned) in plan.watchers {
                guard let watcher = state.streams[key.stream]?.watchers[key.id], !watcher.synced, watcher.next == planned.next else {
                    continue
                }
                if watcher.next < state.compactionFloor {
                    state.cancelCompacted(key, watcher)
                    continue
                }
                // The batch may end before this watcher's place (it was cut short for others).
                guard read.through >= watcher.next else { continue }
                var events = read.changes.filter { watcher.wants($0) }
                // The recent changes in memory may bring it to the head without another pass.
                var through = read.through
                if through < state.revision, through == plan.through, state.recent.covers(from: through + 1) {
                    events += state.recent.changes(from: through + 1).filter { watcher.wants($0) }
                    through = state.revision
                }
                if let cut = Self.cut(events, maxBytes: limits.catchUpBytes) {
                    events = cut.events
                    through = cut.through
                }
                if !events.isEmpty {
                    // The store's revision, as etcd reports it: the events may reach past the backend's.
                    let delivery = WatchDelivery(watchID: key.id, kind: .events(events), revision: state.revision)
                    guard state.offer([delivery], to: state.streams[key.stream]!.sink) == 1 else { continue }
                }
                state.streams[key.stream]!.watchers[key.id]!.delivered(through: through, sentEvents: !events.isEmpty)
                if through >= state.revision { state.catchUp(key) }
            }
            return state.hasUnsyncedWithRoom
        }
        if again { scheduleCatchUp() }
    }

    /// Waits until no catch-up pass is scheduled or running (for tests: passes run on a queue).
    func settle() {
        for _ in 0..<10_000 {
            queue.sync {}
            if !withState({ $0.catchUpScheduled }) { return }
        }
    }

    /// When `events` hold more than `maxBytes`, the whole revisions that fit (at least one) and
    /// the last of them: one delivery of a catching-up watcher stays about that size.
    static func cut(_ events: [Change], maxBytes: Int) -> (events: [Change], through: Int64)? {
        var bytes = 0
        for (index, change) in events.enumerated() {
            bytes += change.estimatedSize
            guard bytes > maxBytes, index + 1 < events.count, events[index + 1].revision.main != change.revision.main else {
                continue
            }
            return (Array(events[...index]), change.revision.main)
        }
        return nil
    }

    // MARK: Progress notifications

    private func scheduleProgressTick() {
        timer.schedule(after: limits.progressInterval, on: queue) { [weak self] in
            guard let self, !self.withState({ $0.stopped }) else { return }
            self.withState { $0.notifyIdleWatchers() }
            self.scheduleProgressTick()
        }
    }
}
