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

/// Applying committed entries and snapshots: the store, leases, the backend batch, waiters.
extension MemberLoop {
    /// Takes a snapshot from the leader: its backend replaces ours (one transaction readers see
    /// atomically), the store is rebuilt from it, and only then the snapshot is recorded in the
    /// log, so a crash in between leaves a backend ahead of the log, which a restart takes as
    /// its snapshot, never a log pointing at a backend that does not have the data.
    func install(_ snapshot: Snapshot) {
        let path = String(decoding: snapshot.data, as: UTF8.self)
        let metadata = snapshot.metadata
        committer.commitNow()
        watchHub.replacingBackend()
        do {
            try backend.restore(from: path)
            store = try KeyValueStore(restoringFrom: backend)
            try EtcdServer.restoreLeases(lessor, from: backend, store: store)
            appliedIndex = UInt64(try backend.meta(.consistentIndex) ?? 0)
            appliedTerm = UInt64(try backend.meta(.consistentTerm) ?? 0)
            try DurableSnapshot.record(
                index: metadata.index, term: metadata.term, confState: metadata.confState, backend: backend, log: log,
                snapDirectory: snapDirectory)
            try storage.applySnapshot(Snapshot(metadata: metadata))
        } catch {
            EtcdServer.fatal("failed to install the snapshot from the leader", error)
        }
        Self.removeDatabaseFiles(path)
        confState = metadata.confState
        snapshotIndex = metadata.index
        // Auth and alarms come with the backend too.
        auth = (try? backend.document(.auth)).flatMap { $0.flatMap { try? AuthState(encoded: $0) } } ?? AuthState()
        alarms = (try? backend.document(.alarms)).flatMap { $0.flatMap { try? AlarmList(encoded: $0) } } ?? AlarmList()
        published.withLock { [auth, alarms] in
            $0.auth = auth
            $0.alarms = alarms
        }
        // The member list comes with the backend, at its applied index.
        if let stored = try? backend.document(.membership), let restored = try? Membership(encoded: stored) {
            membership = restored
            transport.setPeers(membership.peers)
            published.publish(membership: membership)
        }
        logger.info("applied snapshot from the leader", metadata: [
            "snapshot-index": "\(metadata.index)", "backend-applied-index": "\(appliedIndex)", "revision": "\(store.revision)",
        ])
        published.publish(committedStore: store, appliedIndex: appliedIndex)
        watchHub.replacedBackend(store: store)
        answerReadsUpToApplied()
    }

    /// Whether `request` takes the backend past this member's `--quota-backend-bytes`, by
    /// etcd's cost model (the check made before proposing, made again as it is applied).
    func passesQuota(_ request: WriteRequest) -> Bool {
        request.exceeds(quota: configuration.quotaBackendBytes, allocated: backend.allocatedBytes + Int64(committer.pendingBytes))
    }

