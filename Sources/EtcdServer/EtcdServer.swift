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

/// One swift-etcd member: the Raft node that orders every write, its log and snapshots, the
/// store it applies to, and the peer transport that joins it to the other members.
///
/// All state that changes goes through one loop thread (``MemberLoop``): requests reach it
/// through an inbox, batched, and it answers through completions. Reads take the latest
/// published store on the caller's thread and never wait for the loop, except that a
/// linearizable read first waits for its read index to be applied.
public final class EtcdServer: Sendable {
    public struct Configuration: Sendable {
        public var name: String
        public var dataDirectory: String
        public var initialCluster: String
        public var initialClusterToken: String
        public var advertiseClientURLs: [String]
        /// etcd's `--listen-peer-urls`: where this member hears from the others.
        public var listenPeerURLs: [String] = []
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

    /// The version this member reports (the etcd API level it speaks).
    public static let version = "3.6.0"

    public let configuration: Configuration
    /// This member's ID (etcd's, for the same bootstrap flags).
    public let memberID: UInt64
    public let clusterID: UInt64
    let snapDirectory: String
    private let walDirectory: String
    private let backend: SQLiteBackend
    /// Every watcher on this member, fed by the loop with each applied batch.
    public let watchHub: WatchHub
    /// This member's leases; the loop applies what Raft decides, the leader's keep-alives renew.
    public let lessor: Lessor
    /// Lease IDs this member hands out: its ID's low 12 bits, then a millisecond clock and a
    /// counter (after etcd's generator), so members rarely pick the same one (a clash is
    /// refused as `lease already exists`).
    private let nextLeaseIDs: Mutex<UInt64>
    private let logger = Logger(label: "swift-etcd")
    /// Purges old log segments and snapshot files off the loop thread.
    private let purgeQueue = DispatchQueue(label: "swift-etcd purge")
    let inbox = MemberInbox()
    private let loopExited = DispatchSemaphore(value: 0)
    private let published: PublishedState
    private let transport: PeerTransport
    private let peerEventLoops: MultiThreadedEventLoopGroup

    struct Proposal {
        let request: WriteRequest
        let completion: @Sendable (Result<WriteResponse, EtcdError>) -> Void
        let deadline: ContinuousClock.Instant
    }

    struct LeaderTransfer {
        let target: UInt64
        let completion: @Sendable (Result<Void, EtcdError>) -> Void
        let deadline: ContinuousClock.Instant
    }

    /// A membership change as a client asked for it.
    enum MembershipRequest {
        case add(peerURLs: [String], isLearner: Bool)
        case remove(id: UInt64)
        case update(id: UInt64, peerURLs: [String])
        case promote(id: UInt64)
    }

    /// The member a change added, removed, updated or promoted, and the members after it.
    public typealias MembershipResult = Result<(member: Member, members: [Member]), EtcdError>

    struct MembershipProposal {
        let request: MembershipRequest
        let completion: @Sendable (MembershipResult) -> Void
        let deadline: ContinuousClock.Instant
        /// Sent by a follower to this member as leader (a promotion needs the leader's view).
        var forwarded = false
    }

    struct ReadWaiter {
        let completion: @Sendable (Result<Void, EtcdError>) -> Void
        let deadline: ContinuousClock.Instant
    }

    /// The Raft facts requests and `Status` report.
    struct RaftSummary {
        var term: UInt64 = 0
        var leader: NodeID = noNode
        var role: StateRole = .follower
        var commitIndex: UInt64 = 0
        var appliedIndex: UInt64 = 0
    }

    struct Published {
        var store: KeyValueStore
        var appliedIndex: UInt64
        /// Records of `store` the backend has not committed yet, a layer per applied batch,
        /// oldest first (acknowledged writes wait for the log, not for the backend): reads
        /// find them here.
        var uncommitted: [[Revision: KeyValue]] = []
        /// The newest revision the backend holds.
        var committedRevision: Int64 = 0
        var raft = RaftSummary()
        var voters: Int
        var membership: Membership
    }

