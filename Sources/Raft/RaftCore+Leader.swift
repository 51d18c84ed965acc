extension RaftCore {
    // MARK: - Proposals

    /// Appends entries at the end of the leader's log in its term; false when the uncommitted-size limit refuses them.
    mutating func appendEntries(_ entries: [Entry]) -> Bool {
        var entries = entries
        let last = log.lastIndex
        var size: UInt64 = 0
        for i in entries.indices {
            entries[i].term = term
            entries[i].index = last + 1 + UInt64(i)
            size += entries[i].payloadSize
        }
        // One proposal may always go through when nothing is pending, however large.
        if uncommittedSize > 0 && size > 0 && uncommittedSize + size > maxUncommittedSize {
            return false
        }
        uncommittedSize += size
        log.append(entries)
        return true
    }

    /// Committed entries were handed to the application: they no longer count as uncommitted.
    mutating func reduceUncommittedSize(_ entries: [Entry]) {
        guard role == .leader, uncommittedSize > 0 else { return }
        var size: UInt64 = 0
        for entry in entries { size += entry.payloadSize }
        uncommittedSize = size > uncommittedSize ? 0 : uncommittedSize - size
    }

    /// This node's entries through `index` (of `term`) are durable: count them as its own acknowledgement.
    mutating func persisted(through index: UInt64, term entryTerm: UInt64) {
        guard role == .leader, log.matchTerm(index: index, term: entryTerm) else { return }
        guard tracker.progress[id]?.maybeUpdate(index) == true else { return }
        if maybeCommit() {
            releasePendingReadIndexMessages()
            broadcastAppend()
        }
    }

    /// The application applied entries through `index`; a leader then leaves a joint configuration
    /// that asked to be left automatically.
    mutating func applied(through index: UInt64) {
        log.applied(to: index)
        guard role == .leader, tracker.config.autoLeave, index >= pendingConfIndex else { return }
        let leave = Message(
            type: .propose,
            from: id,
            entries: [Entry(term: 0, index: 0, kind: .confChange, data: ConfChange.leaveJoint.encoded())]
        )
        // If it is dropped (for example while a transfer runs), the next applied batch tries again.
        try? step(leave)
    }

    // MARK: - Leader step

    mutating func stepLeader(_ m: Message) throws(RaftError) {
        switch m.type {
        case .beat:
            broadcastHeartbeat()
            return
        case .checkQuorum:
            if !tracker.quorumActive() {
                becomeFollower(term: term, leader: noNode)
            }
            for nodeID in tracker.progress.keys where nodeID != id {
                tracker.progress[nodeID]!.recentActive = false
            }
            return
        case .propose:
            try propose(m)
            return
        case .readIndex:
            // Without an entry of its own term committed, the leader does not know the latest commit index.
            guard committedEntryInCurrentTerm else {
                pendingReadIndexMessages.append(m)
                return
            }
            answerReadIndex(m)
            return
        default:
            break
        }

        guard var pr = tracker.progress[m.from] else { return }
        switch m.type {
        case .appendResponse:
            pr.recentActive = true
            if m.reject {
                var probeAt = m.rejectHint
                if m.logTerm > 0 {
                    // Skip every entry of ours whose term is newer than the follower's at the hint.
                    probeAt = log.findConflictByTerm(index: m.rejectHint, term: m.logTerm).index
                }
                if pr.maybeDecrease(rejected: m.index, matchHint: probeAt) {
                    if pr.state == .replicate { pr.becomeProbe() }
                    tracker.progress[m.from] = pr
                    sendAppend(to: m.from)
                } else {
                    tracker.progress[m.from] = pr
                }
                return
            }
            let wasPaused = pr.isPaused
            guard pr.maybeUpdate(m.index) || (pr.match == m.index && pr.state == .probe) else {
                tracker.progress[m.from] = pr
                return
            }
            switch pr.state {
            case .probe:
                pr.becomeReplicate()
            case .snapshot where pr.match + 1 >= log.firstIndex:
                // The snapshot (or the entries after it) arrived and the log can feed the follower again.
                pr.becomeProbe()
                pr.becomeReplicate()
            case .replicate:
                pr.inflights.free(through: m.index)
            case .snapshot:
                break
            }
            tracker.progress[m.from] = pr
            if maybeCommit() {
                releasePendingReadIndexMessages()
                broadcastAppend()
            } else if wasPaused {
                sendAppend(to: m.from)
            }
            // Keep the pipeline full while entries remain and the window allows.
            while maybeSendAppend(to: m.from, sendIfEmpty: false) {}
            if m.from == leadTransferee && tracker.progress[m.from]?.match == log.lastIndex {
                send(Message(type: .timeoutNow, to: m.from))
            }
        case .heartbeatResponse:
            pr.recentActive = true
            pr.probeSent = false
            if pr.state == .replicate && pr.inflights.isFull {
                // The follower is alive: let one more append through so a lost message does not stall it.
                pr.inflights.free(through: pr.inflights.indexes.first ?? 0)
            }
            tracker.progress[m.from] = pr
            if pr.match < log.lastIndex || pr.state == .probe {
                sendAppend(to: m.from)
            }
            guard readOnly.option == .safe, !m.context.isEmpty,
                let acks = readOnly.acknowledge(from: m.from, context: m.context),
                tracker.config.voters.voteResult(acks) == .won
            else { return }
            for confirmed in readOnly.confirm(through: m.context) {
                respondToReadIndex(confirmed.request, index: confirmed.index)
            }
        case .snapshotStatus:
            guard pr.state == .snapshot else { return }
            if m.reject {
                pr.pendingSnapshot = 0
            }
            // Either way, wait for the follower's next answer (or a heartbeat) before probing again.
            pr.becomeProbe()
            pr.probeSent = true
            tracker.progress[m.from] = pr
        case .unreachable:
            if pr.state == .replicate { pr.becomeProbe() }
            tracker.progress[m.from] = pr
        case .transferLeader:
            guard !pr.isLearner else { return }
            let transferee = m.from
            if leadTransferee != noNode {
                if leadTransferee == transferee { return }
                leadTransferee = noNode
            }
            guard transferee != id else { return }
            // The transfer must finish within an election timeout.
            electionElapsed = 0
            leadTransferee = transferee
            if pr.match == log.lastIndex {
                send(Message(type: .timeoutNow, to: transferee))
            } else {
                sendAppend(to: transferee)
            }
        default:
            break
        }
    }

    private mutating func propose(_ m: Message) throws(RaftError) {
        // A forwarded proposal with nothing in it has nothing to append.
        guard !m.entries.isEmpty else { return }
        guard isVoter else { throw .proposalDropped(.notMember) }
        guard leadTransferee == noNode else { throw .proposalDropped(.leadershipTransferInProgress) }
        var entries = m.entries
        for i in entries.indices where entries[i].kind == .confChange {
            guard let change = ConfChange(encoded: entries[i].data) else {
                entries[i] = Entry(term: 0, index: 0)
                continue
            }
            let alreadyPending = pendingConfIndex > log.applied
            let alreadyJoint = tracker.config.voters.isJoint
            let wantsLeave = change.leavesJoint
            if alreadyPending || alreadyJoint != wantsLeave {
                // Refused changes become no-ops so the proposal's other entries keep their places.
                entries[i] = Entry(term: 0, index: 0)
            } else {
                pendingConfIndex = log.lastIndex + UInt64(i) + 1
            }
        }
        guard appendEntries(entries) else { throw .proposalDropped(.uncommittedSizeLimit) }
        broadcastAppend()
    }

    var committedEntryInCurrentTerm: Bool {
        log.zeroTermOnError(log.committed) == term
    }

    private mutating func releasePendingReadIndexMessages() {
        guard !pendingReadIndexMessages.isEmpty, committedEntryInCurrentTerm else { return }
        let pending = pendingReadIndexMessages
        pendingReadIndexMessages.removeAll()
        for m in pending { answerReadIndex(m) }
    }

    private mutating func answerReadIndex(_ m: Message) {
        if tracker.isSingleton {
            respondToReadIndex(m, index: log.committed)
            return
        }
        switch readOnly.option {
        case .safe:
            readOnly.add(index: log.committed, request: m)
            _ = readOnly.acknowledge(from: id, context: m.context)
            broadcastHeartbeat(context: m.context)
        case .leaseBased:
            respondToReadIndex(m, index: log.committed)
        }
    }

    private mutating func respondToReadIndex(_ request: Message, index: UInt64) {
        if request.from == noNode || request.from == id {
            readStates.append(ReadState(index: index, context: request.context))
        } else {
            send(Message(type: .readIndexResponse, to: request.from, index: index, context: request.context))
        }
    }

    mutating func maybeCommit() -> Bool {
        log.maybeCommit(index: tracker.committed(), term: term)
    }

    // MARK: - Sending to followers

    mutating func broadcastAppend() {
        for nodeID in tracker.sortedIDs where nodeID != id {
            sendAppend(to: nodeID)
        }
    }

    mutating func broadcastHeartbeat(context: [UInt8]? = nil) {
        let context = context ?? readOnly.lastPendingContext ?? []
        for nodeID in tracker.sortedIDs where nodeID != id {
            guard let pr = tracker.progress[nodeID] else { continue }
            // Never tell a follower to commit past what it is known to hold.
            let commit = min(pr.match, log.committed)
            send(Message(type: .heartbeat, to: nodeID, commit: commit, context: context))
        }
    }

    mutating func sendAppend(to nodeID: NodeID) {
        maybeSendAppend(to: nodeID, sendIfEmpty: true)
    }

    /// Sends the follower its next entries (or a snapshot when they are compacted away); false when nothing was sent.
    @discardableResult
    mutating func maybeSendAppend(to nodeID: NodeID, sendIfEmpty: Bool) -> Bool {
        guard var pr = tracker.progress[nodeID], !pr.isPaused else { return false }
        let previous = pr.next - 1
        let previousTerm: UInt64
        let entries: [Entry]
        do {
            previousTerm = try log.term(at: previous)
            entries = try log.entries(from: pr.next, maxSize: maxMessageSize)
        } catch {
            return maybeSendSnapshot(to: nodeID)
        }
        if entries.isEmpty && !sendIfEmpty { return false }
        var bytes: UInt64 = 0
        for entry in entries { bytes += entry.payloadSize }
        send(
            Message(
                type: .append,
                to: nodeID,
                logTerm: previousTerm,
                index: previous,
                entries: entries,
                commit: log.committed
            )
        )
        pr.sentEntries(count: entries.count, last: previous + UInt64(entries.count), bytes: bytes)
        tracker.progress[nodeID] = pr
        return true
    }

    private mutating func maybeSendSnapshot(to nodeID: NodeID) -> Bool {
        guard var pr = tracker.progress[nodeID], pr.recentActive else { return false }
        let snapshot: Snapshot
        do {
            snapshot = try log.storage.snapshot()
        } catch .snapshotTemporarilyUnavailable {
            return false
        } catch {
            preconditionFailure("snapshot unavailable: \(error)")
        }
        precondition(!snapshot.isEmpty, "need a non-empty snapshot to catch up node \(nodeID)")
        pr.becomeSnapshot(snapshot.metadata.index)
        tracker.progress[nodeID] = pr
        send(Message(type: .snapshot, to: nodeID, snapshot: snapshot))
        return true
    }
}
