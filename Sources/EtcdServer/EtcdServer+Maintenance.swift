import Auth
import Backend
import Checksum
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
import SwiftProtobuf
import WAL

/// `Maintenance`: status and the keyspace hash.
extension EtcdServer {
    /// `Maintenance.Status` for this member.
    package func status() throws -> Etcdserverpb_StatusResponse {
        let (revision, raft, alarms) = published.withLock { ($0.storeFacts.revision, $0.raft, $0.alarms) }
        var response = Etcdserverpb_StatusResponse()
        response.header = header(revision: revision, term: raft.term)
        response.version = Self.version
        (response.dbSize, response.dbSizeInUse) = try backend.sizes()
        response.leader = raft.leader
        response.raftIndex = raft.commitIndex
        response.raftAppliedIndex = raft.appliedIndex
        response.raftTerm = raft.term
        response.storageVersion = Self.version
        response.dbSizeQuota = configuration.quotaBackendBytes
        response.isLearner = isLearner
        if let target = downgradeTarget {
            response.downgradeInfo = .with {
                $0.enabled = true
                $0.targetVersion = target
            }
        }
        // etcd lists every active alarm, then a missing leader.
        response.errors = alarms.members().map(AlarmList.describe)
        if raft.leader == noNode { response.errors.append(EtcdError.noLeader.description) }
        return response
    }

    /// `Maintenance.Alarm`: lists, raises or clears alarms, through Raft as etcd does.
    package func alarm(
        _ request: Etcdserverpb_AlarmRequest, by caller: AuthIdentity?,
        completion: @escaping @Sendable (Result<Etcdserverpb_AlarmResponse, EtcdError>) -> Void
    ) {
        propose(.alarm(request), by: caller, answer: { if case .alarm(let answer) = $0 { answer } else { nil } }, completion: completion)
    }

    /// Proposes a maintenance request from a client; `completion` gets the response `answer`
    /// picks out of the applied one.
    func propose<Answer>(
        _ request: WriteRequest, by caller: AuthIdentity?, answer: @escaping @Sendable (WriteResponse) -> Answer?,
        completion: @escaping @Sendable (Result<Answer, EtcdError>) -> Void
    ) {
        propose(request, origin: .client(caller)) { result in
            completion(result.flatMap { response in answer(response).map { .success($0) } ?? .failure(.stopped) })
        }
    }

    /// The active alarms, as this member applied them.
    package var alarms: AlarmList { published.withLock { $0.alarms } }

    /// `Maintenance.HashKV`: a CRC-32C of every record kept at or before `revision` (0: the
    /// newest), in revision order. Members that applied the same log agree on it, which is how
    /// to check that they converged; the value is swift-etcd's own, not comparable with etcd's.
    package func hashKV(revision: Int64) throws(EtcdError) -> Etcdserverpb_HashKVResponse {
        let answer = try Self.keyspaceHash(at: revision, published: published, backend: backend, committer: committer)
        var response = Etcdserverpb_HashKVResponse()
        response.header = header(revision: answer.revision)
        response.hash = answer.hash
        response.compactRevision = answer.compactRevision
        response.hashRevision = answer.hashRevision
        return response
    }

