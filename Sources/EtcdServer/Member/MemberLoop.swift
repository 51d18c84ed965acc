import Auth
import Backend
import Dispatch
import EtcdProto
import Foundation
import Lease
import Logging
import MVCC
import Raft
import WAL

/// The member's one loop thread: it owns the Raft node, its log, and the store, and is the
/// only code that touches them. Everything else talks to it through the inbox; what it shares
/// with the rest of the member is passed in, never reached through the server.
///
/// Each turn: tick when a heartbeat interval has passed, take everything the inbox holds
/// (peer messages, proposals, reads) into the node, then work off every `Ready`: send what may
/// go before the disk write (a leader replicates while it writes, Raft thesis §10.2.1), append
/// to the log with one `fdatasync`, send acknowledgements, apply committed entries to the store
/// in one backend transaction, answer reads whose read index is applied, and advance.
final class MemberLoop {
    let configuration: EtcdServer.Configuration
    var node: RaftNode
    let storage: MemoryStorage
    let log: WriteAheadLog
    let committer: BackendCommitter
    /// Where requests, peer messages and reports arrive.
    let inbox: MemberInbox
    /// What requests read without the loop: the loop publishes each applied state there.
    let published: PublishedState
    let progress: ApplyProgress
    let lessor: Lessor
    let watchHub: WatchHub
    let backend: SQLiteBackend
    let transport: PeerTransport
    let purger: FilePurger
    let headers: ResponseHeaders
    let operations: OperationCounts
    let snapDirectory: String
    let logger: Logger
    var store: KeyValueStore
    var appliedIndex: UInt64
    var appliedTerm: UInt64
    var snapshotIndex: UInt64
    var confState: ConfState
    var membership: Membership
    /// Set when applying changed the membership, so the batch's commit stores it.
    var membershipChanged = false
    /// Users, roles and grants; every write from a client is checked against them when applied.
    var auth: AuthState
    /// Set when applying changed `auth`, so the batch's commit stores it.
    var authChanged = false
    /// The active alarms, as applied; published and stored when they change.
    var alarms: AlarmList
    var alarmsChanged = false
    /// Set when a write applied here passed this member's space quota: the next tick proposes
    /// its NOSPACE alarm (unless raised by then).
    var noSpaceToRaise = false
    /// Simple tokens: logins applied here register theirs.
    let tokens: SimpleTokens
    /// The request ID of this member's own attributes update while it is in flight.
    var publishing: (id: UInt64, deadline: ContinuousClock.Instant)?
    /// Set once this member's attributes update of this start is applied: it is ready.
    var publishedSinceStart = false
    let readiness: Readiness
    var campaignedAlone = false
    /// Answers to membership changes applied in the current batch, given once it is committed.
    var pendingMembershipCompletions: [() -> Void] = []
    var removedFromCluster = false
    var soft = SoftState(leader: noNode, role: .follower)
    var term: UInt64 = 0
    var leaseDuties = LeaseDuties(now: .now)
    var commitIndex: UInt64 = 0

