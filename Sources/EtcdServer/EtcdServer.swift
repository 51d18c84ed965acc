import Dispatch
import EtcdProto
import Foundation
import MVCC
import Synchronization
import WAL

/// One swift-etcd member: the store, its backend, and the apply loop that orders all writes.
///
/// Writes are proposals: `propose` queues them and returns at once; a dedicated thread takes
/// every queued proposal as one batch, appends the batch to the write-ahead log with one
/// fdatasync (group commit), applies it in order, commits it to the backend in one
/// transaction (recording the applied log index), publishes the new store snapshot, and only
/// then completes the proposals. At start, logged entries after the backend's applied index
/// are applied again, so a crash between the log and the backend loses nothing. Reads take the
/// latest published snapshot on the caller's thread and never wait for the apply loop.
///
/// The single-member path until Raft lands: a batch is committed as soon as it is logged.
public final class EtcdServer: Sendable {
    public struct Configuration: Sendable {
        public var name: String
        public var dataDirectory: String
        public var initialCluster: String
        public var initialClusterToken: String
        public var advertiseClientURLs: [String]
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
    }

    /// The version this member reports (the etcd API level it speaks).
    public static let version = "3.6.0"
    /// A single member elects itself in term 2 at start, as etcd does.
    static let raftTerm: UInt64 = 2

    public let configuration: Configuration
    public let cluster: ClusterConfiguration
    public let member: Member
    private let backend: SQLiteBackend
    private let walDirectory: String
    private let snapDirectory: String
    /// Purges old log segments and snapshot files off the apply thread.
    private let purgeQueue = DispatchQueue(label: "swift-etcd purge")
    /// Appended only by the apply thread (the lock is uncontended; it hands the log over safely).
    private let log: Mutex<WriteAheadLog>
    private let published: Mutex<Published>
    private let proposals = Mutex(ProposalQueue())
    private let wakeApplyLoop = DispatchSemaphore(value: 0)
    private let applyLoopExited = DispatchSemaphore(value: 0)

    private struct Published {
        var store: KeyValueStore
        var appliedIndex: UInt64
    }

    private struct ProposalQueue {
        var waiting: [Proposal] = []
        var stopping = false
    }

    private struct Proposal {
        let request: WriteRequest
        let completion: @Sendable (Result<WriteResponse, EtcdError>) -> Void
    }

    /// Opens (or creates) the member's data directory, rebuilds the store, starts the apply loop.
    public init(_ configuration: Configuration) throws {
        self.configuration = configuration
        cluster = try ClusterConfiguration(initialCluster: configuration.initialCluster, token: configuration.initialClusterToken)
        guard var member = cluster.members.first(where: { $0.name == configuration.name }) else {
            throw ConfigurationError(
                "couldn't find local name \"\(configuration.name)\" in the initial cluster configuration")
        }
        member.clientURLs = configuration.advertiseClientURLs
        self.member = member
        let memberDirectory = (configuration.dataDirectory as NSString).appendingPathComponent("member")
        snapDirectory = (memberDirectory as NSString).appendingPathComponent("snap")
        walDirectory = configuration.walDirectory ?? (memberDirectory as NSString).appendingPathComponent("wal")
        try FileManager.default.createDirectory(atPath: snapDirectory, withIntermediateDirectories: true)
        backend = try SQLiteBackend(path: (snapDirectory as NSString).appendingPathComponent("backend.sqlite"), synchronousCommits: false)
        var store = try KeyValueStore(restoringFrom: backend)
        var applied = UInt64(try backend.meta(.consistentIndex) ?? 0)
        let metadata = WALMetadata(memberID: member.id, clusterID: cluster.id)
        var walOptions = WriteAheadLog.Options(segmentSize: configuration.walSegmentSize)
        walOptions.fsyncObserver = configuration.diskMetrics.walFsync
        let log: WriteAheadLog
        let logged: [LogEntry]
        if WriteAheadLog.exists(directory: walDirectory) {
            let marker: WALSnapshot
            (log, logged, marker) = try Self.openLog(
                directory: walDirectory, snapDirectory: snapDirectory, metadata: metadata, options: walOptions)
            guard applied >= marker.index else {
                throw ConfigurationError(
                    "backend: it applied entries up to \(applied) but the snapshot at \(marker.index) says more are applied; "
                        + "the backend is older than the log")
            }
        } else {
            // A new member starts from the empty snapshot (0, 0). A backend whose log was removed
            // becomes a snapshot of what it applied, so the new log continues after it.
            var start = WALSnapshot(index: 0, term: 0)
            if applied > 0 {
                start = WALSnapshot(index: applied, term: Self.raftTerm)
                try backend.makeDurable(snapshotIndex: Int64(applied))
                try Snapshotter.save(
                    SnapshotFile(index: applied, term: Self.raftTerm, confState: Self.encodedMembers(cluster)),
                    directory: snapDirectory)
            }
            log = try WriteAheadLog.create(directory: walDirectory, metadata: metadata, snapshot: start, options: walOptions)
            logged = []
        }
        if log.lastIndex < applied {
            throw ConfigurationError("wal: the log ends at entry \(log.lastIndex) but the backend applied \(applied)")
        }
        let pending = logged.filter { $0.index > applied }
        if let first = pending.first, first.index != applied + 1 {
            throw ConfigurationError(
                "wal: the backend applied entries up to \(applied) but the log resumes at \(first.index); entries are missing")
        }
        let unapplied = try pending.map { try WriteRequest(logData: $0.data) }
        _ = try Self.applyAndCommit(
            unapplied, store: &store, appliedIndex: &applied, backend: backend,
            header: Self.header(cluster: cluster.id, member: member.id, revision: 0), metrics: configuration.diskMetrics)
        let snapshotIndex = UInt64(try backend.meta(.snapshotIndex) ?? 0)
        self.log = Mutex(log)
        published = Mutex(Published(store: store, appliedIndex: applied))
        let thread = Thread { [self, store, applied, snapshotIndex] in
            runApplyLoop(store: store, appliedIndex: applied, snapshotIndex: snapshotIndex)
        }
        thread.name = "swift-etcd apply"
        thread.start()
    }

