import Dispatch
import Logging
import WAL

/// Removes, in the background, the log segments and snapshot files a new snapshot made
/// unnecessary (etcd's `--max-wals` and `--max-snapshots`), off the loop thread.
final class FilePurger: Sendable {
    private let walDirectory: String
    private let snapDirectory: String
    private let maxWALs: Int
    private let maxSnapshots: Int
    private let logger: Logger
    private let queue = DispatchQueue(label: "swift-etcd purge")

    init(walDirectory: String, snapDirectory: String, maxWALs: Int, maxSnapshots: Int, logger: Logger) {
        self.walDirectory = walDirectory
        self.snapDirectory = snapDirectory
        self.maxWALs = maxWALs
        self.maxSnapshots = maxSnapshots
        self.logger = logger
    }

    /// Purges what a snapshot at `snapshotIndex` made unnecessary, after the purges before it.
    func purge(snapshotIndex: UInt64) {
        queue.async { [self] in
            do {
                try WriteAheadLog.purge(directory: walDirectory, snapshotIndex: snapshotIndex, maxFiles: maxWALs)
                try Snapshotter.purge(directory: snapDirectory, keep: maxSnapshots)
            } catch {
                // Old files stay until the next snapshot's purge; nothing needed is at risk.
                logger.warning("failed to purge old files", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Returns once the purges asked for before are done.
    func wait() {
        queue.sync {}
    }
}
