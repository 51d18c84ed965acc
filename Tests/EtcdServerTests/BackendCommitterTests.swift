import Auth
import Backend
import Foundation
import MVCC
import Testing

@testable import EtcdServer

/// The committer commits applied batches in intervals (etcd's `--backend-batch-interval` and
/// `--backend-batch-limit`): until then readers find them in the published layers; a backup
/// or hash forces the commit.
@Suite("Backend commits in intervals")
struct BackendCommitterTests {
    /// A member's pieces around a committer: the backend, the published state, the watch hub.
    final class Rig {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("committer-\(UUID().uuidString)")
        let backend: SQLiteBackend
        let published: PublishedState
        let watchHub: WatchHub
        let committer: BackendCommitter
        var store = KeyValueStore()

        init(_ schedule: BackendCommitter.Schedule) throws {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            backend = try SQLiteBackend(path: directory.appendingPathComponent("backend.sqlite").path, synchronousCommits: false)
            watchHub = WatchHub(backend: backend, store: store)
            published = PublishedState(EtcdServer.Published(
                store: store, appliedIndex: 0, committedRevision: store.revision, voters: 1, membership: Membership(), auth: AuthState(), alarms: AlarmList()))
            committer = BackendCommitter(
                backend: backend, published: published, watchHub: watchHub, metricHooks: MetricHooks(), schedule: schedule)
        }

        deinit {
            committer.commitNow()
            watchHub.stop()
            try? FileManager.default.removeItem(at: directory)
        }

        /// Applies one batch putting `keys` (as the apply loop does: publish, then submit).
        func apply(_ keys: [String]) {
            var reader = OverlayReader(layers: published.uncommittedLayers, base: backend)
            let (_, changes) = store.write(reader: reader) { writer in
                for key in keys { writer.put(Array(key.utf8), value: Array("v".utf8), lease: 0) }
            }
            reader.add(changes)
            published.publish(store: store, appliedIndex: UInt64(store.revision), uncommitted: reader.pending)
            committer.submit(BackendCommitter.Batch(
                changes: changes, meta: [.revision: store.revision], documents: [:], leases: [:], compaction: nil,
                revision: store.revision))
        }

        var committedRevision: Int64 { published.withLock { $0.committedRevision } }
        var layers: Int { published.uncommittedLayers.count }

        /// The keys as readers of the published state see them.
        func readableKeys() throws -> [String] {
            let (store, layers) = published.withStore { store, state in (store, state.uncommitted) }
            let range = try store.range([0], end: [0], reader: OverlayReader(layers: layers, base: backend))
            return range.kvs.map { String(decoding: $0.key, as: UTF8.self) }
        }

        /// Whether the backend alone holds the record of `key` at its newest revision.
        func backendHolds(revision: Int64) throws -> Bool {
            try backend.keyValues(at: [Revision(main: revision)]) != [nil]
        }

        /// Waits (bounded) until the backend committed through `revision`.
        func waitForCommit(through revision: Int64) -> Bool {
            for _ in 0..<500 {
                if committedRevision >= revision { return true }
                usleep(10_000)
            }
            return false
        }
    }

    @Test func batchesWaitForTheIntervalAndReadersFindThemMeanwhile() throws {
        let rig = try Rig(.init(interval: .seconds(3600), limit: 10_000))
        rig.apply(["a"])
        rig.apply(["b", "c"])
        rig.apply(["d"])
        // An hour to go: nothing is committed, every key reads from the layers.
        usleep(50_000)
        #expect(rig.committedRevision == 1)
        #expect(rig.layers == 3)
        #expect(try rig.backendHolds(revision: 2) == false)
        #expect(try rig.readableKeys() == ["a", "b", "c", "d"])
        // The quota counts what waits: four keys of one byte with values of one.
        #expect(rig.committer.pendingBytes == 8)
        // A backup or hash commits what is queued at once.
        rig.committer.commitNow()
        #expect(rig.committer.pendingBytes == 0)
        #expect(rig.committedRevision == 4)
        #expect(rig.layers == 0)
        #expect(try rig.backendHolds(revision: 2) && rig.backendHolds(revision: 4))
        #expect(try rig.readableKeys() == ["a", "b", "c", "d"])
    }

    @Test func theIntervalCommitsOnItsOwn() throws {
        let rig = try Rig(.init(interval: .milliseconds(20), limit: 10_000))
        rig.apply(["a"])
        rig.apply(["b"])
        #expect(rig.waitForCommit(through: 3))
        #expect(rig.layers == 0)
        #expect(try rig.backendHolds(revision: 3))
        // A later batch gets an interval of its own.
        rig.apply(["c"])
        #expect(rig.waitForCommit(through: 4))
        #expect(try rig.readableKeys() == ["a", "b", "c"])
    }

    @Test func reachingTheLimitCommitsAtOnce() throws {
        let rig = try Rig(.init(interval: .seconds(3600), limit: 4))
        rig.apply(["a", "b"])
        rig.apply(["c"])
        usleep(50_000)
        #expect(rig.committedRevision == 1)
        // The fourth change makes the commit due; the hour is not waited for.
        rig.apply(["d"])
        #expect(rig.waitForCommit(through: 4))
        #expect(rig.layers == 0)
        // Queued batches past their bound commit at once whatever the limit.
        for index in 0..<BackendCommitter.batchesDue { rig.apply(["k\(index)"]) }
        #expect(rig.waitForCommit(through: 4 + Int64(BackendCommitter.batchesDue)))
    }

    @Test func aNegativeLimitCommitsEveryBatchAtOnce() throws {
        let rig = try Rig(.init(interval: .seconds(3600), limit: -1))
        rig.apply(["a"])
        #expect(rig.waitForCommit(through: 2))
        rig.apply(["b"])
        #expect(rig.waitForCommit(through: 3))
    }
}
