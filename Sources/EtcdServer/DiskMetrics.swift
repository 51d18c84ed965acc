/// Observers of disk latency, fed to etcd's histograms `etcd_disk_wal_fsync_duration_seconds`
/// and `etcd_disk_backend_commit_duration_seconds` (EtcdMetrics' `diskHooks`).
package struct DiskMetrics: Sendable {
    /// Called with the duration of every write-ahead log `fdatasync`.
    package var walFsync: (@Sendable (Duration) -> Void)?
    /// Called with the duration of every backend batch commit.
    package var backendCommit: (@Sendable (Duration) -> Void)?

    package init(walFsync: (@Sendable (Duration) -> Void)? = nil, backendCommit: (@Sendable (Duration) -> Void)? = nil) {
        self.walFsync = walFsync
        self.backendCommit = backendCommit
    }
}
