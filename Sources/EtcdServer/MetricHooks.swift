/// Observers of what the member measures as it happens, fed to etcd's histograms
/// (EtcdMetrics' `hooks`): disk latencies, peer round trips, granted lease TTLs. Everything
/// else the metrics show is read from the member when `/metrics` is scraped.
package struct MetricHooks: Sendable {
    /// Called with the duration of every write-ahead log `fdatasync`.
    package var walFsync: (@Sendable (Duration) -> Void)?
    /// Called with the duration of every backend batch commit.
    package var backendCommit: (@Sendable (Duration) -> Void)?
    /// Called with each probe's round trip to a peer (its member ID).
    package var peerRoundTrip: (@Sendable (UInt64, Duration) -> Void)?
    /// Called with the TTL, in seconds, of every lease this member applies a grant of.
    package var leaseGranted: (@Sendable (Int64) -> Void)?

    package init(
        walFsync: (@Sendable (Duration) -> Void)? = nil, backendCommit: (@Sendable (Duration) -> Void)? = nil,
        peerRoundTrip: (@Sendable (UInt64, Duration) -> Void)? = nil, leaseGranted: (@Sendable (Int64) -> Void)? = nil
    ) {
        self.walFsync = walFsync
        self.backendCommit = backendCommit
        self.peerRoundTrip = peerRoundTrip
        self.leaseGranted = leaseGranted
    }
}