    var proposals = ProposalTracker(firstRequestID: .random(in: 1..<UInt64.max / 2))
    var reads = ReadIndexQueue(firstContext: .random(in: 1..<UInt64.max / 2))
    var ticks: UInt64 = 0
    /// `MoveLeader` requests waiting for their target to lead.
    var transfers: [EtcdServer.LeaderTransfer] = []
    /// Set when a leader became known since the last turn.
    var leaderAppeared = false
    /// Leaders this member has seen elected (etcd's `etcd_server_leader_changes_seen_total`).
    var leaderChanges: UInt64 = 0

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
        var auth: AuthState
        var alarms: AlarmList
    }

    /// What the loop shares with the rest of the member is passed in; it never holds the
    /// ``EtcdServer`` facade.
    init(
        configuration: EtcdServer.Configuration, recovered: Recovered, inbox: MemberInbox, published: PublishedState,
        progress: ApplyProgress, lessor: Lessor, watchHub: WatchHub, backend: SQLiteBackend, committer: BackendCommitter,
        transport: PeerTransport, purger: FilePurger,
        headers: ResponseHeaders, operations: OperationCounts, snapDirectory: String, tokens: SimpleTokens, readiness: Readiness,
        logger: Logger
    ) {
        self.configuration = configuration
        node = recovered.node
        storage = recovered.storage
        log = recovered.log
        store = recovered.store
        appliedIndex = recovered.appliedIndex
        appliedTerm = recovered.appliedTerm
        snapshotIndex = recovered.snapshotIndex
        confState = recovered.confState
        membership = recovered.membership
        auth = recovered.auth
        alarms = recovered.alarms
        self.tokens = tokens
        self.readiness = readiness
        self.inbox = inbox
        self.published = published
        self.progress = progress
        self.lessor = lessor
        self.watchHub = watchHub
        self.backend = backend
        self.transport = transport
        self.purger = purger
        self.headers = headers
        self.operations = operations
        self.snapDirectory = snapDirectory
        self.logger = logger
        self.committer = committer
        term = recovered.storage.hardState.term
        commitIndex = recovered.storage.hardState.commit
    }

    var localID: NodeID { node.id }

    // MARK: The loop

    func run() {
        startElectionClock()
        // A fresh cluster's bootstrap membership is applied (and a lone voter elected) before
        // the first tick.
        while node.hasReady { handleReady() }
        campaignIfAlone()
        while node.hasReady { handleReady() }
        // A lone voter restarting is leader now: it publishes itself without waiting for a tick.
        actOnNewLeader()
        publishStatus()
        let interval = configuration.heartbeatInterval
        var nextTick = ContinuousClock.now + interval
        while true {
            let untilTick = nextTick - ContinuousClock.now
            if untilTick > .zero {
                let (seconds, attoseconds) = untilTick.components
                _ = inbox.wake.wait(timeout: .now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)))
            }
            let now = ContinuousClock.now
            if now >= nextTick {
                node.tick()
                ticks += 1
                // After a stall, tick once rather than in a burst that would fire elections.
                nextTick = max(nextTick + interval, now)
                onTick(now)
            }
            let inbox = inbox.take()
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
            for wait in reads.awaitApply(inbox.appliedWaits, through: commitIndex, appliedIndex: appliedIndex) {
                wait.completion(.success(()))
            }
            for change in inbox.membershipChanges { changeMembership(change) }
            while node.hasReady { handleReady() }
            campaignIfAlone()
            while node.hasReady { handleReady() }
            actOnNewLeader()
            retryForwardedProposals(now)
            finishTransfers()
            // A snapshot Raft did not take (it was stale) leaves its file behind; installing removes it too.
            for path in receivedSnapshots { Self.removeDatabaseFiles(path) }
            if inbox.stopping { break }
        }
        failEverything(with: .stopped)
        committer.commitNow()
        transport.stop()
        log.close()
    }

    /// A fresh member waits less for its first election (etcd advances its ticks the same way).
    func startElectionClock() {
        if term <= 1 {
            for _ in 1..<configuration.electionTicks { node.tick() }
        }
    }

    /// Once a leader is known after none was: this member publishes itself, and requests
    /// refused for want of a leader go now rather than at the next tick.
    func actOnNewLeader() {
        guard leaderAppeared else { return }
        leaderAppeared = false
        publishAttributesIfNeeded(ContinuousClock.now)
        retryUnproposed()
        retryReads()
        while node.hasReady { handleReady() }
    }

    /// A member that is the only voter need not wait for an election timeout: it campaigns as
    /// soon as it knows it is alone (after applying the bootstrap membership, on a fresh start).
    func campaignIfAlone() {
        guard !campaignedAlone, soft.leader == noNode, confState.voters == [localID], confState.votersOutgoing.isEmpty else { return }
        campaignedAlone = true
        node.campaign()
    }

    /// Publishes this member's name and client URLs to the cluster once a leader is known, so
    /// every member lists them (etcd's publish at every start, even when they are unchanged:
    /// applying it means this member caught up with the log and is ready); retried until applied.
    func publishAttributesIfNeeded(_ now: ContinuousClock.Instant) {
        guard !publishedSinceStart, soft.leader != noNode, membership[localID] != nil else { return }
        if let publishing, publishing.deadline > now { return }
        let id = proposals.nextRequestID()
        publishing = (id, now + configuration.requestTimeout)
        let update = MemberAttributesUpdate(
            proposer: localID, requestID: id, id: localID, name: configuration.name, clientURLs: configuration.advertiseClientURLs)
        try? node.propose(EntryEnvelope.encode(update))
    }

    func onTick(_ now: ContinuousClock.Instant) {
        // A follower sends only to its leader; it connects to the other peers too, so its
        // reconfiguration checks see every started member (etcd's followers stream to all).
        transport.connectToIdlePeers()
        retryUnproposed()
        publishAttributesIfNeeded(now)
        if configuration.autoPromoteLearners { promoteCaughtUpLearners(now) }
        retryReads(olderThan: UInt64(configuration.electionTicks))
        expire(now)
        tendLeases(now)
        raiseNoSpaceIfNeeded()
    }

    /// Proposes this member's NOSPACE alarm after a write applied past its quota (etcd raises it
    /// from its quota applier); nobody waits for the entry, and a refused proposal is tried again
    /// at the next tick.
    func raiseNoSpaceIfNeeded() {
        guard noSpaceToRaise else { return }
        if alarms.members(of: .nospace).contains(where: { $0.memberID == localID }) {
            noSpaceToRaise = false
            return
        }
        var alarm = Etcdserverpb_AlarmRequest()
        alarm.action = .activate
        alarm.memberID = localID
        alarm.alarm = .nospace
        let entry = EntryEnvelope.encode(proposer: localID, requestID: proposals.nextRequestID(), origin: .member, request: .alarm(alarm))
        if (try? node.propose(entry)) != nil {
            noSpaceToRaise = false
        }
    }

    func startTransfers(_ requests: [EtcdServer.LeaderTransfer]) {
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
    func finishTransfers() {
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
    func expire(_ now: ContinuousClock.Instant) {
        let error: EtcdError = soft.leader == noNode ? .noLeader : .timeout
        let (writes, membershipChanges) = proposals.expire(now: now)
        for waiter in writes { waiter.completion(.failure(error)) }
        for waiter in membershipChanges { waiter.completion(.failure(error)) }
        let (unanswered, unapplied) = reads.expire(now: now)
        for read in unanswered { read.completion(.failure(error)) }
        for read in unapplied { read.completion(.failure(.timeout)) }
    }

    func failEverything(with error: EtcdError) {
        let (writes, membershipChanges) = proposals.removeAll()
        for waiter in writes { waiter.completion(.failure(error)) }
        for waiter in membershipChanges { waiter.completion(.failure(error)) }
        for transfer in transfers { transfer.completion(.failure(error)) }
        transfers = []
        for read in reads.removeAll() { read.completion(.failure(error)) }
    }

    /// Steps a peer's message. A proposal a follower forwarded that cannot be taken now (a
    /// leadership transfer is under way, or this member just lost its leadership) is kept and
    /// offered again, to whoever leads by then: it was never appended, so it cannot be applied
    /// twice, and the client's write does not time out because of a `move-leader`.
    func step(_ message: Message, receivedAt now: ContinuousClock.Instant) {
        do {
            try node.step(message)
        } catch .proposalDropped(let reason) where message.type == .propose && reason != .uncommittedSizeLimit {
            proposals.deferForwarded(message, expires: now + configuration.requestTimeout)
        } catch {
            // Stale or malformed messages are Raft's to ignore.
        }
    }

    func retryForwardedProposals(_ now: ContinuousClock.Instant) {
        guard proposals.hasDeferredForwards, soft.leader != noNode else { return }
        for (message, expires) in proposals.takeDeferredForwards(now: now) {
            do {
                try node.step(message)
            } catch {
                proposals.deferForwarded(message, expires: expires)
            }
        }
        while node.hasReady { handleReady() }
    }

    // MARK: Requests

    func propose(_ requests: [EtcdServer.Proposal]) {
        guard !requests.isEmpty else { return }
        let batch = requests.map { request in
            let id = proposals.waitForWrite(request.completion, deadline: request.deadline)
            return (id, EntryEnvelope.encode(proposer: localID, requestID: id, origin: request.origin, request: request.request))
        }
        offer(batch)
    }

    func retryUnproposed() {
        guard soft.leader != noNode else { return }
        let batch = proposals.takeUnproposed()
        if !batch.isEmpty { offer(batch) }
    }

    /// Hands proposals to the node; those refused for want of a leader wait for one.
    func offer(_ batch: [ProposalTracker.Pending]) {
        do {
            try node.propose(batch: batch.map(\.data))
        } catch {
            for (waiter, failure) in proposals.refused(batch, because: error) { waiter.completion(.failure(failure)) }
        }
    }

    /// Asks for one read index for all of `waiting`: they share the confirmation round.
    func requestRead(_ waiting: [EtcdServer.ReadWaiter]) {
        // Refused without a leader: asked again on a later tick.
        if let context = reads.enqueue(waiting, atTick: ticks) { try? node.readIndex(context: context) }
    }

    /// Asks again for read indexes requested at least `age` ticks ago: the request or its answer
    /// was lost (no leader then, a leader change, a dropped message).
    func retryReads(olderThan age: UInt64 = 0) {
        for context in reads.contextsToRetry(atTick: ticks, olderThan: age) { try? node.readIndex(context: context) }
    }

    func answerReadsUpToApplied() {
        for read in reads.applied(through: appliedIndex) { read.completion(.success(())) }
    }

    // MARK: Ready

    func handleReady() {
        let ready = node.ready()
        if let newSoft = ready.softState { roleChanged(newSoft) }
        if let state = ready.hardState { progress.willSendCommit(state.commit) }
        transport.send(ready.messages)
        if let snapshot = ready.snapshot { install(snapshot) }
        persist(ready)
        transport.send(ready.messagesAfterPersist)
        apply(ready.committedEntries)
        for read in reads.answered(ready.readStates, appliedIndex: appliedIndex) { read.completion(.success(())) }
        node.advance()
        publishStatus()
    }

    func roleChanged(_ newSoft: SoftState) {
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
        if newSoft.leader != noNode, newSoft.leader != soft.leader { leaderChanges += 1 }
        // A leader takes over lease expiry once it applies its first entry (below); one that
        // steps down hands it back at once.
        if soft.role == .leader, newSoft.role != .leader { lessor.demote() }
        soft = newSoft
    }

    func persist(_ ready: Ready) {
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

    func publishStatus() {
        progress.didApply(through: appliedIndex)
        published.publish(
            raft: EtcdServer.RaftSummary(
                term: term, leader: soft.leader, role: soft.role, commitIndex: commitIndex, appliedIndex: appliedIndex,
                leaderChanges: leaderChanges),
            voters: confState.voters.count)
    }

    func hex(_ id: NodeID) -> String { String(id, radix: 16) }
}
