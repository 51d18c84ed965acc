import Backend
import MVCC
import Raft
import WAL

/// Records that everything applied up to `index` is a snapshot, in the one order a crash
/// cannot break: the backend made durable up to `index` (it may already be ahead), then the
/// snapshot file, then its marker in the log. A crash between two steps restarts from the
/// previous snapshot (a file without a marker is skipped), never from a marker whose backend
/// lacks the data. The member takes a snapshot every `--snapshot-count` entries, installs one
/// from the leader, and records one at start when its backend is ahead of its log.
enum DurableSnapshot {
    static func record(
        index: UInt64, term: UInt64, confState: ConfState, backend: SQLiteBackend, log: WriteAheadLog, snapDirectory: String
    ) throws {
        try backend.makeDurable(snapshotIndex: Int64(index))
        let file = SnapshotFile(index: index, term: term, confState: PeerWire.encode(confState))
        try Snapshotter.save(file, directory: snapDirectory)
        try log.saveSnapshot(file.marker)
    }
}
