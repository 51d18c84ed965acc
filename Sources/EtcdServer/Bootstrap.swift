import Auth
import Backend
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

/// Bootstrap (etcd's `bootstrap.go`): who this member is, and the state it restarts from.
extension EtcdServer {
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

    /// A data directory etcd made (its bbolt backend `member/snap/db`, and no backend of ours)
    /// is refused before anything is written to it, with the command that moves its data to
    /// swift-etcd: a binary swapped on an etcd data directory would otherwise fail on etcd's
    /// log, whose segments have the same names as ours and another format.
    static func refuseEtcdDataDirectory(_ configuration: Configuration, snapDirectory: String) throws(ConfigurationError) {
        let files = FileManager.default
        guard files.fileExists(atPath: "\(snapDirectory)/db"), !files.fileExists(atPath: "\(snapDirectory)/backend.sqlite") else { return }
        throw ConfigurationError(
            "\(configuration.dataDirectory) is an etcd data directory (\(snapDirectory)/db is etcd's bbolt backend), "
                + "which swift-etcd does not run on: stop etcd, move its data with `swift-etcdutl snapshot restore "
                + "\(snapDirectory)/db --skip-hash-check --data-dir <new directory>` and the member's --name, "
                + "--initial-cluster and --initial-advertise-peer-urls, then start swift-etcd on the new directory "
                + "(docs/OPERATIONS.md, Moving from etcd)")
    }

    /// etcd's checks before a new data directory is made: this member's name is in
    /// `--initial-cluster`, and its `--initial-advertise-peer-urls` are the URLs listed for it
    /// there. They run before anything is written, so a refused start leaves no half-made data
    /// directory behind (etcd 3.4 leaves `member/`).
    static func verifyBootstrap(_ configuration: Configuration) throws(ConfigurationError) -> (cluster: ClusterConfiguration, local: Member) {
        let cluster = try ClusterConfiguration(initialCluster: configuration.initialCluster, token: configuration.initialClusterToken)
        guard let local = cluster.members.first(where: { $0.name == configuration.name }) else {
            throw ConfigurationError("couldn't find local name \"\(configuration.name)\" in the initial cluster configuration")
        }
        let advertised = configuration.initialAdvertisePeerURLs
        // Host names count as the addresses they resolve to (a cluster from DNS SRV records
        // names members by host, their flags often by IP), as etcd compares them.
        guard !advertised.isEmpty, !PeerURL.sameAddresses(local.peerURLs, advertised) else { return (cluster, local) }
        let listed = local.peerURLs.map { "\(configuration.name)=\($0)" }
        let missing = local.peerURLs.filter { !advertised.contains($0) }
        if !missing.isEmpty {
            throw ConfigurationError(
                "--initial-cluster has \(missing.map { "\(configuration.name)=\($0)" }.joined(separator: ",")) but missing from "
                    + "--initial-advertise-peer-urls=\(advertised.joined(separator: ","))")
        }
        let extra = advertised.filter { !local.peerURLs.contains($0) }
        if !extra.isEmpty {
            throw ConfigurationError(
                "--initial-advertise-peer-urls has \(extra.joined(separator: ",")) but missing from --initial-cluster=\(listed.joined(separator: ","))")
        }
        return (cluster, local)
    }