    /// The keyspace hash at `revision` (0: the newest) as ``hashKV(revision:)`` reports it; a
    /// static function so the peer transport, made before the server, can answer with it.
    ///
    /// A corrupt record fails it with `.corrupt`, and is reported through the backend's
    /// observer unless `reportingCorruption` is false.
    static func keyspaceHash(
        at revision: Int64, published: PublishedState, backend: SQLiteBackend, committer: BackendCommitter,
        reportingCorruption: Bool = true
    ) throws(EtcdError) -> KeyspaceHash {
        let facts = published.withLock { $0.storeFacts }
        let target = revision > 0 ? revision : facts.revision
        if target > facts.revision { throw .futureRevision }
        if target < facts.compactedRevision { throw .compacted }
        try waitForBackendCommit(through: target, published: published, committer: committer)
        var crc: UInt32 = 0
        var bytes: [UInt8] = []
        do {
            try backend.forEachChange(reportingCorruption: reportingCorruption) { change in
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
        } catch is SQLiteBackend.CorruptRecord {
            throw .corrupt
        } catch {
            fatal("failed to read the backend", error)
        }
        return KeyspaceHash(hash: crc, hashRevision: target, compactRevision: facts.compactedRevision, revision: facts.revision)
    }
}

extension EtcdServer {
    /// Returns once the backend holds `revision`, committing what is queued rather than waiting
    /// for the commit interval (the loop may publish a batch just before it queues it: bounded
    /// all the same). Hashes and backups read the backend, so they wait for it to hold what
    /// clients were told is written.
    static func waitForBackendCommit(
        through revision: Int64, published: PublishedState, committer: BackendCommitter
    ) throws(EtcdError) {
        let deadline = ContinuousClock.now + .seconds(5)
        while published.withLock({ $0.committedRevision }) < revision {
            guard ContinuousClock.now < deadline else { throw .timeout }
            committer.commitNow()
            if published.withLock({ $0.committedRevision }) < revision { usleep(200) }
        }
    }
}

extension EtcdServer {
    /// What etcd's `etcd_server_*` and `etcd_mvcc_db_*` metrics report, read when scraped.
    package struct MetricFacts: Sendable {
        package var hasLeader: Bool
        package var isLeader: Bool
        package var leaderChanges: UInt64
        package var committedIndex: UInt64
        package var appliedIndex: UInt64
        package var pendingProposals: Int
        package var failedProposals: UInt64
        package var quotaBackendBytes: Int64
        package var databaseBytes: Int64
        package var databaseBytesInUse: Int64
        package var memberID: UInt64
        package var isLearner: Bool
        package var ranges: UInt64
        package var puts: UInt64
        package var deletes: UInt64
        package var txns: UInt64
        package var putBytes: UInt64
        package var keys: Int
        package var currentRevision: Int64
        package var compactRevision: Int64
        package var leasesGranted: UInt64
        package var leasesRevoked: UInt64
        package var leasesRenewed: UInt64
        package var slowApplies: UInt64
        package var watch: WatchHub.Statistics
        /// Bytes and failures per peer (member ID).
        package var peers: [UInt64: PeerTraffic]
    }

    package func metricFacts() -> MetricFacts {
        let (raft, store) = published.withStore { store, state in (state.raft, store) }
        let (size, inUse) = (try? backend.sizes()) ?? (0, 0)
        let counted = operations.totals
        return MetricFacts(
            hasLeader: raft.leader != noNode, isLeader: raft.role == .leader, leaderChanges: raft.leaderChanges,
            committedIndex: raft.commitIndex, appliedIndex: raft.appliedIndex,
            pendingProposals: max(0, proposalCounts.pending.load(ordering: .relaxed)),
            failedProposals: proposalCounts.failed.load(ordering: .relaxed), quotaBackendBytes: configuration.quotaBackendBytes,
            databaseBytes: size, databaseBytesInUse: inUse, memberID: memberID, isLearner: isLearner,
            ranges: counted.ranges, puts: counted.puts, deletes: counted.deletes, txns: counted.txns, putBytes: counted.putBytes,
            keys: store.liveKeyCount, currentRevision: store.revision, compactRevision: store.compactedRevision,
            leasesGranted: counted.leasesGranted, leasesRevoked: counted.leasesRevoked,
            leasesRenewed: lessor.renewalCount, slowApplies: counted.slowApplies, watch: watchHub.statistics(), peers: transport.traffic.all)
    }
}

extension EtcdServer {
    /// Runs the automatic compaction schedule for as long as the member runs: every member
    /// records revisions; the leader compacts when one is due, through Raft as a client would.
    func scheduleAutoCompaction(_ mode: AutoCompactor.Mode) {
        let compactor = AutoCompactor(mode, revisionCheckInterval: configuration.autoCompactionRevisionCheckInterval)
        autoCompactor.withLock { $0 = compactor }
        let (kind, retention) =
            switch mode {
            case .periodic(let period): ("periodic", "\(period)")
            case .revision(let revisions): ("revision", "\(revisions) revisions")
            }
        logger.info("started auto compaction", metadata: ["mode": "\(kind)", "retention": "\(retention)"])
        let interval = TimeAmount.nanoseconds(Int64(compactor.tickInterval / .nanoseconds(1)))
        // The first tick records the revision the member starts at.
        peerEventLoops.next().scheduleRepeatedTask(initialDelay: .zero, delay: interval) { [self] _ in
            let (revision, isLeader) = published.withLock { ($0.storeFacts.revision, $0.raft.role == .leader) }
            guard let target = autoCompactor.withLock({ $0?.tick(now: .now, revision: revision) }), isLeader else { return }
            logger.info("starting auto \(kind) compaction", metadata: ["revision": "\(target)"])
            let started = ContinuousClock.now
            propose(.compaction(.with { $0.revision = target }), origin: .member) { [self] result in
                switch result {
                case .success, .failure(.compacted):
                    autoCompactor.withLock { $0?.compacted(target, at: .now) }
                    logger.info(
                        "completed auto \(kind) compaction",
                        metadata: ["revision": "\(target)", "took": "\(ContinuousClock.now - started)"])
                case .failure(let error):
                    logger.warning("failed auto \(kind) compaction", metadata: ["revision": "\(target)", "error": "\(error)"])
                }
            }
        }
    }
}

/// `Maintenance.Downgrade` (etcd 3.6): validate, enable or cancel a downgrade of the cluster
/// to the previous minor version. Every member runs swift-etcd 3.6.0, so the only target is 3.5.
extension EtcdServer {
    /// The cluster version (major.minor), as etcd's `version.Cluster` prints it.
    package static let clusterVersion = "3.6"

