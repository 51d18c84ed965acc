import Auth
import Backend
import Dispatch
import EtcdProto
import Foundation
import Lease
import Locking
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
package final class EtcdServer: Sendable {

    /// The version this member reports (the etcd API level it speaks).
    package static let version = "3.6.0"

    package let configuration: Configuration
    /// This member's ID (etcd's, for the same bootstrap flags).
    package let memberID: UInt64
    package let clusterID: UInt64
    let snapDirectory: String
    let backend: SQLiteBackend
    /// Commits what the loop applied to ``backend``, in intervals.
    let committer: BackendCommitter
    /// Every watcher on this member, fed by the loop with each applied batch.
    package let watchHub: WatchHub
    /// Whether the member has published itself since it started (when its clients may be served).
    package let readiness = Readiness()
    /// This member's leases; the loop applies what Raft decides, the leader's keep-alives renew.
    package let lessor: Lessor
    /// The keep-alives and time-to-live questions this member answers while it leads.
    let leaderLeases: LeaderLeaseAnswers
    /// Lease IDs this member hands out: its ID's low 12 bits, then a millisecond clock and a
    /// counter (after etcd's generator), so members rarely pick the same one (a clash is
    /// refused as `lease already exists`).
    let nextLeaseIDs: Locked<UInt64>
    let logger = Logger(label: "swift-etcd")
    /// Held from the start until ``stop()``: no second process uses the directories meanwhile.
    let directoryLock: DataDirectoryLock
    let purger: FilePurger
    /// Tokens, JWT keys and the bcrypt pool.
    let auth: AuthServices
    /// Proposals waiting for their answer, and those that failed for want of consensus.
    let proposalCounts = ProposalCounts()
    let operations = OperationCounts()
    /// Held for the length of a defragmentation: one at a time.
    let defragmentation = Locked(())
    /// The backend records found corrupt since the start, each reported once.
    let corruptRecords = Locked<Set<Revision>>([])
    /// The automatic compaction schedule, when `--auto-compaction-retention` is set.
    let autoCompactor = Locked<AutoCompactor?>(nil)

    final class ProposalCounts: Sendable {
        let pending = Atomic<Int>(0)
        let failed = Atomic<UInt64>(0)
    }
    let headers: ResponseHeaders
    let inbox = MemberInbox()
    let loopExited = DispatchSemaphore(value: 0)
    let published: PublishedState
    let transport: PeerTransport
    let peerEventLoops: MultiThreadedEventLoopGroup

    struct Proposal {
        let request: WriteRequest
        /// A client's (checked by auth when applied), or this member's own.
        let origin: EntryEnvelope.Origin
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
    package typealias MembershipResult = Result<(member: Member, members: [Member]), EtcdError>

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

    /// Opens (or creates) the member's data directory, recovers its state from the newest
    /// snapshot, the log and the backend, starts listening to its peers and starts the loop.
    ///
    /// A member's identity (its ID and its cluster's) is fixed when its data directory is made:
    /// from `--initial-cluster` for a new cluster, from the running cluster's membership when
    /// joining one; later starts take it from the log and ignore the bootstrap flags, as etcd does.
    package init(_ configuration: Configuration) throws {
        self.configuration = configuration
        let memberDirectory = (configuration.dataDirectory as NSString).appendingPathComponent("member")
        snapDirectory = (memberDirectory as NSString).appendingPathComponent("snap")
        let walDirectory = configuration.resolvedWALDirectory
        // Bound before the data directory is touched: a port in use must not leave a new
        // member's log behind with peer URLs it cannot listen on.
        let peerListenAddresses = try configuration.peerListenAddresses ?? Self.bindPeerListeners(configuration)
        try Self.refuseEtcdDataDirectory(configuration, snapDirectory: snapDirectory)
        purger = FilePurger(
            walDirectory: walDirectory, snapDirectory: snapDirectory, maxWALs: configuration.maxWALs,
            maxSnapshots: configuration.maxSnapshots, logger: Logger(label: "swift-etcd"))
        let bootstrap = WriteAheadLog.exists(directory: walDirectory) ? nil : try Self.verifyBootstrap(configuration)
        // Made and locked once the flags passed: flags that cannot start a member leave no directory.
        directoryLock = try DataDirectoryLock.acquire(
            dataDirectory: configuration.dataDirectory, walDirectory: walDirectory, logger: Logger(label: "swift-etcd"))
        // Snapshots and backups being sent or received when the member stopped are of no use now.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: snapDirectory)) ?? []
        where name.contains(".sending.sqlite") || name.contains(".receiving.sqlite") || name.contains(".backup.sqlite") {
            try? FileManager.default.removeItem(atPath: (snapDirectory as NSString).appendingPathComponent(name))
        }
        backend = try SQLiteBackend(path: (snapDirectory as NSString).appendingPathComponent("backend.sqlite"), synchronousCommits: false)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        peerEventLoops = group
        // The key index is rebuilt from the backend while the log is read (0.1 s of a 1.4 s
        // restart with 1M keys).
        let restoringStore = BackgroundResult { [backend] in try KeyValueStore(restoringFrom: backend) }
        let start: Start
        let recovered: MemberLoop.Recovered
        do {
            start = try Self.identify(
                configuration: configuration, bootstrap: bootstrap, backend: backend, walDirectory: walDirectory,
                snapDirectory: snapDirectory, group: group)
            recovered = try Self.recover(
                start, store: try restoringStore.wait(), configuration: configuration, backend: backend, snapDirectory: snapDirectory)
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        memberID = start.memberID
        clusterID = start.clusterID
        headers = ResponseHeaders(clusterID: start.clusterID, memberID: start.memberID)
        lessor = Lessor(minTTL: Lessor.minTTL(electionTimeout: configuration.electionTimeout))
        do {
            try Self.restoreLeases(lessor, from: backend, store: recovered.store)
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        // Bit 60 set: IDs print as 16 hex digits, as etcdctl users are used to.
        let milliseconds = UInt64(Date().timeIntervalSince1970 * 1000) & 0xFF_FFFF_FFFF
        nextLeaseIDs = Locked((1 << 60) | (UInt64(start.memberID & 0xFFF) << 48) | (milliseconds << 8))
        var watchLimits = WatchHub.Limits()
        watchLimits.progressInterval = configuration.watchProgressNotifyInterval
        watchHub = WatchHub(backend: backend, store: recovered.store, limits: watchLimits)
        published = PublishedState(Published(
            store: recovered.store, appliedIndex: recovered.appliedIndex, committedRevision: recovered.store.revision,
            voters: recovered.confState.voters.count, membership: recovered.membership, auth: recovered.auth,
            alarms: recovered.alarms))

        committer = BackendCommitter(
            backend: backend, published: published, watchHub: watchHub, metricHooks: configuration.metricHooks,
            schedule: BackendCommitter.Schedule(interval: configuration.backendBatchInterval, limit: configuration.backendBatchLimit))
        auth = AuthServices(
            simple: SimpleTokens(ttl: configuration.authTokenTTL), jwt: configuration.jwtTokens,
            hasher: PasswordHasher(cost: configuration.bcryptCost))
        let authTokens = auth
        let progress = ApplyProgress()
        leaderLeases = LeaderLeaseAnswers(lessor: lessor, progress: progress, inbox: inbox, timeout: configuration.requestTimeout)
        let (inbox, backend, lessor, leaderLeases) = (inbox, backend, lessor, leaderLeases)
        let (published, committer) = (published, committer)
        let transport = PeerTransport(
            localID: memberID, clusterID: clusterID, group: group, snapshotDirectory: snapDirectory,
            tls: configuration.peerTLS, handshakeTimeout: configuration.peerHandshakeTimeout, logger: logger,
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
                renewLease: leaderLeases.renew,
                leaseTimeToLive: leaderLeases.timeToLive,
                hashKV: { revision, completion in
                    DispatchQueue.global().async {
                        completion(Result { () throws(EtcdError) in try Self.keyspaceHash(at: revision, published: published, backend: backend, committer: committer) })
                    }
                }))
        self.transport = transport
        transport.setPeers(recovered.membership.peers)
        do {
            for address in peerListenAddresses {
                do {
                    try transport.listen(on: address)
                } catch {
                    throw ConfigurationError.cannotListen("tcp", joinHostPort(address.peerURL.host, address.peerURL.port), error)
                }
                logger.info("serving peer traffic", metadata: ["address": "\(address.url)"])
            }
        } catch {
            transport.stop()
            recovered.log.close()
            try? group.syncShutdownGracefully()
            throw error
        }
        if let roundTrip = configuration.metricHooks.peerRoundTrip {
            // etcd's prober asks every 4 s (its connection read timeout less a second).
            transport.startProbing(every: .seconds(4)) { peer, duration in roundTrip(peer, duration) }
        }
        let loop = HandOff(MemberLoop(
            configuration: configuration, recovered: recovered, inbox: inbox, published: published, progress: progress, lessor: lessor,
            watchHub: watchHub, backend: backend, committer: committer, transport: transport, purger: purger, headers: headers, operations: operations,
            snapDirectory: snapDirectory, tokens: authTokens.simple, readiness: readiness, logger: logger))
        let thread = Thread { [self] in
            loop.take().run()
            loopExited.signal()
        }
        thread.name = "swift-etcd raft"
        thread.start()
        backend.onCorruptRecord = { [weak self] corrupt in self?.reportCorruptRecord(corrupt) }
        if let interval = configuration.corruptCheckInterval { scheduleCorruptionChecks(every: interval, atCompaction: false) }
        if let interval = configuration.compactHashCheckInterval { scheduleCorruptionChecks(every: interval, atCompaction: true) }
        if let mode = configuration.autoCompaction { scheduleAutoCompaction(mode) }
    }

    /// Checks and binds every `--listen-peer-urls` address, for a caller that binds all its
    /// listeners before it starts the member (``Configuration/peerListenAddresses``).
    package static func bindPeerListeners(_ configuration: Configuration) throws(ConfigurationError) -> [PeerListenAddress] {
        try configuration.listenPeerURLs.map { url throws(ConfigurationError) in try PeerListenAddress(url, peerTLS: configuration.peerTLS) }
    }

    /// Stops the loop after the requests already queued; later requests fail with
    /// `etcdserver: server stopped`.
    package func stop() {
        let first = inbox.enqueue { inbox in
            defer { inbox.stopping = true }
            return !inbox.stopping
        }
        guard first else { return }
        readiness.markStopped()
        loopExited.wait()
        watchHub.stop()
        purger.wait()
        do {
            try backend.checkpoint()
        } catch {
            logger.warning("failed to checkpoint the backend; its log is replayed at the next start", metadata: ["error": "\(error)"])
        }
        try? peerEventLoops.syncShutdownGracefully()
        directoryLock.release()
    }

    /// Stops the process: after a failed write or sync nothing may be acknowledged, and the
    /// state on disk is what a restart recovers from.
    static func fatal(_ message: String, _ error: any Error) -> Never {
        FileHandle.standardError.write(Data("{\"level\":\"fatal\",\"msg\":\"\(message)\",\"error\":\"\(error)\"}\n".utf8))
        exit(1)
    }

}
