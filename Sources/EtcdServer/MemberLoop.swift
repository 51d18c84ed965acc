import Dispatch
import EtcdProto
import Foundation
import Lease
import Logging
import MVCC
import Raft
import WAL

/// The member's one loop thread: it owns the Raft node, its log, and the store, and is the
/// only code that touches them. Everything else talks to it through ``EtcdServer``'s inbox.
///
/// Each turn: tick when a heartbeat interval has passed, take everything the inbox holds
/// (peer messages, proposals, reads) into the node, then work off every `Ready`: send what may
/// go before the disk write (a leader replicates while it writes, Raft thesis §10.2.1), append
/// to the log with one `fdatasync`, send acknowledgements, apply committed entries to the store
/// in one backend transaction, answer reads whose read index is applied, and advance.
final class MemberLoop {
    private let server: EtcdServer
    private let configuration: EtcdServer.Configuration
    private var node: RaftNode
    private let storage: MemoryStorage
    private let log: WriteAheadLog
    private let backend: SQLiteBackend
    private let committer: BackendCommitter
    private let transport: PeerTransport
    private let logger: Logger
    private var store: KeyValueStore
    private var appliedIndex: UInt64
    private var appliedTerm: UInt64
    private var snapshotIndex: UInt64
    private var confState: ConfState
    private var membership: Membership
    /// Set when applying changed the membership, so the batch's commit stores it.
    private var membershipChanged = false
    /// Membership changes proposed here and not yet applied, by request ID.
    private var membershipWaiting: [UInt64: (completion: @Sendable (EtcdServer.MembershipResult) -> Void, deadline: ContinuousClock.Instant)] = [:]
    /// The request ID of this member's own attributes update while it is in flight.
    private var publishing: (id: UInt64, deadline: ContinuousClock.Instant)?
    private var campaignedAlone = false
    /// Answers to membership changes applied in the current batch, given once it is committed.
    private var pendingMembershipCompletions: [() -> Void] = []
    private var removedFromCluster = false
    /// Proposals forwarded by followers that could not be taken yet, with when they expire.
    private var deferredProposals: [(message: Message, expires: ContinuousClock.Instant)] = []
    private var soft = SoftState(leader: noNode, role: .follower)
    private var term: UInt64 = 0
    /// When the leader last checkpointed its lease renewals.
    private var lastLeaseCheckpoint = ContinuousClock.now
    private var commitIndex: UInt64 = 0

    /// Proposals made here and not yet applied, by request ID.
    private var waiting: [UInt64: Waiter] = [:]
    /// Proposals the node refused for want of a leader: offered again on every tick.
    private var unproposed: [(id: UInt64, data: [UInt8])] = []
    private var nextRequestID = UInt64.random(in: 1..<UInt64.max / 2)
    /// Reads waiting for their read index, by the context their request carried.
    private var readBatches: [UInt64: ReadBatch] = [:]
    /// Reads that know their read index and wait for it to be applied.
    private var readsAwaitingApply: [(index: UInt64, reads: [EtcdServer.ReadWaiter])] = []
    /// Random at each start, so a read index answer meant for an earlier run of this member
    /// (or for another member) never matches a read waiting now.
    private var nextReadContext = UInt64.random(in: 1..<UInt64.max / 2)
    private var ticks: UInt64 = 0
    /// `MoveLeader` requests waiting for their target to lead.
    private var transfers: [EtcdServer.LeaderTransfer] = []
    /// Set when a leader became known since the last turn.
    private var leaderAppeared = false

    struct Waiter {
        var completion: @Sendable (Result<WriteResponse, EtcdError>) -> Void
        var deadline: ContinuousClock.Instant
    }

    private struct ReadBatch {
        var reads: [EtcdServer.ReadWaiter]
        var requestedAtTick: UInt64
    }

    /// Where the member restarts from, as ``EtcdServer`` recovered it.
    struct Recovered {
        var node: RaftNode
        var storage: MemoryStorage
        var log: WriteAheadLog
        var store: KeyValueStore
        var appliedIndex: UInt64
        var appliedTerm: UInt64
        var snapshotIndex: UInt64
        var confState: ConfState
        var membership: Membership
    }

    init(server: EtcdServer, recovered: Recovered, backend: SQLiteBackend, transport: PeerTransport, logger: Logger) {
        self.server = server
        configuration = server.configuration
        node = recovered.node
        storage = recovered.storage
        log = recovered.log
        store = recovered.store
        appliedIndex = recovered.appliedIndex
        appliedTerm = recovered.appliedTerm
        snapshotIndex = recovered.snapshotIndex
        confState = recovered.confState
        membership = recovered.membership
        self.backend = backend
        committer = BackendCommitter(backend: backend, server: server)
        self.transport = transport
        self.logger = logger
        term = recovered.storage.hardState.term
        commitIndex = recovered.storage.hardState.commit
    }

    private var localID: NodeID { node.id }

    // MARK: The loop

