import Auth
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
import TransportSecurity
import WAL

extension EtcdServer {
    package struct Configuration: Sendable {
        package var name: String
        package var dataDirectory: String
        package var initialCluster: String
        package var initialClusterToken: String
        package var advertiseClientURLs: [String]
        /// etcd's `--listen-peer-urls`: where this member hears from the others.
        package var listenPeerURLs: [String] = []
        /// `listenPeerURLs` bound by the caller before anything else (as etcd binds every
        /// listener first); nil binds them first thing in ``EtcdServer/init(_:)``.
        package var peerListenAddresses: [PeerListenAddress]?
        /// etcd's `--initial-advertise-peer-urls`: this member's peer URLs as the cluster knows
        /// them. When a data directory is made they must be the URLs `--initial-cluster` lists
        /// for this member (empty: take those).
        package var initialAdvertisePeerURLs: [String] = []
        /// Peer TLS (`--peer-cert-file` …): used on `https` peer URLs, listening and dialing.
        package var peerTLS: TLSCredentials?
        /// How long a peer connecting over TLS has to finish its handshake.
        package var peerHandshakeTimeout: Duration = .seconds(5)
        /// etcd's `--heartbeat-interval`: one Raft tick.
        package var heartbeatInterval: Duration = .milliseconds(100)
        /// etcd's `--election-timeout`.
        package var electionTimeout: Duration = .milliseconds(1000)
        /// etcd's `--max-request-bytes`.
        package var maxRequestBytes = 1_572_864
        /// etcd's `--max-txn-ops`.
        package var maxTxnOperations = 128
        /// etcd's `--quota-backend-bytes`: writes that would pass it are refused and raise the
        /// NOSPACE alarm; 0 or less, no quota.
        package var quotaBackendBytes: Int64 = 2 * 1024 * 1024 * 1024
        /// etcd's `--backend-batch-interval`: the longest an applied write waits for its backend
        /// commit (it is answered once logged and applied; see `BackendCommitter`).
        package var backendBatchInterval: Duration = .milliseconds(100)
        /// etcd's `--backend-batch-limit`: queued changes that make the backend commit at once.
        package var backendBatchLimit = 10_000
        /// etcd's `--snapshot-count`: applied entries between snapshots (etcd 3.6's default).
        package var snapshotCount: UInt64 = 10_000
        /// etcd's `--max-snapshots`: snapshot files kept (0 keeps all).
        package var maxSnapshots = 5
        /// etcd's `--max-wals`: log segments kept once a snapshot covers them (0 keeps all).
        package var maxWALs = 5
        /// etcd's `--wal-dir`: where the log lives, if not `<data-dir>/member/wal`.
        package var walDirectory: String?
        /// Size of a log segment; smaller only to exercise rollover and purge in tests.
        package var walSegmentSize = WriteAheadLog.defaultSegmentSize
        /// Hooks for the metrics' histograms (disk latencies, peer round trips, lease TTLs).
        package var metricHooks = MetricHooks()
        /// etcd's `--initial-cluster-state existing`: join a running cluster (after `member add`)
        /// instead of bootstrapping a new one.
        package var joinExistingCluster = false
        /// etcd's `--strict-reconfig-check`: refuse membership changes that would leave fewer
        /// started voters than a quorum.
        package var strictReconfigCheck = true
        /// etcd's `--max-learners`: learners the cluster may have at once.
        package var maxLearners = 1
        /// etcd's `--auth-token-ttl`: how long a simple token lives without use.
        package var authTokenTTL: Duration = .seconds(300)
        /// JWT keys, with etcd's `--auth-token jwt,…` (nil: simple tokens).
        package var jwtTokens: JWTTokens?
        /// etcd's `--bcrypt-cost`.
        package var bcryptCost = PasswordHasher.defaultCost
        /// Promote a learner by itself once it has caught up with the leader (not in etcd).
        package var autoPromoteLearners = false
        /// Called once when this member learns it was removed from the cluster; it should stop.
        package var onRemovedFromCluster: (@Sendable () -> Void)?
        /// etcd's `--experimental-snapshot-catchup-entries`: entries kept in memory behind each
        /// snapshot, so a follower that lags less than this catches up from the log, not a snapshot.
        package var snapshotCatchUpEntries: UInt64 = 5000
        /// etcd's `--experimental-corrupt-check-time`: how often the leader compares its keyspace
        /// hash with its followers' (nil: never).
        package var corruptCheckInterval: Duration?
        /// etcd's `--experimental-compact-hash-check-time`, when
        /// `--experimental-compact-hash-check-enabled`: how often the leader compares the hashes
        /// at the newest compaction (nil: never).
        package var compactHashCheckInterval: Duration?
        /// etcd's `--force-new-cluster`: restart as the only member of the cluster (see
        /// `EtcdServer.forceNewCluster`).
        package var forceNewCluster = false
        /// etcd's `--unsafe-no-fsync`: the log is written, never synced (see
        /// `WriteAheadLog.Options.skipsSync`).
        package var unsafeNoFsync = false
        /// etcd's `--auto-compaction-mode` and `--auto-compaction-retention` (nil: off).
        package var autoCompaction: AutoCompactor.Mode?
        /// How often revision-mode auto-compaction checks (etcd: 5 minutes; shorter in tests).
        package var autoCompactionRevisionCheckInterval: Duration = .seconds(300)
        /// How often idle watchers that asked for progress notifications get one
        /// (etcd's `--experimental-watch-progress-notify-interval`).
        package var watchProgressNotifyInterval: Duration = .seconds(600)
        /// etcd's `--warning-apply-duration`: a request whose apply takes longer is logged and
        /// counted (`etcd_server_slow_apply_total`).
        package var warningApplyDuration: Duration = .milliseconds(100)
        /// etcd's `--warning-unary-request-duration`: a unary call that takes longer is logged
        /// (`request stats`).
        package var warningUnaryRequestDuration: Duration = .milliseconds(300)

        package init(
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
        package var requestTimeout: Duration { .seconds(5) + electionTimeout * 2 }

        /// Where the log lives: `--wal-dir`, or `member/wal` in the data directory.
        package var resolvedWALDirectory: String {
            walDirectory ?? ((dataDirectory as NSString).appendingPathComponent("member") as NSString).appendingPathComponent("wal")
        }

        /// Whether the member has a log already: a later start, which ignores the bootstrap flags.
        package var hasLog: Bool { WriteAheadLog.exists(directory: resolvedWALDirectory) }
    }
}
