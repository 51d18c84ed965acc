/// Observers of disk latency, fed to etcd's histograms `etcd_disk_wal_fsync_duration_seconds`
/// and `etcd_disk_backend_commit_duration_seconds` once the metrics endpoint exists.
public struct DiskMetrics: Sendable {
    /// Called with the duration of every write-ahead log `fdatasync`.
    public var walFsync: (@Sendable (Duration) -> Void)?
    /// Called with the duration of every backend batch commit.
    public var backendCommit: (@Sendable (Duration) -> Void)?

    public init(walFsync: (@Sendable (Duration) -> Void)? = nil, backendCommit: (@Sendable (Duration) -> Void)? = nil) {
        self.walFsync = walFsync
        self.backendCommit = backendCommit
    }
}
