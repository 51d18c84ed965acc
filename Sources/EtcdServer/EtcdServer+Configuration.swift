import Dispatch
import EtcdProto
import Foundation
import Lease
import Logging
import MVCC
import NIOCore
import NIOPosix
import Raft
import Synchronization
import WAL

extension EtcdServer {
    public struct Configuration: Sendable {
        public var name: String
        public var dataDirectory: String
        public var initialCluster: String
        public var initialClusterToken: String
        public var advertiseClientURLs: [String]
        /// etcd's `--listen-peer-urls`: where this member hears from the others.
        public var listenPeerURLs: [String] = []
        /// etcd's `--initial-advertise-peer-urls`: this member's peer URLs as the cluster knows
        /// them. When a data directory is made they must be the URLs `--initial-cluster` lists
        /// for this member (empty: take those).
        public var initialAdvertisePeerURLs: [String] = []
        /// etcd's `--heartbeat-interval`: one Raft tick.
        public var heartbeatInterval: Duration = .milliseconds(100)
        /// etcd's `--election-timeout`.
        public var electionTimeout: Duration = .milliseconds(1000)
        /// etcd's `--max-request-bytes`.
        public var maxRequestBytes = 1_572_864
        /// etcd's `--max-txn-ops`.
        public var maxTxnOperations = 128
        /// etcd's `--quota-backend-bytes` (reported in Status; enforced with the NOSPACE alarm later).
        public var quotaBackendBytes: Int64 = 2 * 1024 * 1024 * 1024
        /// etcd's `--snapshot-count`: applied entries between snapshots (etcd 3.6's default).
        public var snapshotCount: UInt64 = 10_000
        /// etcd's `--max-snapshots`: snapshot files kept (0 keeps all).
        public var maxSnapshots = 5
        /// etcd's `--max-wals`: log segments kept once a snapshot covers them (0 keeps all).
        public var maxWALs = 5
        /// etcd's `--wal-dir`: where the log lives, if not `<data-dir>/member/wal`.
        public var walDirectory: String?
        /// Size of a log segment; smaller only to exercise rollover and purge in tests.
        public var walSegmentSize = WriteAheadLog.defaultSegmentSize
        /// Hooks for the disk latency histograms.
        public var diskMetrics = DiskMetrics()
        /// etcd's `--initial-cluster-state existing`: join a running cluster (after `member add`)
        /// instead of bootstrapping a new one.
        public var joinExistingCluster = false
        /// etcd's `--strict-reconfig-check`: refuse membership changes that would leave fewer
        /// started voters than a quorum.
        public var strictReconfigCheck = true
        /// Promote a learner by itself once it has caught up with the leader (not in etcd).
        public var autoPromoteLearners = false
        /// Called once when this member learns it was removed from the cluster; it should stop.
        public var onRemovedFromCluster: (@Sendable () -> Void)?
        /// etcd's `--experimental-snapshot-catchup-entries`: entries kept in memory behind each
        /// snapshot, so a follower that lags less than this catches up from the log, not a snapshot.
        public var snapshotCatchUpEntries: UInt64 = 5000
        /// How often idle watchers that asked for progress notifications get one
        /// (etcd's `--experimental-watch-progress-notify-interval`).
        public var watchProgressNotifyInterval: Duration = .seconds(600)

        public init(
            name: String, dataDirectory: String, initialCluster: String, initialClusterToken: String,
            advertiseClientURLs: [String]
        ) {
            self.name = name
            self.dataDirectory = dataDirectory
            self.initialCluster = initialCluster
            self.initialClusterToken = initialClusterToken
            self.advertiseClientURLs = advertiseClientURLs
        }

        /// Ticks in an election timeout.
        var electionTicks: Int { max(2, Int(electionTimeout / heartbeatInterval)) }

        /// How long a request may wait for Raft: etcd's 5 s plus two election timeouts.
        public var requestTimeout: Duration { .seconds(5) + electionTimeout * 2 }
    }
}
