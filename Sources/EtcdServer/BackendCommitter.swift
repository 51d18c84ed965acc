import Backend
import Dispatch
import Locking
import MVCC
import Synchronization

/// Commits the batches the apply loop applied to the backend, in order, on its own queue.
///
/// The apply loop answers a batch's requests once it is applied to the in-memory store (its
/// entries are in the log already, and a restart replays what the backend lacks), then goes on
/// to the next batch while this commits the previous ones: etcd's backend commits in the
/// background the same way. Batches that queue up during a commit go in one transaction.
/// Until a batch's commit lands, readers find its records in the published store's
/// uncommitted layers; once it lands, its layer goes, and the watch hub learns that watchers
/// catching up may read it from the backend.
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

    /// Batches queued beyond this make the apply loop wait for the commits (each holds its
    /// records in memory until then).
    static let backlogLimit = 64

    private struct Queue {
        var batches: [Batch] = []
        var passScheduled = false
    }

    private let backend: SQLiteBackend
    private let published: PublishedState
    private let watchHub: WatchHub
    private let metricHooks: MetricHooks
    private let queue = DispatchQueue(label: "swift-etcd backend commits")
    private let queued = Locked(Queue())

    init(backend: SQLiteBackend, published: PublishedState, watchHub: WatchHub, metricHooks: MetricHooks) {
        self.backend = backend
        self.published = published
        self.watchHub = watchHub
        self.metricHooks = metricHooks
    }

    /// Queues `batch` for commit after those queued before it.
    func submit(_ batch: Batch) {
        let schedule = queued.withLock { queued in
            queued.batches.append(batch)
            defer { queued.passScheduled = true }
            return !queued.passScheduled
        }
        if schedule { queue.async { self.commitQueued() } }
    }

    /// Whether the apply loop should wait for the commits before it applies more.
    var isBacklogged: Bool { queued.withLock { $0.batches.count > Self.backlogLimit } }

    /// Returns once every batch submitted before the call is committed.
    func drain() {
        queue.sync {}
    }

    private func commitQueued() {
        while let batches = takeBatches() {
            let start = ContinuousClock.now
            do {
                try backend.commit(
                    batches.count == 1 ? batches[0].changes : batches.flatMap(\.changes),
                    meta: batches.reduce(into: [:]) { meta, batch in meta.merge(batch.meta) { $1 } },
                    documents: batches.reduce(into: [:]) { documents, batch in documents.merge(batch.documents) { $1 } },
                    leases: batches.reduce(into: [:]) { leases, batch in leases.merge(batch.leases) { $1 } },
                    removingAtOrBefore: batches.last!.compaction)
            } catch {
                EtcdServer.fatal("failed to commit applied entries to the backend", error)
            }
            metricHooks.backendCommit?(ContinuousClock.now - start)
            published.committed(layers: batches.count, throughRevision: batches.last!.revision)
            watchHub.committed(through: batches.last!.revision)
        }
    }

    /// The batches the next transaction commits: all those queued, except that a compaction
    /// (which deletes what it compacted) ends a transaction; nil when none is left.
    private func takeBatches() -> [Batch]? {
        queued.withLock { queued in
            guard !queued.batches.isEmpty else {
                queued.passScheduled = false
                return nil
            }
            let end = (queued.batches.firstIndex { $0.compaction != nil }).map { $0 + 1 } ?? queued.batches.count
            defer { queued.batches.removeFirst(end) }
            return Array(queued.batches[..<end])
        }
    }
}