    /// The downgrade job's target (major.minor.0), if one is enabled.
    package var downgradeTarget: String? { published.withLock { $0.membership.downgradeTarget } }

    package func downgrade(
        _ request: Etcdserverpb_DowngradeRequest, by caller: AuthIdentity?,
        completion: @escaping @Sendable (Result<Etcdserverpb_DowngradeResponse, EtcdError>) -> Void
    ) {
        let validated: Result<String, EtcdError> = Self.downgradeTarget(request.version).flatMap { target in
            downgradeTarget == nil || request.action == .cancel ? .success(target) : .failure(.downgradeInProgress)
        }
        switch (request.action, validated) {
        case (.validate, .success):
            var response = Etcdserverpb_DowngradeResponse()
            response.header = header(revision: currentRevision)
            response.version = Self.clusterVersion
            completion(.success(response))
        case (.enable, .success(let target)):
            var enable = request
            enable.version = target
            propose(.downgrade(enable), by: caller, answer: Self.downgradeAnswer, completion: completion)
        case (.cancel, _):
            guard downgradeTarget != nil else { return completion(.failure(.noInflightDowngrade)) }
            propose(.downgrade(request), by: caller, answer: Self.downgradeAnswer, completion: completion)
        case (_, .failure(let error)):
            completion(.failure(error))
        case (.UNRECOGNIZED, _):
            completion(.failure(.wrongDowngradeVersionFormat))
        }
    }

    private static let downgradeAnswer: @Sendable (WriteResponse) -> Etcdserverpb_DowngradeResponse? = {
        if case .downgrade(let answer) = $0 { answer } else { nil }
    }

    /// etcd's reading of a target version: `major.minor[.patch]`, kept as `major.minor.0`, and
    /// only one minor version below the cluster's.
    static func downgradeTarget(_ version: String) -> Result<String, EtcdError> {
        let parts = version.split(separator: ".", omittingEmptySubsequences: false)
        guard (2...3).contains(parts.count), let major = Int(parts[0]), let minor = Int(parts[1]),
            parts.count == 2 || parts[2].allSatisfy(\.isNumber) && !parts[2].isEmpty
        else { return .failure(.wrongDowngradeVersionFormat) }
        guard major == 3, minor == 5 else { return .failure(.invalidDowngradeTargetVersion) }
        return .success("\(major).\(minor).0")
    }
}