    func run() {
        startElectionClock()
        // A fresh cluster's bootstrap membership is applied (and a lone voter elected) before
        // the first tick.
        while node.hasReady { handleReady() }
        campaignIfAlone()
        while node.hasReady { handleReady() }
        publishStatus()
        let interval = configuration.heartbeatInterval
        var nextTick = ContinuousClock.now + interval
        while true {
            let untilTick = nextTick - ContinuousClock.now
            if untilTick > .zero {
                let (seconds, attoseconds) = untilTick.components
                _ = server.inbox.wake.wait(timeout: .now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)))
            }
            let now = ContinuousClock.now
            if now >= nextTick {
                node.tick()
                ticks += 1
                // After a stall, tick once rather than in a burst that would fire elections.
                nextTick = max(nextTick + interval, now)
                onTick(now)
            }
            let inbox = server.inbox.take()
            var receivedSnapshots: [String] = []
            for message in inbox.messages {
                if let snapshot = message.snapshot, !snapshot.data.isEmpty {
                    receivedSnapshots.append(String(decoding: snapshot.data, as: UTF8.self))
                }
                step(message, receivedAt: now)
            }
            for peer in inbox.unreachable { node.reportUnreachable(peer) }
            for (peer, status) in inbox.snapshotReports { node.reportSnapshot(peer, status: status) }
            startTransfers(inbox.transfers)
            propose(inbox.proposals)
            requestRead(inbox.reads)
            for change in inbox.membershipChanges { changeMembership(change) }
            while node.hasReady { handleReady() }
            campaignIfAlone()
            while node.hasReady { handleReady() }
            if leaderAppeared {
                // Requests refused for want of a leader go now rather than at the next tick.
                leaderAppeared = false
                publishAttributesIfNeeded(ContinuousClock.now)
                retryUnproposed()
                retryReads()
                while node.hasReady { handleReady() }
            }
            retryForwardedProposals(now)
            finishTransfers()
            // A snapshot Raft did not take (it was stale) leaves its file behind; installing removes it too.
            for path in receivedSnapshots { Self.removeDatabaseFiles(path) }
            if inbox.stopping { break }
        }
        failEverything(with: .stopped)
        committer.drain()
        transport.stop()
        log.close()
    }

    /// A fresh member waits less for its first election (etcd advances its ticks the same way).
    private func startElectionClock() {
        if term <= 1 {
            for _ in 1..<configuration.electionTicks { node.tick() }
        }
    }

    /// A member that is the only voter need not wait for an election timeout: it campaigns as
    /// soon as it knows it is alone (after applying the bootstrap membership, on a fresh start).
    private func campaignIfAlone() {
        guard !campaignedAlone, soft.leader == noNode, confState.voters == [localID], confState.votersOutgoing.isEmpty else { return }
        campaignedAlone = true
        node.campaign()
    }

    /// Publishes this member's name and client URLs to the cluster once a leader is known, so
    /// every member lists them (etcd's publish at start); retried until applied.
    private func publishAttributesIfNeeded(_ now: ContinuousClock.Instant) {
        guard soft.leader != noNode, let me = membership[localID] else { return }
        guard me.name != configuration.name || me.clientURLs != configuration.advertiseClientURLs else { return }
        if let publishing, publishing.deadline > now { return }
        let id = nextRequestID
        nextRequestID &+= 1
        publishing = (id, now + configuration.requestTimeout)
        let update = MemberAttributesUpdate(
            proposer: localID, requestID: id, id: localID, name: configuration.name, clientURLs: configuration.advertiseClientURLs)
        try? node.propose(EntryEnvelope.encode(update))
    }

    private func onTick(_ now: ContinuousClock.Instant) {
        retryUnproposed()
        publishAttributesIfNeeded(now)
        if configuration.autoPromoteLearners { promoteCaughtUpLearners(now) }
        retryReads(olderThan: UInt64(configuration.electionTicks))
        expire(now)
        tendLeases(now)
    }

    private func startTransfers(_ requests: [EtcdServer.LeaderTransfer]) {
        for transfer in requests {
            guard soft.role == .leader else {
                transfer.completion(.failure(.notLeader))
                continue
            }
            guard confState.voters.contains(transfer.target) else {
                transfer.completion(.failure(.badLeaderTransferee))
                continue
            }
            if transfer.target != localID { node.transferLeadership(to: transfer.target) }
            transfers.append(transfer)
        }
    }

    /// Completes transfers whose target now leads, and fails those past their deadline.
    private func finishTransfers() {
        guard !transfers.isEmpty else { return }
        let now = ContinuousClock.now
        transfers.removeAll { transfer in
            if soft.leader == transfer.target {
                transfer.completion(.success(()))
            } else if transfer.deadline <= now {
                transfer.completion(.failure(.leaderTransferTimeout))
            } else {
                return false
            }
            return true
        }
    }

    /// Fails requests whose deadline passed: without a leader as etcd's `no leader`, otherwise as a timeout.
    private func expire(_ now: ContinuousClock.Instant) {
        let error: EtcdError = soft.leader == noNode ? .noLeader : .timeout
        for (id, waiter) in waiting where waiter.deadline <= now {
            waiting[id] = nil
            waiter.completion(.failure(error))
        }
        unproposed.removeAll { waiting[$0.id] == nil }
        for (id, waiter) in membershipWaiting where waiter.deadline <= now {
            membershipWaiting[id] = nil
            waiter.completion(.failure(error))
        }
        for (context, batch) in readBatches {
            let (expired, live) = batch.reads.partitioned { $0.deadline <= now }
            for read in expired { read.completion(.failure(error)) }
            readBatches[context] = live.isEmpty ? nil : ReadBatch(reads: live, requestedAtTick: batch.requestedAtTick)
        }
        readsAwaitingApply = readsAwaitingApply.compactMap { index, reads in
            let (expired, live) = reads.partitioned { $0.deadline <= now }
            for read in expired { read.completion(.failure(.timeout)) }
            return live.isEmpty ? nil : (index, live)
        }
    }

    private func failEverything(with error: EtcdError) {
        for waiter in waiting.values { waiter.completion(.failure(error)) }
        waiting = [:]
        for waiter in membershipWaiting.values { waiter.completion(.failure(error)) }
        membershipWaiting = [:]
        for transfer in transfers { transfer.completion(.failure(error)) }
        transfers = []
        for batch in readBatches.values { for read in batch.reads { read.completion(.failure(error)) } }
        for (_, reads) in readsAwaitingApply { for read in reads { read.completion(.failure(error)) } }
        readBatches = [:]
        readsAwaitingApply = []
    }

    /// Steps a peer's message. A proposal a follower forwarded that cannot be taken now (a
    /// leadership transfer is under way, or this member just lost its leadership) is kept and
    /// offered again, to whoever leads by then: it was never appended, so it cannot be applied
    /// twice, and the client's write does not time out because of a `move-leader`.
    private func step(_ message: Message, receivedAt now: ContinuousClock.Instant) {
        do {
            try node.step(message)
        } catch .proposalDropped(let reason) where message.type == .propose && reason != .uncommittedSizeLimit {
            deferredProposals.append((message, now + configuration.requestTimeout))
        } catch {
            // Stale or malformed messages are Raft's to ignore.
        }
    }

    private func retryForwardedProposals(_ now: ContinuousClock.Instant) {
        guard !deferredProposals.isEmpty, soft.leader != noNode else { return }
        let deferred = deferredProposals
        deferredProposals = []
        for (message, expires) in deferred where expires > now {
            do {
                try node.step(message)
            } catch {
                deferredProposals.append((message, expires))
            }
        }
        while node.hasReady { handleReady() }
    }

    // MARK: Requests

    private func propose(_ proposals: [EtcdServer.Proposal]) {
        guard !proposals.isEmpty else { return }
        var batch: [(id: UInt64, data: [UInt8])] = []
        batch.reserveCapacity(proposals.count)
        for proposal in proposals {
            let id = nextRequestID
            nextRequestID &+= 1
            waiting[id] = Waiter(completion: proposal.completion, deadline: proposal.deadline)
            batch.append((id, EntryEnvelope.encode(proposer: localID, requestID: id, request: proposal.request)))
        }
        offer(batch)
    }

    private func retryUnproposed() {
        guard !unproposed.isEmpty, soft.leader != noNode else { return }
        let batch = unproposed
        unproposed = []
        offer(batch)
    }

    /// Hands proposals to the node; those refused for want of a leader wait for one.
    private func offer(_ batch: [(id: UInt64, data: [UInt8])]) {
        do {
            try node.propose(batch: batch.map(\.data))
        } catch .proposalDropped(.noLeader), .proposalDropped(.leadershipTransferInProgress) {
            // Offered again once a leader is known (after a transfer, that is the new one).
            unproposed += batch
        } catch {
            let failure: EtcdError =
                switch error {
                case .proposalDropped(.uncommittedSizeLimit): .tooManyRequests
                case .proposalDropped(.leadershipTransferInProgress): .leaderChanged
                default: .stopped
                }
            for (id, _) in batch {
                waiting.removeValue(forKey: id)?.completion(.failure(failure))
            }
        }
    }

    /// Asks for one read index for all of `reads`: they share the confirmation round.
    private func requestRead(_ reads: [EtcdServer.ReadWaiter]) {
        guard !reads.isEmpty else { return }
        let context = nextReadContext
        nextReadContext += 1
        readBatches[context] = ReadBatch(reads: reads, requestedAtTick: ticks)
        // Refused without a leader: asked again on a later tick.
        try? node.readIndex(context: Self.bytes(context))
    }

    /// Asks again for read indexes requested at least `age` ticks ago: the request or its answer
    /// was lost (no leader then, a leader change, a dropped message).
    private func retryReads(olderThan age: UInt64 = 0) {
        for (context, batch) in readBatches where ticks - batch.requestedAtTick >= age {
            readBatches[context]!.requestedAtTick = ticks
            try? node.readIndex(context: Self.bytes(context))
        }
    }

    private func answer(_ readStates: [ReadState]) {
        for state in readStates {
            guard let context = Self.number(state.context), let batch = readBatches.removeValue(forKey: context) else { continue }
            if state.index <= appliedIndex {
                for read in batch.reads { read.completion(.success(())) }
            } else {
                readsAwaitingApply.append((state.index, batch.reads))
            }
        }
    }

    private func answerReadsUpToApplied() {
        guard !readsAwaitingApply.isEmpty else { return }
        let (ready, waiting) = readsAwaitingApply.partitioned { $0.index <= appliedIndex }
        readsAwaitingApply = waiting
        for (_, reads) in ready { for read in reads { read.completion(.success(())) } }
    }

    static func bytes(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    static func number(_ bytes: [UInt8]) -> UInt64? {
        guard bytes.count == 8 else { return nil }
        return bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }

    // MARK: Ready

    private func handleReady() {
        let ready = node.ready()
        if let newSoft = ready.softState { roleChanged(newSoft) }
        transport.send(ready.messages)
        if let snapshot = ready.snapshot { install(snapshot) }
        persist(ready)
        transport.send(ready.messagesAfterPersist)
        apply(ready.committedEntries)
        answer(ready.readStates)
        node.advance()
        publishStatus()
    }

    private func roleChanged(_ newSoft: SoftState) {
        if newSoft.leader != soft.leader {
            if newSoft.leader == noNode {
                logger.info("raft lost leader", metadata: ["local-member-id": "\(hex(localID))", "lost-leader-id": "\(hex(soft.leader))"])
            } else {
                logger.info("raft elected leader", metadata: [
                    "local-member-id": "\(hex(localID))", "elected-leader-id": "\(hex(newSoft.leader))", "term": "\(node.status().hardState.term)",
                ])
            }
        }
        if soft.leader == noNode && newSoft.leader != noNode { leaderAppeared = true }
        // A leader takes over lease expiry once it applies its first entry (below); one that
        // steps down hands it back at once.
        if soft.role == .leader, newSoft.role != .leader { server.lessor.demote() }
        soft = newSoft
    }

    private func persist(_ ready: Ready) {
        let entries = ready.entries.map(EntryEnvelope.logEntry)
        let hardState = ready.hardState.map { WALHardState(term: $0.term, vote: $0.vote, commit: $0.commit) }
        guard !entries.isEmpty || hardState != nil else { return }
        do {
            try log.save(hardState: hardState, entries: entries, sync: ready.mustSync)
        } catch {
            EtcdServer.fatal("failed to persist raft state to the log", error)
        }
        storage.append(ready.entries)
        if let state = ready.hardState {
            storage.setHardState(state)
            term = state.term
            commitIndex = state.commit
        }
    }

    /// Takes a snapshot from the leader: its backend replaces ours (one transaction readers see
    /// atomically), the store is rebuilt from it, and only then the snapshot is recorded in the
    /// log, so a crash in between leaves a backend ahead of the log, which a restart takes as
    /// its snapshot, never a log pointing at a backend that does not have the data.
    private func install(_ snapshot: Snapshot) {
        let path = String(decoding: snapshot.data, as: UTF8.self)
        let metadata = snapshot.metadata
        committer.drain()
        server.watchHub.replacingBackend()
        do {
            try backend.restore(from: path)
            store = try KeyValueStore(restoringFrom: backend)
            try EtcdServer.restoreLeases(server.lessor, from: backend, store: store)
            appliedIndex = UInt64(try backend.meta(.consistentIndex) ?? 0)
            appliedTerm = UInt64(try backend.meta(.consistentTerm) ?? 0)
            try backend.makeDurable(snapshotIndex: Int64(metadata.index))
            try Snapshotter.save(
                SnapshotFile(index: metadata.index, term: metadata.term, confState: PeerWire.encode(metadata.confState)),
                directory: server.snapDirectory)
            try log.saveSnapshot(WALSnapshot(index: metadata.index, term: metadata.term))
            try storage.applySnapshot(Snapshot(metadata: metadata))
        } catch {
            EtcdServer.fatal("failed to install the snapshot from the leader", error)
        }
        Self.removeDatabaseFiles(path)
        confState = metadata.confState
        snapshotIndex = metadata.index
        // The member list comes with the backend, at its applied index.
        if let stored = try? backend.document(.membership), let restored = try? Membership(encoded: stored) {
            membership = restored
            transport.setPeers(membership.peers)
            server.publish(membership: membership)
        }
        logger.info("applied snapshot from the leader", metadata: [
            "snapshot-index": "\(metadata.index)", "backend-applied-index": "\(appliedIndex)", "revision": "\(store.revision)",
        ])
        server.publish(committedStore: store, appliedIndex: appliedIndex)
        server.watchHub.replacedBackend(store: store)
        answerReadsUpToApplied()
    }

    static func removeDatabaseFiles(_ path: String) {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }

    /// Applies committed entries in order, publishes the new store, hands the batch to the
    /// committer (which commits it to the backend with the applied index), then completes the
    /// proposals made here.
    ///
    /// Proposals are answered before the backend commit (see ``BackendCommitter``); a
    /// compaction or a membership change is answered after it, when its effect is on disk.
    private func apply(_ entries: [Entry]) {
        // Entries the backend already holds (a snapshot from the leader may be ahead of its own
        // index) are skipped, but their membership changes still reach Raft.
        let alreadyApplied = entries.prefix { $0.index <= appliedIndex }
        for entry in alreadyApplied where entry.kind == .confChange { applyMembershipChange(entry, replaying: true) }
        let entries = entries.dropFirst(alreadyApplied.count)
        guard let last = entries.last else { return }
        var reader = OverlayReader(layers: server.uncommittedLayers, base: backend)
        var changes: [Change] = []
        var compaction: (main: Int64, kept: Set<Revision>)?
        var completions: [(Waiter, Result<WriteResponse, EtcdError>)] = []
        var leaseRows: [Int64: SQLiteBackend.LeaseRow?] = [:]
        let header = server.header(revision: 0, term: term)
        for entry in entries {
            switch entry.kind {
            case .normal:
                // An empty entry is a new leader's no-op: applied, everything before this term
                // is too, so the leader now decides when leases expire (etcd's promotion).
                guard !entry.data.isEmpty else {
                    if soft.role == .leader, entry.term == term {
                        server.lessor.promote(extend: configuration.electionTimeout, now: .now)
                    }
                    continue
                }
                if let update = EntryEnvelope.attributesUpdate(entry.data) {
                    applyAttributesUpdate(update)
                    continue
                }
                let envelope: EntryEnvelope
                do {
                    envelope = try EntryEnvelope(entry.data)
                } catch {
                    EtcdServer.fatal("committed entry \(entry.index) does not decode", error)
                }
                let outcome = Applier.apply(envelope.request, to: &store, reader: reader, header: header, lessor: server.lessor)
                apply(outcome.leaseEffects, recordingIn: &leaseRows)
                reader.add(outcome.changes)
                changes += outcome.changes
                if let compacted = outcome.compaction { compaction = compacted }
                if envelope.proposer == localID, let waiter = waiting.removeValue(forKey: envelope.requestID) {
                    completions.append((waiter, outcome.response))
                }
            case .confChange:
                applyMembershipChange(entry, replaying: false)
            }
        }
        appliedIndex = last.index
        appliedTerm = last.term
        var meta: [SQLiteBackend.Meta: Int64] = [
            .consistentIndex: Int64(appliedIndex), .consistentTerm: Int64(appliedTerm), .revision: store.revision,
        ]
        if compaction != nil { meta[.compactedRevision] = store.compactedRevision }
        var documents: [SQLiteBackend.Document: [UInt8]] = [:]
        if membershipChanged {
            documents = [.membership: membership.encoded(), .confState: PeerWire.encode(confState)]
        }
        // Announced before the backend deletes anything (with this batch's commit).
        if let compaction { server.watchHub.compacting(atMain: compaction.main) }
        server.publish(store: store, appliedIndex: appliedIndex, uncommitted: reader.pending)
        let batch = BackendCommitter.Batch(
            changes: changes, meta: meta, documents: documents, leases: leaseRows, compaction: compaction, revision: store.revision)
        let answerAfterCommit = compaction != nil || membershipChanged
        if answerAfterCommit {
            committer.submit(batch)
            committer.drain()
            if membershipChanged { membershipApplied() }
        }
        // Watchers hear of the changes once reads can see them, before the writers hear of
        // them (a client that watches what it writes sees the event first, as with etcd).
        server.watchHub.notify(changes, store: store)
        for (waiter, result) in completions { waiter.completion(result) }
        answerReadsUpToApplied()
        // Waking the committer's thread is not on the answers' path.
        if !answerAfterCommit {
            committer.submit(batch)
            if committer.isBacklogged { committer.drain() }
        }
        if appliedIndex - snapshotIndex >= configuration.snapshotCount {
            snapshot()
        }
    }

    /// Carries out what an applied request did to leases, noting the rows the backend batch
    /// must write (the checkpoint's own figures, so every member stores the same).
    private func apply(_ effects: [LeaseEffect], recordingIn rows: inout [Int64: SQLiteBackend.LeaseRow?]) {
        let lessor = server.lessor
        for effect in effects {
            switch effect {
            case .grant(let id, let ttl):
                if (try? lessor.grant(id: id, ttl: ttl, now: .now)) != nil {
                    rows[id] = SQLiteBackend.LeaseRow(id: id, ttl: ttl, remainingMilliseconds: nil)
                }
            case .revoke(let id):
                _ = try? lessor.revoke(id: id)
                rows[id] = .some(nil)
            case .attach(let key, let lease):
                lessor.attach(key, to: lease)
            case .detach(let key, let lease):
                lessor.detach(key, from: lease)
            case .checkpoint(let remaining):
                lessor.checkpoint(remaining, now: .now)
                for (id, milliseconds) in remaining {
                    guard let ttl = lessor.timeToLive(id: id, now: .now)?.grantedTTL else { continue }
                    rows[id] = SQLiteBackend.LeaseRow(id: id, ttl: ttl, remainingMilliseconds: milliseconds)
                }
            }
        }
    }

    /// On the leader, each tick: proposes the revocation of expired leases (at most 1,000 a
    /// second, as etcd) and, every 500 ms, a checkpoint of the leases renewed since the last,
    /// so followers know what a keep-alive renewed.
    private func tendLeases(_ now: ContinuousClock.Instant) {
        let lessor = server.lessor
        guard lessor.isPrimary else { return }
        let perTick = max(1, Int((configuration.heartbeatInterval * 1000) / .seconds(1)))
        var batch: [(id: UInt64, data: [UInt8])] = []
        func internalProposal(_ request: WriteRequest) {
            // Nobody waits for these: no waiter under the request ID.
            batch.append((nextRequestID, EntryEnvelope.encode(proposer: localID, requestID: nextRequestID, request: request)))
            nextRequestID &+= 1
        }
        for id in lessor.expired(now: now, limit: perTick) {
            var revoke = Etcdserverpb_LeaseRevokeRequest()
            revoke.id = id
            internalProposal(.leaseRevoke(revoke))
        }
        if now - lastLeaseCheckpoint >= .milliseconds(500) {
            lastLeaseCheckpoint = now
            let renewals = lessor.takeRenewals(now: now)
            if !renewals.isEmpty {
                var checkpoint = Etcdserverpb_LeaseCheckpointRequest()
                checkpoint.checkpoints = renewals.map { renewal in
                    var entry = Etcdserverpb_LeaseCheckpoint()
                    entry.id = renewal.id
                    entry.remainingTtl = renewal.milliseconds
                    return entry
                }
                internalProposal(.leaseCheckpoint(checkpoint))
            }
        }
        // Dropped, not kept for a later leader, when this member cannot propose now: what
        // this leader decided about its leases is not the next one's to carry out.
        if !batch.isEmpty { try? node.propose(batch: batch.map(\.data)) }
    }

    /// Applies a committed membership change to Raft and, unless `replaying` an entry the
    /// backend already holds (after a snapshot from the leader: the stored membership has it),
    /// to the member list. A change Raft's configuration says is stale (adding a member twice,
    /// removing one that is gone, a second learner) is skipped, decided from the configuration
    /// alone so every member decides alike, replaying or not; its client gets etcd's error.
    private func applyMembershipChange(_ entry: Entry, replaying: Bool) {
        guard let change = ConfChange(encoded: entry.data) else {
            EtcdServer.fatal("committed membership change \(entry.index) does not decode", ConfigurationError("bad encoding"))
        }
        let context = try? MembershipChangeContext(encoded: change.context)
        if let refusal = refusal(of: change) {
            if !replaying, let context, context.proposer == localID,
                let waiter = membershipWaiting.removeValue(forKey: context.requestID)
            {
                waiter.completion(.failure(refusal))
            }
            return
        }
        do {
            confState = try node.applyConfChange(change)
        } catch {
            logger.warning("ignored a membership change that cannot apply", metadata: ["error": "\(error)"])
            return
        }
        guard !replaying else { return }
        membershipChanged = true
        // Leaving a joint configuration carries no member.
        guard let context else { return }
        var member = context.member
        for single in change.changes {
            switch single.kind {
            case .addNode where membership[single.node] != nil:
                membership.update(single.node) { $0.isLearner = false }
                member = membership[single.node]!
                logger.info("promoted learner to voting member", metadata: ["member-id": "\(hex(single.node))"])
            case .addNode, .addLearner:
                membership.add(member)
                logger.info("added member", metadata: [
                    "member-id": "\(hex(member.id))", "peer-urls": "\(member.peerURLs)", "is-learner": "\(member.isLearner)",
                ])
            case .removeNode:
                member = membership[single.node] ?? member
                membership.remove(single.node)
                logger.info("removed member", metadata: ["member-id": "\(hex(single.node))"])
            }
        }
        if context.proposer == localID, let waiter = membershipWaiting.removeValue(forKey: context.requestID) {
            let result: EtcdServer.MembershipResult = .success((member, membership.members))
            pendingMembershipCompletions.append({ waiter.completion(result) })
        }
    }

    /// Why Raft's current configuration makes `change` stale, if it does.
    private func refusal(of change: ConfChange) -> EtcdError? {
        let voters = Set(confState.voters + confState.votersOutgoing)
        let learners = Set(confState.learners + confState.learnersNext)
        for single in change.changes {
            switch single.kind {
            case .addNode where voters.contains(single.node): return .memberExists
            case .addLearner where voters.contains(single.node) || learners.contains(single.node): return .memberExists
            case .addLearner where !learners.isEmpty: return .tooManyLearners
            case .removeNode where !voters.contains(single.node) && !learners.contains(single.node): return .memberNotFound
            default: continue
            }
        }
        return nil
    }

    private func applyAttributesUpdate(_ update: MemberAttributesUpdate) {
        guard membership[update.id] != nil else { return }
        membership.update(update.id) { member in
            if let name = update.name { member.name = name }
            if let clientURLs = update.clientURLs { member.clientURLs = clientURLs }
            if let peerURLs = update.peerURLs { member.peerURLs = peerURLs }
        }
        membershipChanged = true
        if update.proposer == localID {
            if publishing?.id == update.requestID { publishing = nil }
            if let waiter = membershipWaiting.removeValue(forKey: update.requestID) {
                let result: EtcdServer.MembershipResult = .success((membership[update.id]!, membership.members))
                pendingMembershipCompletions.append({ waiter.completion(result) })
            }
        }
    }

    /// After a batch that changed the membership is committed: peers, what requests see,
    /// answers to the clients that asked, and stopping if this member was removed.
    private func membershipApplied() {
        membershipChanged = false
        transport.setPeers(membership.peers)
        server.publish(membership: membership)
        let completions = pendingMembershipCompletions
        pendingMembershipCompletions = []
        for complete in completions { complete() }
        if membership.removed.contains(localID) && !removedFromCluster {
            removedFromCluster = true
            logger.warning("the member has been permanently removed from the cluster; stopping", metadata: [
                "local-member-id": "\(hex(localID))",
            ])
            configuration.onRemovedFromCluster?()
        }
    }

    // MARK: Membership requests

    /// Checks a membership request against the applied membership and proposes it.
    private func changeMembership(_ proposal: EtcdServer.MembershipProposal) {
        let fail = { (error: EtcdError) in proposal.completion(.failure(error)) }
        let id = nextRequestID
        switch proposal.request {
        case .add(let peerURLs, let isLearner):
            guard !peerURLs.isEmpty, peerURLs.allSatisfy({ PeerURL.hostAndPort($0) != nil }) else { return fail(.memberBadURLs) }
            let inUse = Set(membership.members.flatMap(\.peerURLs))
            guard peerURLs.allSatisfy({ !inUse.contains($0) }) else { return fail(.peerURLExists) }
            if isLearner {
                // etcd allows one learner at a time (--experimental-max-learners defaults to 1).
                guard membership.members.filter(\.isLearner).count < 1 else { return fail(.tooManyLearners) }
            } else if configuration.strictReconfigCheck && !enoughStartedVoters(adding: 1) {
                return fail(.notEnoughStartedMembers)
            }
            let memberID = ClusterConfiguration.memberID(
                peerURLs: peerURLs, token: configuration.initialClusterToken, addedAt: Date())
            guard membership[memberID] == nil, !membership.removed.contains(memberID) else { return fail(.memberExists) }
            let member = Member(id: memberID, name: "", peerURLs: peerURLs.sorted(), clientURLs: [], isLearner: isLearner)
            proposeMembershipChange(
                ConfChangeSingle(isLearner ? .addLearner : .addNode, memberID), member: member, requestID: id, proposal: proposal)
        case .remove(let memberID):
            guard let member = membership[memberID] else { return fail(.memberNotFound) }
            if configuration.strictReconfigCheck && !member.isLearner && !enoughStartedVoters(removing: memberID) {
                return fail(.notEnoughStartedMembers)
            }
            proposeMembershipChange(ConfChangeSingle(.removeNode, memberID), member: member, requestID: id, proposal: proposal)
        case .update(let memberID, let peerURLs):
            guard membership[memberID] != nil else { return fail(.memberNotFound) }
            guard !peerURLs.isEmpty, peerURLs.allSatisfy({ PeerURL.hostAndPort($0) != nil }) else { return fail(.memberBadURLs) }
            let inUse = Set(membership.members.filter { $0.id != memberID }.flatMap(\.peerURLs))
            guard peerURLs.allSatisfy({ !inUse.contains($0) }) else { return fail(.peerURLExists) }
            nextRequestID &+= 1
            membershipWaiting[id] = (proposal.completion, proposal.deadline)
            let update = MemberAttributesUpdate(proposer: localID, requestID: id, id: memberID, peerURLs: peerURLs.sorted())
            do {
                try node.propose(EntryEnvelope.encode(update))
            } catch {
                membershipWaiting[id] = nil
                fail(soft.leader == noNode ? .noLeader : .leaderChanged)
            }
        case .promote(let memberID):
            guard let member = membership[memberID] else { return fail(.memberNotFound) }
            guard member.isLearner else { return fail(.memberNotLearner) }
            guard soft.role == .leader else {
                // Only the leader knows how far the learner got; a forwarded request never bounces.
                guard !proposal.forwarded, soft.leader != noNode else { return fail(proposal.forwarded ? .notLeader : .noLeader) }
                return transport.forwardPromotion(of: memberID, to: soft.leader, completion: proposal.completion)
            }
            guard isCaughtUp(memberID) else { return fail(.learnerNotReady) }
            if configuration.strictReconfigCheck && !enoughStartedVoters(adding: 1) { return fail(.notEnoughStartedMembers) }
            proposeMembershipChange(ConfChangeSingle(.addNode, memberID), member: member, requestID: id, proposal: proposal)
        }
    }

    private func proposeMembershipChange(
        _ single: ConfChangeSingle, member: Member, requestID: UInt64, proposal: EtcdServer.MembershipProposal
    ) {
        nextRequestID &+= 1
        membershipWaiting[requestID] = (proposal.completion, proposal.deadline)
        let context = MembershipChangeContext(proposer: localID, requestID: requestID, member: member)
        do {
            try node.proposeConfChange(ConfChange(changes: [single], context: context.encoded()))
        } catch {
            membershipWaiting[requestID] = nil
            proposal.completion(.failure(soft.leader == noNode ? .noLeader : .leaderChanged))
        }
    }

    /// Whether enough voters would be started (connected, or this member) after the change to
    /// keep a quorum: etcd's `--strict-reconfig-check`.
    private func enoughStartedVoters(adding added: Int = 0, removing removed: NodeID? = nil) -> Bool {
        let voters = membership.members.filter { !$0.isLearner && $0.id != removed }
        let started = voters.filter { $0.id == localID || transport.isConnected($0.id) }.count
        return started >= (voters.count + added) / 2 + 1
    }

    /// etcd's readiness rule: the learner has acknowledged at least 90% of what the leader has.
    private func isCaughtUp(_ learner: NodeID) -> Bool {
        let progress = node.status().progress
        guard let own = progress[localID]?.match, let theirs = progress[learner]?.match else { return false }
        return Double(theirs) >= Double(own) * 0.9
    }

    /// Beyond etcd (`--auto-promote-learners`): the leader promotes a learner once it is caught up.
    private func promoteCaughtUpLearners(_ now: ContinuousClock.Instant) {
        guard soft.role == .leader, membershipWaiting.isEmpty else { return }
        for learner in membership.members where learner.isLearner && isCaughtUp(learner.id) {
            let proposal = EtcdServer.MembershipProposal(request: .promote(id: learner.id), completion: { _ in }, deadline: now + configuration.requestTimeout)
            logger.info("promoting a learner that caught up", metadata: ["member-id": "\(hex(learner.id))"])
            changeMembership(proposal)
            return
        }
    }

    private func publishStatus() {
        server.publish(
            raft: EtcdServer.RaftSummary(
                term: term, leader: soft.leader, role: soft.role, commitIndex: commitIndex, appliedIndex: appliedIndex),
            voters: confState.voters.count)
    }

    // MARK: Snapshots

    /// Records a snapshot at the applied index: makes the backend durable up to it, writes the
    /// snapshot file, then its marker in the log; keeps `snapshotCatchUpEntries` behind it in memory
    /// and purges old files in the background. A crash at any point leaves a state a restart
    /// recovers from: the previous snapshot, or this one.
    private func snapshot() {
        let file = SnapshotFile(index: appliedIndex, term: appliedTerm, confState: PeerWire.encode(confState))
        committer.drain()
        do {
            try backend.makeDurable(snapshotIndex: Int64(appliedIndex))
            try Snapshotter.save(file, directory: server.snapDirectory)
            try log.saveSnapshot(file.marker)
            try storage.createSnapshot(at: appliedIndex, confState: confState, data: [])
            if appliedIndex > configuration.snapshotCatchUpEntries {
                try? storage.compact(through: appliedIndex - configuration.snapshotCatchUpEntries)
            }
        } catch {
            EtcdServer.fatal("failed to save a snapshot", error)
        }
        snapshotIndex = appliedIndex
        server.purgeOldFiles(snapshotIndex: appliedIndex)
    }

    private func hex(_ id: NodeID) -> String { String(id, radix: 16) }
}