    static func identify(
        configuration: Configuration, bootstrap verified: (cluster: ClusterConfiguration, local: Member)?, backend: SQLiteBackend,
        walDirectory: String, snapDirectory: String, group: any EventLoopGroup
    ) throws -> Start {
        var walOptions = WriteAheadLog.Options(segmentSize: configuration.walSegmentSize)
        walOptions.fsyncObserver = configuration.metricHooks.walFsync
        walOptions.skipsSync = configuration.unsafeNoFsync
        if WriteAheadLog.exists(directory: walDirectory) {
            let (log, contents, snapshot) = try openLog(directory: walDirectory, snapDirectory: snapDirectory, options: walOptions)
            return Start(
                memberID: contents.metadata.memberID, clusterID: contents.metadata.clusterID, log: log, contents: contents,
                snapshot: snapshot)
        }
        let (bootstrap, local) = try verified ?? verifyBootstrap(configuration)
        var start: Start
        if configuration.joinExistingCluster {
            // Ask the running members who is in the cluster; this member must have been added
            // (etcdctl member add) with the peer URLs it advertises.
            let others = bootstrap.members.filter { $0.name != configuration.name }.flatMap(\.peerURLs)
            let (clusterID, membership) = try PeerTransport.fetchMembership(
                from: others, group: group, tls: configuration.peerTLS)
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

    /// Rebuilds the Raft storage from disk, around the `store` rebuilt from the backend: the
    /// newest snapshot the log has a marker for, the entries after it, and the backend (which
    /// may be ahead of the snapshot, never behind it). The membership Raft starts with is the
    /// backend's, which is at the backend's applied index, so membership changes before it are
    /// never replayed.
    static func recover(
        _ start: Start, store: KeyValueStore, configuration: Configuration, backend: SQLiteBackend, snapDirectory: String
    ) throws -> MemberLoop.Recovered {
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
            try DurableSnapshot.record(
                index: applied, term: appliedTerm, confState: confState, backend: backend, log: log, snapDirectory: snapDirectory)
            storage = MemoryStorage(snapshot: SnapshotMetadata(index: applied, term: appliedTerm, confState: confState))
            let term = max(hardState.term, appliedTerm)
            let vote = term == hardState.term ? hardState.vote : noNode
            try log.save(hardState: WALHardState(term: term, vote: vote, commit: applied), entries: [])
            storage.setHardState(HardState(term: term, vote: vote, commit: applied))
            recoveredSnapshotIndex = applied
        }
        if configuration.forceNewCluster, start.contents != nil {
            try forceNewCluster(
                storage: storage, log: log, localID: start.memberID, confState: confState, membership: membership, applied: applied)
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
            snapshotIndex: recoveredSnapshotIndex, confState: confState, membership: membership,
            auth: try backend.document(.auth).map(AuthState.init(encoded:)) ?? AuthState(),
            alarms: try backend.document(.alarms).map(AlarmList.init(encoded:)) ?? AlarmList())
    }

    /// etcd's `--force-new-cluster`: restarts this member as the only one of its cluster, to
    /// rebuild a cluster that lost its quorum for good from a survivor. Entries not yet
    /// committed are dropped; one committed membership change per other member removes it, so
    /// the member elects itself and every later member joins it as usual. Nothing else of
    /// its data changes. As with etcd, every start with the flag does this again (members added
    /// since are removed again): the flag is for one start only.
    static func forceNewCluster(
        storage: MemoryStorage, log: WriteAheadLog, localID: UInt64, confState: ConfState, membership: Membership, applied: UInt64
    ) throws {
        let hardState = storage.hardState
        // Who is in the cluster as of the commit index: the configuration the backend applied,
        // then the committed membership changes after it.
        var members = Set(confState.voters + confState.votersOutgoing + confState.learners + confState.learnersNext)
        let committed = applied < hardState.commit ? try storage.entries(from: applied + 1, to: hardState.commit + 1, maxSize: .max) : []
        for entry in committed where entry.kind == .confChange {
            for single in ConfChange(encoded: entry.data)?.changes ?? [] {
                if single.kind == .removeNode { members.remove(single.node) } else { members.insert(single.node) }
            }
        }
        let others = members.subtracting([localID]).sorted()
        guard !others.isEmpty else { return }
        let term = max(hardState.term, 1)
        let removals = others.enumerated().map { offset, id in
            let member = membership[id] ?? Member(id: id, name: "", peerURLs: [], clientURLs: [])
            let change = ConfChange(
                changes: [ConfChangeSingle(.removeNode, id)],
                context: MembershipChangeContext(proposer: 0, requestID: 0, member: member).encoded())
            return Entry(term: term, index: hardState.commit + 1 + UInt64(offset), kind: .confChange, data: change.encoded())
        }
        let commit = removals.last!.index
        let discarded = try storage.lastIndex() - hardState.commit
        Logger(label: "swift-etcd").warning(
            "forcing restart member as a new one-member cluster",
            metadata: [
                "local-member-id": "\(String(localID, radix: 16))", "commit-index": "\(hardState.commit)",
                "discarded-uncommitted-entries": "\(discarded)",
                "removed-member-ids": "\(others.map { String($0, radix: 16) })",
            ])
        // Later records at the same index replace the uncommitted tail, in the log as in memory.
        try log.save(
            hardState: WALHardState(term: term, vote: hardState.vote, commit: commit),
            entries: removals.map(EntryEnvelope.logEntry))
        storage.append(removals)
        storage.setHardState(HardState(term: term, vote: hardState.vote, commit: commit))
    }

    /// Opens the log from the newest snapshot it has a marker for (a crash between writing a
    /// snapshot file and its marker leaves a newer file without one).
    static func openLog(directory: String, snapDirectory: String, options: WriteAheadLog.Options) throws
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
}