    /// Opens the log from the newest snapshot it has a marker for (a crash between writing a
    /// snapshot file and its marker leaves a newer file without one), checking it is this member's.
    private static func openLog(
        directory: String, snapDirectory: String, metadata: WALMetadata, options: WriteAheadLog.Options
    ) throws -> (WriteAheadLog, [LogEntry], WALSnapshot) {
        let snapshots = try Snapshotter.loadAll(directory: snapDirectory) { name, error in
            FileHandle.standardError.write(Data("{\"level\":\"warn\",\"msg\":\"failed to load snapshot file; renamed to .broken\",\"file\":\"\(name)\",\"error\":\"\(error)\"}\n".utf8))
        }
        var lastError: WALError = .snapshotNotFound(WALSnapshot(index: 0, term: 0))
        for marker in snapshots.map(\.marker) + [WALSnapshot(index: 0, term: 0)] {
            do {
                let (log, contents) = try WriteAheadLog.open(directory: directory, from: marker, options: options)
                guard contents.metadata == metadata else {
                    throw ConfigurationError(
                        "wal: the log belongs to member \(String(contents.metadata.memberID, radix: 16)) of cluster "
                            + "\(String(contents.metadata.clusterID, radix: 16)), not to this member")
                }
                return (log, contents.entries, marker)
            } catch let error as WALError {
                guard case .snapshotNotFound = error else { throw error }
                lastError = error
            }
        }
        throw lastError
    }

    /// Stops the apply loop after the proposals already queued; later proposals fail with
    /// `etcdserver: server stopped`.
    public func stop() {
        let first = proposals.withLock { queue in
            defer { queue.stopping = true }
            return !queue.stopping
        }
        guard first else { return }
        wakeApplyLoop.signal()
        applyLoopExited.wait()
        purgeQueue.sync {}
        log.withLock { $0.close() }
    }

    // MARK: Writes

    /// Queues a write; `completion` runs on the apply thread once the write is durable and
    /// visible to reads.
    public func propose(_ request: WriteRequest, completion: @escaping @Sendable (Result<WriteResponse, EtcdError>) -> Void) {
        enum Admission { case wakesTheLoop, joinsTheBatch, refused }
        let admission = proposals.withLock { queue -> Admission in
            guard !queue.stopping else { return .refused }
            queue.waiting.append(Proposal(request: request, completion: completion))
            return queue.waiting.count == 1 ? .wakesTheLoop : .joinsTheBatch
        }
        switch admission {
        case .wakesTheLoop: wakeApplyLoop.signal()
        case .joinsTheBatch: break
        case .refused: completion(.failure(.stopped))
        }
    }