/// How the member's log entries are encoded: a normal entry is a tag byte, who proposed it and
/// under which request ID (so the member that proposed it can answer its client), then the write
/// request; an empty one is a new leader's no-op. In the write-ahead log a membership change is
/// its own tag byte followed by the encoded change, so the two kinds never collide.
struct EntryEnvelope {
    var proposer: NodeID
    var requestID: UInt64
    var request: WriteRequest

    private static let writeTag: UInt8 = 1
    private static let membershipTag: UInt8 = 2
    private static let attributesTag: UInt8 = 3

    static func encode(_ update: MemberAttributesUpdate) -> [UInt8] {
        [attributesTag] + update.encoded()
    }

    /// The attributes update a normal entry holds, if it holds one.
    static func attributesUpdate(_ data: [UInt8]) -> MemberAttributesUpdate? {
        guard data.first == attributesTag else { return nil }
        return try? MemberAttributesUpdate(encoded: Array(data.dropFirst()))
    }

    static func encode(proposer: NodeID, requestID: UInt64, request: WriteRequest) -> [UInt8] {
        [writeTag] + MemberLoop.bytes(proposer) + MemberLoop.bytes(requestID) + request.logData
    }

    init(_ data: [UInt8]) throws {
        guard data.count > 17, data[0] == Self.writeTag else {
            throw ConfigurationError("entry of \(data.count) bytes is not a write request")
        }
        proposer = MemberLoop.number(Array(data[1..<9]))!
        requestID = MemberLoop.number(Array(data[9..<17]))!
        request = try WriteRequest(logData: Array(data[17...]))
    }

    /// A Raft entry as the log stores it.
    static func logEntry(_ entry: Entry) -> LogEntry {
        switch entry.kind {
        case .normal: LogEntry(index: entry.index, term: entry.term, data: entry.data)
        case .confChange: LogEntry(index: entry.index, term: entry.term, data: [membershipTag] + entry.data)
        }
    }

    /// A logged entry as Raft takes it back.
    static func raftEntry(_ entry: LogEntry) -> Entry {
        if entry.data.first == membershipTag {
            return Entry(term: entry.term, index: entry.index, kind: .confChange, data: Array(entry.data.dropFirst()))
        }
        return Entry(term: entry.term, index: entry.index, data: entry.data)
    }
}

extension Array {
    /// The elements matching `predicate`, then the rest, each in their original order.
    func partitioned(by predicate: (Element) -> Bool) -> ([Element], [Element]) {
        var matching: [Element] = []
        var rest: [Element] = []
        for element in self {
            if predicate(element) { matching.append(element) } else { rest.append(element) }
        }
        return (matching, rest)
    }
}
