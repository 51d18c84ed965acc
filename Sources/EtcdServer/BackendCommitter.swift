import Backend
import Dispatch
import Locking
import MVCC
import Synchronization

/// Commits the batches the apply loop applied to the backend, in order, on its own queue, in
/// transactions of many batches.
///
/// The apply loop answers a batch's requests once it is applied to the in-memory store (its
/// entries are in the log already, and a restart replays what the backend lacks), then goes on
/// to the next batch. As etcd's backend does (`--backend-batch-interval`, `--backend-batch-limit`),
/// this commits what queued up once the first of it has waited the interval, or at once when
/// the queue holds the limit's worth of changes: one SQLite transaction then carries many
/// batches, where a commit per batch cost a single client's put a quarter of its CPU. Until a
/// batch's commit lands, readers find its records in the published store's uncommitted
/// layers; once it lands, its layer goes, and the watch hub learns that watchers catching up
/// may read it from the backend. Whoever needs the backend to hold everything applied (a
/// backup, a hash, a snapshot) calls ``commitNow()``.
final class BackendCommitter: Sendable {
    /// One applied batch, as the backend stores it.
    struct Batch: Sendable {
        var changes: [Change]
        var meta: [SQLiteBackend.Meta: Int64]
        var documents: [SQLiteBackend.Document: [UInt8]]
        var leases: [Int64: SQLiteBackend.LeaseRow?]
        var compaction: (main: Int64, kept: Set<Revision>)?
        /// The store's revision after the batch.
        var revision: Int64
    }

    /// When queued batches are committed: `interval` after the first of them queued, or at once
    /// when they hold `limit` changes (etcd's `--backend-batch-interval` and
    /// `--backend-batch-limit`, 100 ms and 10,000 by default). Queued batches also commit at
    /// once past ``batchesDue`` batches or ``bytesDue`` bytes of keys and values, which bound
    /// what the layers hold in memory.
    struct Schedule: Sendable {
        var interval: Duration
        var limit: Int
    }

    /// Batches queued that make a commit due whatever the schedule says (each is a layer
    /// readers may look through).
    static let batchesDue = 64
    /// Bytes of keys and values queued that make a commit due (etcd's limit counts only
    /// operations, however large).
    static let bytesDue = 16 << 20
    /// Batches queued beyond this make the apply loop wait for the commits: the backend cannot
    /// keep up.
    static let backlogLimit = 4 * batchesDue

    private enum Pass {
        case timed
        case immediate
    }

    private struct Queue {
        var batches: [Batch] = []
        var changes = 0
        var bytes = 0
        /// Bytes of keys and values taken by a commit that has not landed yet.
        var committing = 0
        /// The pass that will take the queued batches, if one is scheduled.
        var scheduled: Pass?
        /// Identifies the scheduled pass: one superseded (a timed pass made immediate) finds
        /// another token and does nothing.
        var token: UInt64 = 0
    }

    private let backend: SQLiteBackend
    private let published: PublishedState
    private let watchHub: WatchHub
    private let metricHooks: MetricHooks
    private let schedule: Schedule
    private let queue = DispatchQueue(label: "swift-etcd backend commits")
    private let queued = Locked(Queue())

    init(backend: SQLiteBackend, published: PublishedState, watchHub: WatchHub, metricHooks: MetricHooks, schedule: Schedule) {
        self.backend = backend
        self.published = published
        self.watchHub = watchHub
        self.metricHooks = metricHooks
        self.schedule = schedule
    }

    /// Queues `batch` for commit after those queued before it.
    func submit(_ batch: Batch) {
        let bytes = Self.bytes(of: batch)
        let next = queued.withLock { queued -> (Pass, UInt64)? in
            queued.batches.append(batch)
            queued.changes += batch.changes.count
            queued.bytes += bytes
            let due = queued.changes >= schedule.limit || queued.batches.count >= Self.batchesDue || queued.bytes >= Self.bytesDue
            switch queued.scheduled {
            case .immediate?: return nil
            case .timed? where !due: return nil
            case nil where !due: queued.scheduled = .timed
            case .timed?, nil: queued.scheduled = .immediate
            }
            queued.token &+= 1
            return (queued.scheduled!, queued.token)
        }
        switch next {
        case (.immediate, let token)?: queue.async { self.pass(token) }
        case (.timed, let token)?: DispatchWatchTimer().schedule(after: schedule.interval, on: queue) { self.pass(token) }
        case nil: break
        }
    }

    /// Bytes of keys and values applied that the backend's size does not show yet: the space
    /// quota counts them (a commit may be 100 ms away, and a client's puts in between would
    /// otherwise all pass a check against the last committed size).
    var pendingBytes: Int { queued.withLock { $0.bytes + $0.committing } }

    /// Whether the apply loop should wait for the commits before it applies more.
    var isBacklogged: Bool { queued.withLock { $0.batches.count > Self.backlogLimit } }

    /// Commits every batch submitted before the call; returns once they are committed.
    func commitNow() {
        queue.sync { commitQueued(token: nil) }
    }

    /// A scheduled pass: commits what is queued unless another pass superseded it.
    private func pass(_ token: UInt64) {
        commitQueued(token: token)
    }

    /// Takes every queued batch (for the pass `token`, or for whoever calls with nil), leaving
    /// the next one to schedule a pass, and commits them.
    private func commitQueued(token: UInt64?) {
        let batches = queued.withLock { queued -> [Batch] in
            if let token, token != queued.token { return [] }
            defer { queued = Queue(committing: queued.committing + queued.bytes, token: queued.token) }
            return queued.batches
        }
        commit(batches)
    }

    /// Commits `batches` in order, a transaction for all of them, except that a compaction
    /// (which deletes what it compacted) ends a transaction.
    private func commit(_ batches: [Batch]) {
        var rest = batches[...]
        while !rest.isEmpty {
            let end = rest.firstIndex { $0.compaction != nil }.map { $0 + 1 } ?? rest.endIndex
            commitTransaction(rest[..<end])
            rest = rest[end...]
        }
    }

    /// The bytes of keys and values a batch counts for the space quota until it is committed.
    private static func bytes(of batch: Batch) -> Int {
        batch.changes.reduce(0) { $0 + $1.kv.key.count + $1.kv.value.count }
    }

    private func commitTransaction(_ batches: ArraySlice<Batch>) {
        let start = ContinuousClock.now
        let bytes = batches.reduce(0) { $0 + Self.bytes(of: $1) }
        do {
            try backend.commit(
                batches.count == 1 ? batches.first!.changes : batches.flatMap(\.changes),
                meta: batches.reduce(into: [:]) { meta, batch in meta.merge(batch.meta) { $1 } },
                documents: batches.reduce(into: [:]) { documents, batch in documents.merge(batch.documents) { $1 } },
                leases: batches.reduce(into: [:]) { leases, batch in leases.merge(batch.leases) { $1 } },
                removingAtOrBefore: batches.last!.compaction,
                // The backend's size takes these bytes over: they stop counting as pending first.
                sized: { if bytes > 0 { self.queued.withLock { $0.committing -= bytes } } })
        } catch {
            EtcdServer.fatal("failed to commit applied entries to the backend", error)
        }
        metricHooks.backendCommit?(ContinuousClock.now - start)
        published.committed(layers: batches.count, throughRevision: batches.last!.revision)
        watchHub.committed(through: batches.last!.revision)
    }
}