    private func runApplyLoop(store initial: KeyValueStore, appliedIndex initialIndex: UInt64, snapshotIndex initialSnapshot: UInt64) {
        var store = initial
        var appliedIndex = initialIndex
        var snapshotIndex = initialSnapshot
        while true {
            wakeApplyLoop.wait()
            let (batch, stopping) = proposals.withLock { queue in
                defer { queue.waiting = [] }
                return (queue.waiting, queue.stopping)
            }
            if !batch.isEmpty {
                let results = applyBatch(batch, store: &store, appliedIndex: &appliedIndex)
                for (proposal, result) in zip(batch, results) { proposal.completion(result) }
                if appliedIndex - snapshotIndex >= configuration.snapshotCount {
                    snapshot(at: appliedIndex)
                    snapshotIndex = appliedIndex
                }
            }
            if stopping { break }
        }
        applyLoopExited.signal()
    }

    private func applyBatch(_ batch: [Proposal], store: inout KeyValueStore, appliedIndex: inout UInt64)
        -> [Result<WriteResponse, EtcdError>]
    {
        let first = appliedIndex + 1
        let entries = batch.enumerated().map {
            LogEntry(index: first + UInt64($0.offset), term: Self.raftTerm, data: $0.element.request.logData)
        }
        let hardState = WALHardState(term: Self.raftTerm, vote: member.id, commit: first + UInt64(batch.count) - 1)
        let results: [Result<WriteResponse, EtcdError>]
        do {
            try log.withLock { try $0.save(hardState: hardState, entries: entries) }
            results = try Self.applyAndCommit(
                batch.map(\.request), store: &store, appliedIndex: &appliedIndex, backend: backend, header: header(revision: 0),
                metrics: configuration.diskMetrics)
        } catch {
            // Fail-stop: nothing of this batch was acknowledged, and nothing may be.
            Self.fatal("failed to persist a batch of writes", error)
        }
        let snapshot = store
        let index = appliedIndex
        published.withLock { $0 = Published(store: snapshot, appliedIndex: index) }
        return results
    }

    /// Records a snapshot at `index` (all applied): makes the backend durable up to it, writes
    /// the snapshot file, then its marker in the log; old log segments and snapshot files are
    /// purged in the background afterwards. A crash at any point leaves a state a restart
    /// recovers from: the previous snapshot, or this one.
    private func snapshot(at index: UInt64) {
        let file = SnapshotFile(index: index, term: Self.raftTerm, confState: Self.encodedMembers(cluster))
        do {
            try backend.makeDurable(snapshotIndex: Int64(index))
            try Snapshotter.save(file, directory: snapDirectory)
            try log.withLock { try $0.saveSnapshot(file.marker) }
        } catch {
            Self.fatal("failed to save a snapshot", error)
        }
        let (walDirectory, snapDirectory, configuration) = (walDirectory, snapDirectory, configuration)
        purgeQueue.async {
            do {
                try WriteAheadLog.purge(directory: walDirectory, snapshotIndex: index, maxFiles: configuration.maxWALs)
                try Snapshotter.purge(directory: snapDirectory, keep: configuration.maxSnapshots)
            } catch {
                // Old files stay until the next snapshot's purge; nothing needed is at risk.
                FileHandle.standardError.write(Data("{\"level\":\"warn\",\"msg\":\"failed to purge old files\",\"error\":\"\(error)\"}\n".utf8))
            }
        }
    }

    /// The membership a snapshot records: each member ID, 8 bytes little-endian.
    private static func encodedMembers(_ cluster: ClusterConfiguration) -> [UInt8] {
        cluster.members.flatMap { member in withUnsafeBytes(of: member.id.littleEndian) { Array($0) } }
    }

    /// Stops the process: after a failed write or sync nothing may be acknowledged, and the
    /// state on disk is what a restart recovers from.
    private static func fatal(_ message: String, _ error: any Error) -> Never {
        FileHandle.standardError.write(Data("{\"level\":\"fatal\",\"msg\":\"\(message)\",\"error\":\"\(error)\"}\n".utf8))
        exit(1)
    }