    /// Why auth refuses a client's write at apply time, against the grants of this moment.
    func authRefusal(_ request: WriteRequest, _ identity: AuthIdentity?) -> AuthError? {
        let lessor = lessor
        do throws(AuthError) {
            try AuthRules.check(request, identity: identity, in: auth) { lessor.keys(of: $0) }
        } catch {
            return error
        }
        return nil
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
    func apply(_ entries: [Entry]) {
        // Entries the backend already holds (a snapshot from the leader may be ahead of its own
        // index) are skipped, but their membership changes still reach Raft.
        let alreadyApplied = entries.prefix { $0.index <= appliedIndex }
        for entry in alreadyApplied where entry.kind == .confChange { applyMembershipChange(entry, replaying: true) }
        let entries = entries.dropFirst(alreadyApplied.count)
        guard let last = entries.last else { return }
        var reader = OverlayReader(layers: published.uncommittedLayers, base: backend)
        // A batch of puts nobody reads meanwhile writes the index in place: see PublishedState.
        if entries.count <= PublishedState.lendableBatch,
            entries.allSatisfy({ $0.kind == .normal && EntryEnvelope.isPutOrNoOp($0.data) })
        {
            _ = published.lendStoreIfUntaken()
        }
        var changes: [Change] = []
        var compaction: (main: Int64, kept: Set<Revision>)?
        var completions: [(ProposalTracker.WriteCompletion, Result<WriteResponse, EtcdError>)] = []
        var leaseRows: [Int64: SQLiteBackend.LeaseRow?] = [:]
        let header = headers.header(revision: 0, term: term)
        for entry in entries {
            switch entry.kind {
            case .normal:
                // An empty entry is a new leader's no-op: applied, everything before this term
                // is too, so the leader now decides when leases expire (etcd's promotion).
                guard !entry.data.isEmpty else {
                    if soft.role == .leader, entry.term == term {
                        lessor.promote(extend: configuration.electionTimeout, now: .now)
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
                let applyStarted = ContinuousClock.now
                var outcome: Applier.Outcome
                if case .client(let identity) = envelope.origin, let refusal = authRefusal(envelope.request, identity) {
                    outcome = Applier.Outcome(response: .failure(.auth(refusal)))
                } else if case .auth(let change) = envelope.request {
                    var authHeader = header
                    authHeader.revision = store.revision
                    outcome = Applier.Outcome(response: apply(change, index: entry.index, header: authHeader))
                } else if case .alarm(let request) = envelope.request {
                    var alarmHeader = header
                    alarmHeader.revision = store.revision
                    outcome = Applier.Outcome(response: .success(.alarm(apply(request, header: alarmHeader))))
                } else if case .downgrade(let request) = envelope.request {
                    var downgradeHeader = header
                    downgradeHeader.revision = store.revision
                    outcome = Applier.Outcome(response: apply(request, header: downgradeHeader))
                } else if alarms.contains(.corrupt), envelope.request.refusedWhenCorrupt {
                    // etcd's corrupt applier: data that differs from the peers' is not served.
                    outcome = Applier.Outcome(response: .failure(.corrupt))
                } else if alarms.contains(.nospace), envelope.request.needsSpace {
                    // etcd's capped applier: with NOSPACE raised anywhere, nothing grows the store.
                    outcome = Applier.Outcome(response: .failure(.noSpace))
                } else {
                    outcome = Applier.apply(envelope.request, to: &store, reader: reader, header: header, lessor: lessor)
                    // etcd's quota applier: a write past this member's quota is applied like on
                    // every member, but its client is told the space is exceeded, and the member
                    // raises NOSPACE.
                    if case .success = outcome.response, passesQuota(envelope.request) {
                        outcome.response = .failure(.noSpace)
                        noSpaceToRaise = true
                    }
                }
                if case .success(let response) = outcome.response { operations.applied(envelope.request, response) }
                let applyTook = ContinuousClock.now - applyStarted
                if applyTook > configuration.warningApplyDuration { warnOfSlowApply(envelope.request, took: applyTook) }
                apply(outcome.leaseEffects, recordingIn: &leaseRows)
                reader.add(outcome.changes)
                changes += outcome.changes
                if let compacted = outcome.compaction { compaction = compacted }
                if envelope.proposer == localID, let waiter = proposals.appliedWrite(envelope.requestID) {
                    completions.append((waiter.completion, outcome.response))
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
        if authChanged {
            documents[.auth] = auth.encoded()
            published.withLock { $0.auth = auth }
            authChanged = false
        }
        if alarmsChanged {
            documents[.alarms] = alarms.encoded()
            published.withLock { [alarms] in $0.alarms = alarms }
            alarmsChanged = false
        }
        // Announced before the backend deletes anything (with this batch's commit).
        if let compaction { watchHub.compacting(atMain: compaction.main) }
        published.publish(store: store, appliedIndex: appliedIndex, uncommitted: reader.pending)
        let batch = BackendCommitter.Batch(
            changes: changes, meta: meta, documents: documents, leases: leaseRows, compaction: compaction, revision: store.revision)
        let answerAfterCommit = compaction != nil || membershipChanged
        if answerAfterCommit {
            committer.submit(batch)
            committer.commitNow()
            if membershipChanged { membershipApplied() }
        }
        // Watchers hear of the changes once reads can see them, before the writers hear of
        // them (a client that watches what it writes sees the event first, as with etcd).
        watchHub.notify(changes, store: store)
        for (complete, result) in completions { complete(result) }
        answerReadsUpToApplied()
        // Waking the committer's thread is not on the answers' path.
        if !answerAfterCommit {
            committer.submit(batch)
            if committer.isBacklogged { committer.commitNow() }
        }
        if appliedIndex - snapshotIndex >= configuration.snapshotCount {
            snapshot()
        }
    }

    /// Enables or cancels the downgrade job (etcd's `DowngradeInfoSetRequest`), checked again
    /// against the state every member applied: enabling twice, or cancelling none, is refused.
    func apply(_ request: Etcdserverpb_DowngradeRequest, header: Etcdserverpb_ResponseHeader) -> Result<WriteResponse, EtcdError> {
        switch request.action {
        case .enable:
            guard membership.downgradeTarget == nil else { return .failure(.downgradeInProgress) }
            membership.downgradeTarget = request.version
            logger.warning("the cluster is downgrading", metadata: ["target-cluster-version": "\(request.version)"])
        case .cancel:
            guard membership.downgradeTarget != nil else { return .failure(.noInflightDowngrade) }
            membership.downgradeTarget = nil
            logger.info("the cluster's downgrade is cancelled")
        case .validate, .UNRECOGNIZED:
            return .failure(.wrongDowngradeVersionFormat)
        }
        membershipChanged = true
        var response = Etcdserverpb_DowngradeResponse()
        response.header = header
        response.version = EtcdServer.clusterVersion
        return .success(.downgrade(response))
    }

    /// Applies an `Alarm` request (etcd's `applyAlarm`): raises or clears one member's alarm,
    /// or lists them; the response names the alarms raised, cleared or listed.
    func apply(_ request: Etcdserverpb_AlarmRequest, header: Etcdserverpb_ResponseHeader) -> Etcdserverpb_AlarmResponse {
        var response = Etcdserverpb_AlarmResponse()
        response.header = header
        switch request.action {
        case .get:
            response.alarms = alarms.members(of: request.alarm)
        case .activate, .deactivate:
            let raising = request.action == .activate
            let changed = raising
                ? alarms.activate(request.alarm, member: request.memberID)
                : alarms.deactivate(request.alarm, member: request.memberID)
            if let changed {
                response.alarms = [changed]
                alarmsChanged = true
                logger.warning(raising ? "alarm raised" : "alarm disarmed", metadata: [
                    "alarm": "\(AlarmList.name(of: request.alarm))", "from": "\(String(request.memberID, radix: 16))",
                ])
            }
        case .UNRECOGNIZED:
            break
        }
        return response
    }

    /// Carries out what an applied request did to leases, noting the rows the backend batch
    /// must write (the checkpoint's own figures, so every member stores the same).
    func apply(_ effects: [LeaseEffect], recordingIn rows: inout [Int64: SQLiteBackend.LeaseRow?]) {
        let lessor = lessor
        for effect in effects {
            switch effect {
            case .grant(let id, let ttl):
                if (try? lessor.grant(id: id, ttl: ttl, now: .now)) != nil {
                    rows[id] = SQLiteBackend.LeaseRow(id: id, ttl: ttl, remainingMilliseconds: nil)
                    operations.leaseGrantApplied()
                    configuration.metricHooks.leaseGranted?(ttl)
                }
            case .revoke(let id):
                if (try? lessor.revoke(id: id)) != nil { operations.leaseRevokeApplied() }
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

    /// On the leader, each tick: proposes what ``LeaseDuties`` says is due. Nobody waits for
    /// these entries. They are dropped, not kept for a later leader, when this member cannot
    /// propose now: what this leader decided about its leases is not the next one's to carry out.
    func tendLeases(_ now: ContinuousClock.Instant) {
        let requests = leaseDuties.due(lessor: lessor, now: now, tickInterval: configuration.heartbeatInterval)
        guard !requests.isEmpty else { return }
        let batch = requests.map { EntryEnvelope.encode(proposer: localID, requestID: proposals.nextRequestID(), origin: .member, request: $0) }
        try? node.propose(batch: batch)
    }

    // MARK: Snapshots

    /// Records a snapshot at the applied index: makes the backend durable up to it, writes the
    /// snapshot file, then its marker in the log; keeps `snapshotCatchUpEntries` behind it in memory
    /// and purges old files in the background. A crash at any point leaves a state a restart
    /// recovers from: the previous snapshot, or this one.
    func snapshot() {
        committer.commitNow()
        do {
            try DurableSnapshot.record(
                index: appliedIndex, term: appliedTerm, confState: confState, backend: backend, log: log,
                snapDirectory: snapDirectory)
            try storage.createSnapshot(at: appliedIndex, confState: confState, data: [])
            if appliedIndex > configuration.snapshotCatchUpEntries {
                try? storage.compact(through: appliedIndex - configuration.snapshotCatchUpEntries)
            }
        } catch {
            EtcdServer.fatal("failed to save a snapshot", error)
        }
        snapshotIndex = appliedIndex
        purger.purge(snapshotIndex: appliedIndex)
    }
}

extension MemberLoop {
    /// etcd's `apply request took too long` (and `etcd_server_slow_apply_total`): a request
    /// whose apply took longer than `--warning-apply-duration`, named as etcd names it, values
    /// by their size only.
    func warnOfSlowApply(_ request: WriteRequest, took: Duration) {
        operations.slowApply()
        logger.warning("apply request took too long", metadata: [
            "took": "\(GoFormat.duration(took))", "expected-duration": "\(GoFormat.duration(configuration.warningApplyDuration))",
            "prefix": "", "request": "\(request.loggable)",
        ])
    }
}

extension WriteRequest {
    /// The request for a log line: its kind and keys, values only by their size, no secrets.
    var loggable: String {
        let quoted = ProtoText.quoted
        switch self {
        case .put(let put): return "put:<key:\(quoted(put.key)) value_size:\(put.value.count) lease:\(put.lease) >"
        case .deleteRange(let delete): return "delete_range:<key:\(quoted(delete.key)) range_end:\(quoted(delete.rangeEnd)) >"
        case .txn(let txn):
            return "txn:<compare_size:\(txn.compare.count) success_size:\(txn.success.count) failure_size:\(txn.failure.count) >"
        case .compaction(let compaction): return "compaction:<revision:\(compaction.revision) physical:\(compaction.physical) >"
        case .leaseGrant(let grant): return "lease_grant:<ttl:\(grant.ttl) id:\(grant.id) >"
        case .leaseRevoke(let revoke): return "lease_revoke:<id:\(revoke.id) >"
        case .leaseCheckpoint(let checkpoint): return "lease_checkpoint:<checkpoints_size:\(checkpoint.checkpoints.count) >"
        case .auth: return "auth"
        case .alarm(let alarm): return "alarm:<action:\(alarm.action) alarm:\(alarm.alarm) >"
        case .downgrade: return "downgrade"
        }
    }
}