    /// Opens (or creates) the member's data directory, recovers its state from the newest
    /// snapshot, the log and the backend, starts listening to its peers and starts the loop.
    ///
    /// A member's identity (its ID and its cluster's) is fixed when its data directory is made:
    /// from `--initial-cluster` for a new cluster, from the running cluster's membership when
    /// joining one; later starts take it from the log and ignore the bootstrap flags, as etcd does.
    public init(_ configuration: Configuration) throws {
        self.configuration = configuration
        let memberDirectory = (configuration.dataDirectory as NSString).appendingPathComponent("member")
        snapDirectory = (memberDirectory as NSString).appendingPathComponent("snap")
        walDirectory = configuration.walDirectory ?? (memberDirectory as NSString).appendingPathComponent("wal")
        try FileManager.default.createDirectory(atPath: snapDirectory, withIntermediateDirectories: true)
        // Snapshots being sent or received when the member stopped are of no use now.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: snapDirectory)) ?? []
        where name.contains(".sending.sqlite") || name.contains(".receiving.sqlite") {
            try? FileManager.default.removeItem(atPath: (snapDirectory as NSString).appendingPathComponent(name))
        }
        backend = try SQLiteBackend(path: (snapDirectory as NSString).appendingPathComponent("backend.sqlite"), synchronousCommits: false)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        peerEventLoops = group
        let start: Start
        let recovered: MemberLoop.Recovered
        do {
            start = try Self.identify(
                configuration: configuration, backend: backend, walDirectory: walDirectory, snapDirectory: snapDirectory, group: group)
            recovered = try Self.recover(start, configuration: configuration, backend: backend, snapDirectory: snapDirectory)
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        memberID = start.memberID
        clusterID = start.clusterID
        lessor = Lessor(minTTL: Lessor.minTTL(electionTimeout: configuration.electionTimeout))
        do {
            try Self.restoreLeases(lessor, from: backend, store: recovered.store)
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        // Bit 60 set: IDs print as 16 hex digits, as etcdctl users are used to.
        let milliseconds = UInt64(Date().timeIntervalSince1970 * 1000) & 0xFF_FFFF_FFFF
        nextLeaseIDs = Mutex((1 << 60) | (UInt64(start.memberID & 0xFFF) << 48) | (milliseconds << 8))
        var watchLimits = WatchHub.Limits()
        watchLimits.progressInterval = configuration.watchProgressNotifyInterval
        watchHub = WatchHub(backend: backend, store: recovered.store, limits: watchLimits)
        published = PublishedState(Published(
            store: recovered.store, appliedIndex: recovered.appliedIndex, committedRevision: recovered.store.revision,
            voters: recovered.confState.voters.count, membership: recovered.membership))

        let (inbox, backend, lessor) = (inbox, backend, lessor)
        let published = published
        let transport = PeerTransport(
            localID: memberID, clusterID: clusterID, group: group, snapshotDirectory: snapDirectory, logger: logger,
            callbacks: PeerTransport.Callbacks(
                deliver: { messages in inbox.enqueue { $0.messages += messages } },
                unreachable: { peer in inbox.enqueue { _ = $0.unreachable.insert(peer) } },
                snapshotStatus: { peer, status in inbox.enqueue { $0.snapshotReports.append((peer, status)) } },
                copyBackend: { path in try backend.copy(to: path) },
                membership: { published.withLock { $0.membership } },
                promote: { id, completion in
                    let proposal = MembershipProposal(
                        request: .promote(id: id), completion: completion, deadline: .now + configuration.requestTimeout,
                        forwarded: true)
                    if !inbox.submit({ $0.membershipChanges.append(proposal) }) { completion(.failure(.stopped)) }
                },
                renewLease: { id in Self.renew(id, on: lessor) },
                leaseTimeToLive: { id in Self.timeToLive(id, on: lessor) }))
        self.transport = transport
        transport.setPeers(recovered.membership.peers)
        do {
            for url in configuration.listenPeerURLs {
                guard let (host, port) = PeerURL.hostAndPort(url) else {
                    throw ConfigurationError("--listen-peer-urls: \(url) is not an http://host:port URL (TLS is not supported yet)")
                }
                do {
                    try transport.listen(host: host, port: port)
                } catch {
                    throw ConfigurationError("listen tcp \(host):\(port): \(error)")
                }
            }
        } catch {
            transport.stop()
            recovered.log.close()
            try? group.syncShutdownGracefully()
            throw error
        }
        let loop = HandOff(MemberLoop(server: self, recovered: recovered, backend: backend, transport: transport, logger: logger))
        let thread = Thread { [self] in
            loop.take().run()
            loopExited.signal()
        }
        thread.name = "swift-etcd raft"
        thread.start()
    }

    /// Who this member is and what its log holds, before the Raft state is rebuilt.
    struct Start {
        var memberID: UInt64
        var clusterID: UInt64
        var log: WriteAheadLog
        /// Entries and hard state after the snapshot the log was opened from.
        var contents: WriteAheadLog.Contents?
        var snapshot: SnapshotFile?
        /// For a data directory made now: the membership to start with and the entries a new
        /// cluster's log begins with.
        var membership: Membership?
        var bootstrapEntries: [Entry] = []
    }

    private static func identify(
        configuration: Configuration, backend: SQLiteBackend, walDirectory: String, snapDirectory: String,
        group: any EventLoopGroup
    ) throws -> Start {
        var walOptions = WriteAheadLog.Options(segmentSize: configuration.walSegmentSize)
        walOptions.fsyncObserver = configuration.diskMetrics.walFsync
        if WriteAheadLog.exists(directory: walDirectory) {
            let (log, contents, snapshot) = try openLog(directory: walDirectory, snapDirectory: snapDirectory, options: walOptions)
            return Start(
                memberID: contents.metadata.memberID, clusterID: contents.metadata.clusterID, log: log, contents: contents,
                snapshot: snapshot)
        }
        let bootstrap = try ClusterConfiguration(initialCluster: configuration.initialCluster, token: configuration.initialClusterToken)
        guard let local = bootstrap.members.first(where: { $0.name == configuration.name }) else {
            throw ConfigurationError("couldn't find local name \"\(configuration.name)\" in the initial cluster configuration")
        }
        var start: Start
        if configuration.joinExistingCluster {
            // Ask the running members who is in the cluster; this member must have been added
            // (etcdctl member add) with the peer URLs it advertises.
            let others = bootstrap.members.filter { $0.name != configuration.name }.flatMap(\.peerURLs)
            let (clusterID, membership) = try PeerTransport.fetchMembership(from: others, group: group)
            guard let added = membership.members.first(where: { Set($0.peerURLs) == Set(local.peerURLs) }) else {
                throw ConfigurationError(
                    "member with peer URLs \(local.peerURLs.joined(separator: ",")) is not in the existing cluster; "
                        + "add it first with 'etcdctl member add \(configuration.name) --peer-urls=\(local.peerURLs.joined(separator: ","))'")
            }
            // Stored before the log exists, so a restart before anything is applied still knows its peers.
            try backend.commit([], meta: [:], documents: [.membership: membership.encoded()])
            start = Start(
                memberID: added.id, clusterID: clusterID,
                log: try WriteAheadLog.create(
                    directory: walDirectory, metadata: WALMetadata(memberID: added.id, clusterID: clusterID),
                    snapshot: WALSnapshot(index: 0, term: 0), options: walOptions),
                membership: membership)
        } else {
            start = Start(
                memberID: local.id, clusterID: bootstrap.id,
                log: try WriteAheadLog.create(
                    directory: walDirectory, metadata: WALMetadata(memberID: local.id, clusterID: bootstrap.id),
                    snapshot: WALSnapshot(index: 0, term: 0), options: walOptions),
                membership: Membership(), bootstrapEntries: bootstrap.bootstrapEntries())
        }
        return start
    }

    /// Rebuilds the Raft storage and the store from disk: the newest snapshot the log has a
    /// marker for, the entries after it, and the backend (which may be ahead of the snapshot,
    /// never behind it). The membership Raft starts with is the backend's, which is at the
    /// backend's applied index, so membership changes before it are never replayed.
    private static func recover(
        _ start: Start, configuration: Configuration, backend: SQLiteBackend, snapDirectory: String
    ) throws -> MemberLoop.Recovered {
        let store = try KeyValueStore(restoringFrom: backend)
        let applied = UInt64(try backend.meta(.consistentIndex) ?? 0)
        let appliedTerm = UInt64(try backend.meta(.consistentTerm) ?? 0)
        let log = start.log
        let snapshotIndex = start.snapshot?.index ?? 0
        guard applied >= snapshotIndex else {
            throw ConfigurationError(
                "backend: it applied entries up to \(applied) but the snapshot at \(snapshotIndex) says more are applied; "
                    + "the backend is older than the log")
        }
        var confState = ConfState()
        if let stored = try backend.document(.confState) {
            confState = try PeerWire.decodeConfState(stored)
        } else if let snapshot = start.snapshot {
            confState = try PeerWire.decodeConfState(snapshot.confState)
        }
        var membership = start.membership ?? Membership()
        if let stored = try backend.document(.membership) { membership = try Membership(encoded: stored) }

        var storage = MemoryStorage(
            snapshot: SnapshotMetadata(index: snapshotIndex, term: start.snapshot?.term ?? 0, confState: confState))
        if let contents = start.contents {
            storage.append(contents.entries.map(EntryEnvelope.raftEntry))
            // A snapshot is committed by definition; the logged commit index may predate it.
            storage.setHardState(HardState(
                term: contents.hardState.term, vote: contents.hardState.vote, commit: max(contents.hardState.commit, snapshotIndex)))
        } else if !start.bootstrapEntries.isEmpty {
            // A new cluster's first entries are committed by definition: every founding member has them.
            let hardState = HardState(term: 1, vote: noNode, commit: UInt64(start.bootstrapEntries.count))
            try log.save(
                hardState: WALHardState(term: hardState.term, vote: hardState.vote, commit: hardState.commit),
                entries: start.bootstrapEntries.map(EntryEnvelope.logEntry))
            storage.append(start.bootstrapEntries)
            storage.setHardState(hardState)
        }
        var recoveredSnapshotIndex = snapshotIndex
        if try storage.lastIndex() < applied {
            // The backend is ahead of the log: its log was removed, or a snapshot from the leader
            // was installed and the member stopped before recording it. The backend is then the
            // newest snapshot, and the log continues after it.
            let hardState = storage.hardState
            try backend.makeDurable(snapshotIndex: Int64(applied))
            try Snapshotter.save(
                SnapshotFile(index: applied, term: appliedTerm, confState: PeerWire.encode(confState)), directory: snapDirectory)
            try log.saveSnapshot(WALSnapshot(index: applied, term: appliedTerm))
            storage = MemoryStorage(snapshot: SnapshotMetadata(index: applied, term: appliedTerm, confState: confState))
            let term = max(hardState.term, appliedTerm)
            let vote = term == hardState.term ? hardState.vote : noNode
            try log.save(hardState: WALHardState(term: term, vote: vote, commit: applied), entries: [])
            storage.setHardState(HardState(term: term, vote: vote, commit: applied))
            recoveredSnapshotIndex = applied
        }
        var raft = RaftConfig(id: start.memberID, storage: storage)
        raft.electionTick = configuration.electionTicks
        raft.heartbeatTick = 1
        raft.applied = min(applied, storage.hardState.commit)
        raft.checkQuorum = true
        raft.preVote = true
        raft.maxSizePerMessage = 1 << 20
        raft.maxInflightMessages = 256
        let node = try RaftNode(config: raft)
        return MemberLoop.Recovered(
            node: node, storage: storage, log: log, store: store, appliedIndex: applied, appliedTerm: appliedTerm,
            snapshotIndex: recoveredSnapshotIndex, confState: confState, membership: membership)
    }

    /// Opens the log from the newest snapshot it has a marker for (a crash between writing a
    /// snapshot file and its marker leaves a newer file without one).
    private static func openLog(directory: String, snapDirectory: String, options: WriteAheadLog.Options) throws
        -> (WriteAheadLog, WriteAheadLog.Contents, SnapshotFile?)
    {
        let snapshots = try Snapshotter.loadAll(directory: snapDirectory) { name, error in
            Logger(label: "swift-etcd").warning(
                "failed to load snapshot file; renamed to .broken", metadata: ["file": "\(name)", "error": "\(error)"])
        }
        var lastError: WALError = .snapshotNotFound(WALSnapshot(index: 0, term: 0))
        for snapshot in snapshots.map(Optional.some) + [nil] {
            do {
                let (log, contents) = try WriteAheadLog.open(
                    directory: directory, from: snapshot?.marker ?? WALSnapshot(index: 0, term: 0), options: options)
                return (log, contents, snapshot)
            } catch {
                guard case .snapshotNotFound = error else { throw error }
                lastError = error
            }
        }
        throw lastError
    }

    /// Stops the loop after the requests already queued; later requests fail with
    /// `etcdserver: server stopped`.
    public func stop() {
        let first = inbox.enqueue { inbox in
            defer { inbox.stopping = true }
            return !inbox.stopping
        }
        guard first else { return }
        loopExited.wait()
        watchHub.stop()
        purgeQueue.sync {}
        try? peerEventLoops.syncShutdownGracefully()
    }

    /// Publishes the store as applied, with the records of its batch the backend has not
    /// committed yet (``committed(layers:throughRevision:)`` says when it has).
    func publish(store: KeyValueStore, appliedIndex: UInt64, uncommitted: [Revision: KeyValue]) {
        published.withLock {
            $0.store = store
            $0.appliedIndex = appliedIndex
            $0.uncommitted.append(uncommitted)
        }
    }

    /// Publishes a store the backend holds entirely (a member starting, or one that installed
    /// a snapshot).
    func publish(committedStore store: KeyValueStore, appliedIndex: UInt64) {
        published.withLock {
            $0.store = store
            $0.appliedIndex = appliedIndex
            $0.uncommitted = []
            $0.committedRevision = store.revision
        }
    }

    /// The backend committed the oldest `layers` uncommitted batches, up to `revision`.
    func committed(layers: Int, throughRevision revision: Int64) {
        published.withLock {
            $0.uncommitted.removeFirst(layers)
            $0.committedRevision = revision
        }
    }

    /// The records applied but not yet committed to the backend, oldest batch first.
    var uncommittedLayers: [[Revision: KeyValue]] { published.withLock { $0.uncommitted } }

    /// The latest published store and how to read its records.
    private func readableStore() -> (store: KeyValueStore, reader: any RevisionReader, term: UInt64) {
        published.withLock { state in
            let reader: any RevisionReader = state.uncommitted.isEmpty ? backend : OverlayReader(layers: state.uncommitted, base: backend)
            return (state.store, reader, state.raft.term)
        }
    }

    func publish(raft: RaftSummary, voters: Int) {
        published.withLock {
            $0.raft = raft
            $0.voters = voters
        }
    }

    func publish(membership: Membership) {
        published.withLock { $0.membership = membership }
    }

    /// Removes log segments and snapshot files a snapshot at `snapshotIndex` made unnecessary, in the background.
    func purgeOldFiles(snapshotIndex: UInt64) {
        let (walDirectory, snapDirectory, configuration, logger) = (walDirectory, snapDirectory, configuration, logger)
        purgeQueue.async {
            do {
                try WriteAheadLog.purge(directory: walDirectory, snapshotIndex: snapshotIndex, maxFiles: configuration.maxWALs)
                try Snapshotter.purge(directory: snapDirectory, keep: configuration.maxSnapshots)
            } catch {
                // Old files stay until the next snapshot's purge; nothing needed is at risk.
                logger.warning("failed to purge old files", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Stops the process: after a failed write or sync nothing may be acknowledged, and the
    /// state on disk is what a restart recovers from.
    static func fatal(_ message: String, _ error: any Error) -> Never {
        FileHandle.standardError.write(Data("{\"level\":\"fatal\",\"msg\":\"\(message)\",\"error\":\"\(error)\"}\n".utf8))
        exit(1)
    }

    // MARK: Writes

    /// Proposes a write; `completion` runs once it is committed, applied and visible to reads
    /// here, or with etcd's error when it cannot be (no leader, timeout, stopping).
    public func propose(_ request: WriteRequest, completion: @escaping @Sendable (Result<WriteResponse, EtcdError>) -> Void) {
        if isLearner { return completion(.failure(.notSupportedForLearner)) }
        let proposal = Proposal(request: request, completion: completion, deadline: .now + configuration.requestTimeout)
        if !inbox.submit({ $0.proposals.append(proposal) }) { completion(.failure(.stopped)) }
    }

    /// Calls `completion` once a linearizable read may be served from the published store: the
    /// leader confirmed its leadership after the call and this member applied everything
    /// committed before it (Raft's ReadIndex). Concurrent reads share one confirmation.
    public func linearizableRead(completion: @escaping @Sendable (Result<Void, EtcdError>) -> Void) {
        // A member that leads a cluster of one voter is the only one that can commit, and it
        // answers writes only once applied: its published store already holds every write
        // acknowledged before this read began.
        let (alone, learner) = published.withLock { ($0.raft.role == .leader && $0.voters == 1, $0.membership[memberID]?.isLearner ?? false) }
        if alone { return completion(.success(())) }
        // A learner's applied state may lag without bound; etcd refuses it linearizable reads too.
        if learner { return completion(.failure(.notSupportedForLearner)) }
        let read = ReadWaiter(completion: completion, deadline: .now + configuration.requestTimeout)
        if !inbox.submit({ $0.reads.append(read) }) { completion(.failure(.stopped)) }
    }

    /// `Maintenance.MoveLeader`: hands leadership to voting member `target`; `completion` runs
    /// once `target` leads, or with etcd's error when this member does not lead, `target` cannot
    /// lead, or the transfer takes longer than the request timeout.
    public func moveLeader(to target: UInt64, completion: @escaping @Sendable (Result<Void, EtcdError>) -> Void) {
        let transfer = LeaderTransfer(target: target, completion: completion, deadline: .now + configuration.requestTimeout)
        if !inbox.submit({ $0.transfers.append(transfer) }) { completion(.failure(.stopped)) }
    }

    /// Whether this member is a learner (it refuses writes and linearizable reads, as etcd's do).
    public var isLearner: Bool { published.withLock { $0.membership[memberID]?.isLearner ?? false } }

    /// Changes the membership (`MemberAdd`, `MemberRemove`, `MemberUpdate`, `MemberPromote`);
    /// `completion` runs once the change is applied here, or with etcd's error.
    func changeMembership(_ request: MembershipRequest, completion: @escaping @Sendable (MembershipResult) -> Void) {
        let proposal = MembershipProposal(request: request, completion: completion, deadline: .now + configuration.requestTimeout)
        if !inbox.submit({ $0.membershipChanges.append(proposal) }) { completion(.failure(.stopped)) }
    }

    public func addMember(peerURLs: [String], isLearner: Bool, completion: @escaping @Sendable (MembershipResult) -> Void) {
        changeMembership(.add(peerURLs: peerURLs, isLearner: isLearner), completion: completion)
    }

    public func removeMember(_ id: UInt64, completion: @escaping @Sendable (MembershipResult) -> Void) {
        changeMembership(.remove(id: id), completion: completion)
    }

    public func updateMember(_ id: UInt64, peerURLs: [String], completion: @escaping @Sendable (MembershipResult) -> Void) {
        changeMembership(.update(id: id, peerURLs: peerURLs), completion: completion)
    }

    public func promoteMember(_ id: UInt64, completion: @escaping @Sendable (MembershipResult) -> Void) {
        changeMembership(.promote(id: id), completion: completion)
    }

    // MARK: Reads

    /// Answers a range from the latest published snapshot, on the caller's thread.
    public func range(_ request: Etcdserverpb_RangeRequest) throws(EtcdError) -> Etcdserverpb_RangeResponse {
        try TxnRules.validate(request)
        do throws(EtcdError) {
            return try range(request, in: readableStore())
        } catch .compacted where request.revision <= 0 {
            // A compaction committed after the snapshot was taken removed a record it names;
            // a newer snapshot has the record that replaced it.
            return try range(request, in: readableStore())
        }
    }

    private func range(
        _ request: Etcdserverpb_RangeRequest, in state: (store: KeyValueStore, reader: any RevisionReader, term: UInt64)
    ) throws(EtcdError) -> Etcdserverpb_RangeResponse {
        var response = try RangeRules.answer(request) { key, end, options in
            try state.store.range(key, end: end, options: options, reader: state.reader)
        }
        response.header = header(revision: state.store.revision, term: state.term)
        return response
    }

    /// Rejects a put etcd would reject before proposing it.
    public func validate(_ request: Etcdserverpb_PutRequest) throws(EtcdError) {
        try TxnRules.validate(request)
    }

    /// Rejects a transaction etcd would reject before proposing it.
    public func validate(_ request: Etcdserverpb_TxnRequest) throws(EtcdError) {
        try TxnRules.validate(request, maxOperations: configuration.maxTxnOperations)
    }

    /// A response header for this member at `revision`, with the current Raft term.
    public func header(revision: Int64) -> Etcdserverpb_ResponseHeader {
        header(revision: revision, term: published.withLock { $0.raft.term })
    }

    func header(revision: Int64, term: UInt64) -> Etcdserverpb_ResponseHeader {
        var header = Etcdserverpb_ResponseHeader()
        header.clusterID = clusterID
        header.memberID = memberID
        header.revision = revision
        header.raftTerm = term
        return header
    }

    public var currentRevision: Int64 { published.withLock { $0.store.revision } }

    // MARK: Leases

    /// Restores the lessor from `backend`: its leases, and the keys whose current record
    /// names one.
    static func restoreLeases(_ lessor: Lessor, from backend: SQLiteBackend, store: KeyValueStore) throws {
        let attachments = try backend.recordsWithLeases()
            .filter { store.currentRevision(of: $0.key) == $0.revision }
            .map { (key: $0.key, lease: $0.lease) }
        lessor.restore(try backend.leases(), attachments: attachments, now: .now)
    }

    /// `LeaseGrant`: etcd refuses TTLs above its maximum before proposing; an ID of 0 gets one
    /// of this member's.
    public func grantLease(_ request: Etcdserverpb_LeaseGrantRequest, completion: @escaping @Sendable (Result<WriteResponse, EtcdError>) -> Void) {
        guard request.ttl <= Lessor.maxTTL else { return completion(.failure(.leaseTTLTooLarge)) }
        var request = request
        if request.id == 0 {
            request.id = nextLeaseIDs.withLock { next in
                defer { next &+= 1 }
                return Int64(bitPattern: next & UInt64(Int64.max))
            }
        }
        propose(.leaseGrant(request), completion: completion)
    }

    /// `LeaseKeepAlive` for one lease: renewed by the leader (a follower forwards it); the
    /// lease's TTL, or `lease not found`.
    public func renewLease(_ id: Int64, completion: @escaping @Sendable (Result<Int64, EtcdError>) -> Void) {
        if lessor.isPrimary { return completion(Self.renew(id, on: lessor)) }
        guard let leader = leaderID else { return completion(.failure(.noLeader)) }
        transport.forward(.renewLease(id: id), to: leader) { result in
            completion(result.flatMap { response in response.leaseTTL.map { .success($0) } ?? .failure(.timeout) })
        }
    }

    /// `LeaseTimeToLive`: the leader's exact answer (a follower asks it); nil for no such lease.
    public func leaseTimeToLive(_ id: Int64, completion: @escaping @Sendable (Result<LeaseTimeToLive?, EtcdError>) -> Void) {
        if lessor.isPrimary { return completion(Self.timeToLive(id, on: lessor)) }
        guard let leader = leaderID else { return completion(.failure(.noLeader)) }
        transport.forward(.leaseTimeToLive(id: id), to: leader) { result in completion(result.map(\.timeToLive)) }
    }

    /// `LeaseLeases`: every lease this member knows, by ID.
    public var leaseIDs: [Int64] { lessor.ids }

    private static func renew(_ id: Int64, on lessor: Lessor) -> Result<Int64, EtcdError> {
        guard lessor.isPrimary else { return .failure(.notLeader) }
        do {
            return .success(try lessor.renew(id: id, now: .now))
        } catch {
            return .failure(.leaseNotFound)
        }
    }

    private static func timeToLive(_ id: Int64, on lessor: Lessor) -> Result<LeaseTimeToLive?, EtcdError> {
        guard lessor.isPrimary else { return .failure(.notLeader) }
        return .success(lessor.timeToLive(id: id, now: .now).map {
            LeaseTimeToLive(grantedTTL: $0.grantedTTL, remainingMilliseconds: Lessor.milliseconds($0.remaining), keys: $0.keys)
        })
    }

    /// The record `key` had at main revision `revision`, if it existed then and is still kept
    /// (what a watch event's `prev_kv` reports).
    public func keyValue(_ key: [UInt8], atRevision revision: Int64) -> KeyValue? {
        let (store, reader, _) = readableStore()
        let options = KeyValueStore.RangeOptions(limit: 1, revision: revision)
        return (try? store.range(key, end: nil, options: options, reader: reader))?.kvs.first
    }

    /// The member this one knows as leader; nil while there is none.
    public var leaderID: UInt64? {
        let leader = published.withLock { $0.raft.leader }
        return leader == noNode ? nil : leader
    }

    /// `Maintenance.Status` for this member.
    public func status() throws -> Etcdserverpb_StatusResponse {
        let (revision, raft) = published.withLock { ($0.store.revision, $0.raft) }
        var response = Etcdserverpb_StatusResponse()
        response.header = header(revision: revision, term: raft.term)
        response.version = Self.version
        response.dbSize = try backend.sizeInBytes()
        response.dbSizeInUse = response.dbSize
        response.leader = raft.leader
        response.raftIndex = raft.commitIndex
        response.raftAppliedIndex = raft.appliedIndex
        response.raftTerm = raft.term
        response.storageVersion = Self.version
        response.dbSizeQuota = configuration.quotaBackendBytes
        response.isLearner = isLearner
        if raft.leader == noNode { response.errors = [EtcdError.noLeader.description] }
        return response
    }

    /// `Maintenance.HashKV`: a CRC-32C of every record kept at or before `revision` (0: the
    /// newest), in revision order. Members that applied the same log agree on it, which is how
    /// to check that they converged; the value is swift-etcd's own, not comparable with etcd's.
    public func hashKV(revision: Int64) throws -> Etcdserverpb_HashKVResponse {
        let store = published.withLock { $0.store }
        let target = revision > 0 ? revision : store.revision
        if target > store.revision { throw EtcdError.futureRevision }
        if target < store.compactedRevision { throw EtcdError.compacted }
        // The hash reads the backend: wait for the commit of `target`, which follows its
        // acknowledgement within a backend transaction or two (bounded all the same).
        let deadline = ContinuousClock.now + .seconds(5)
        while published.withLock({ $0.committedRevision }) < target {
            guard ContinuousClock.now < deadline else { throw EtcdError.timeout }
            usleep(200)
        }
        var crc: UInt32 = 0
        var bytes: [UInt8] = []
        try backend.forEachChange { change in
            guard change.revision.main <= target else { return }
            bytes.removeAll(keepingCapacity: true)
            for number in [change.revision.main, change.revision.sub, change.kv.createRevision, change.kv.version, change.kv.lease] {
                withUnsafeBytes(of: number.bigEndian) { bytes.append(contentsOf: $0) }
            }
            bytes.append(change.kind == .delete ? 1 : 0)
            for field in [change.kv.key, change.kv.value] {
                withUnsafeBytes(of: UInt32(field.count).bigEndian) { bytes.append(contentsOf: $0) }
                bytes += field
            }
            crc = CRC32C.checksum(bytes, continuing: crc)
        }
        var response = Etcdserverpb_HashKVResponse()
        response.header = header(revision: store.revision)
        response.hash = crc
        response.compactRevision = store.compactedRevision
        response.hashRevision = target
        return response
    }

    /// The members as this member has applied them.
    public var members: [Member] { published.withLock { $0.membership.members } }
}

/// The member's latest published state behind one lock: what requests read without the loop
/// thread. A class so the peer transport can share it.
final class PublishedState: Sendable {
    private let state: Mutex<EtcdServer.Published>

    init(_ initial: EtcdServer.Published) {
        state = Mutex(initial)
    }

    func withLock<Result>(_ body: (inout EtcdServer.Published) -> Result) -> Result {
        state.withLock { body(&$0) }
    }
}