    /// Applies `requests` in order (each one log entry) and commits the result to the backend
    /// in one transaction, with the applied index. Also how logged entries are replayed at start.
    private static func applyAndCommit(
        _ requests: [WriteRequest], store: inout KeyValueStore, appliedIndex: inout UInt64, backend: SQLiteBackend,
        header: Etcdserverpb_ResponseHeader, metrics: DiskMetrics
    ) throws -> [Result<WriteResponse, EtcdError>] {
        guard !requests.isEmpty else { return [] }
        var reader = OverlayReader(base: backend)
        var changes: [Change] = []
        var compaction: (main: Int64, kept: Set<Revision>)?
        var results: [Result<WriteResponse, EtcdError>] = []
        results.reserveCapacity(requests.count)
        for request in requests {
            let outcome = Applier.apply(request, to: &store, reader: reader, header: header)
            reader.add(outcome.changes)
            changes += outcome.changes
            if let compacted = outcome.compaction { compaction = compacted }
            results.append(outcome.response)
            appliedIndex += 1
        }
        var meta: [SQLiteBackend.Meta: Int64] = [
            .consistentIndex: Int64(appliedIndex), .consistentTerm: Int64(Self.raftTerm), .revision: store.revision,
        ]
        if compaction != nil { meta[.compactedRevision] = store.compactedRevision }
        let start = ContinuousClock.now
        try backend.commit(changes, meta: meta, removingAtOrBefore: compaction)
        metrics.backendCommit?(ContinuousClock.now - start)
        return results
    }

    // MARK: Reads

    /// Answers a range from the latest published snapshot, on the caller's thread.
    public func range(_ request: Etcdserverpb_RangeRequest) throws(EtcdError) -> Etcdserverpb_RangeResponse {
        try TxnRules.validate(request)
        do throws(EtcdError) {
            return try range(request, in: published.withLock { $0.store })
        } catch .compacted where request.revision <= 0 {
            // A compaction committed after the snapshot was taken removed a record it names;
            // a newer snapshot has the record that replaced it.
            return try range(request, in: published.withLock { $0.store })
        }
    }

    private func range(_ request: Etcdserverpb_RangeRequest, in store: KeyValueStore) throws(EtcdError) -> Etcdserverpb_RangeResponse {
        var response = try RangeRules.answer(request) { key, end, options in
            try store.range(key, end: end, options: options, reader: backend)
        }
        response.header = header(revision: store.revision)
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

    /// A response header for this member at `revision`.
    public func header(revision: Int64) -> Etcdserverpb_ResponseHeader {
        Self.header(cluster: cluster.id, member: member.id, revision: revision)
    }

    private static func header(cluster: UInt64, member: UInt64, revision: Int64) -> Etcdserverpb_ResponseHeader {
        var header = Etcdserverpb_ResponseHeader()
        header.clusterID = cluster
        header.memberID = member
        header.revision = revision
        header.raftTerm = raftTerm
        return header
    }

    public var currentRevision: Int64 { published.withLock { $0.store.revision } }

    /// `Maintenance.Status` for this member.
    public func status() throws -> Etcdserverpb_StatusResponse {
        let (revision, applied) = published.withLock { ($0.store.revision, $0.appliedIndex) }
        var response = Etcdserverpb_StatusResponse()
        response.header = header(revision: revision)
        response.version = Self.version
        response.dbSize = try backend.sizeInBytes()
        response.dbSizeInUse = response.dbSize
        response.leader = member.id
        response.raftIndex = applied
        response.raftAppliedIndex = applied
        response.raftTerm = Self.raftTerm
        response.storageVersion = Self.version
        response.dbSizeQuota = configuration.quotaBackendBytes
        return response
    }

    /// `Cluster.MemberList`: the members known from the bootstrap configuration.
    public func memberList() -> Etcdserverpb_MemberListResponse {
        var response = Etcdserverpb_MemberListResponse()
        response.header = header(revision: currentRevision)
        response.members = cluster.members.map { configured in
            let known = configured.id == member.id ? member : configured
            var out = Etcdserverpb_Member()
            out.id = known.id
            out.name = known.name
            out.peerUrls = known.peerURLs
            out.clientUrls = known.clientURLs
            out.isLearner = known.isLearner
            return out
        }
        return response
    }
}
