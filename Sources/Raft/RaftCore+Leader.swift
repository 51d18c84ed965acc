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
        maybeLeaveJointConfiguration()
    }

    /// A leader proposes leaving a joint configuration that asked to be left automatically, once
    /// the change that entered it is applied. Tried after every applied batch and every election
    /// timeout, so a proposal dropped (say, during a transfer) is retried even when the group is idle.
    mutating func maybeLeaveJointConfiguration() {
        guard role == .leader, tracker.config.autoLeave, log.applied >= pendingConfIndex else { return }
        let leave = Message(
            type: .propose,
            from: id,
            entries: [Entry(term: 0, index: 0, kind: .confChange, data: ConfChange.leaveJoint.encoded())]
        )
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

        // Progress is updated in place (`tracker.progress[id]!`): a copy would share, and then
        // duplicate, the inflight window on every acknowledgement.
        guard tracker.progress[m.from] != nil else { return }
        switch m.type {
        case .appendResponse:
            tracker.progress[m.from]!.recentActive = true
            if m.reject {
                var probeAt = m.rejectHint
                if m.logTerm > 0 {
                    // Skip every entry of ours whose term is newer than the follower's at the hint.
                    probeAt = log.findConflictByTerm(index: m.rejectHint, term: m.logTerm).index
                }
                if tracker.progress[m.from]!.maybeDecrease(rejected: m.index, matchHint: probeAt) {
                    if tracker.progress[m.from]!.state == .replicate { tracker.progress[m.from]!.becomeProbe() }
                    sendAppend(to: m.from)
                }
                return
            }
            let wasPaused = tracker.progress[m.from]!.isPaused
            let updated = tracker.progress[m.from]!.maybeUpdate(m.index)
            guard updated || tracker.progress[m.from]!.isProbeMatching(m.index) else { return }
            tracker.progress[m.from]!.acknowledged(through: m.index, logFirstIndex: log.firstIndex)
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
            tracker.progress[m.from]!.heardFromOnHeartbeat()
            let (match, state) = (tracker.progress[m.from]!.match, tracker.progress[m.from]!.state)
            if match < log.lastIndex || state == .probe {
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
            var pr = tracker.progress[m.from]!
            guard pr.state == .snapshot else { return }
            if m.reject {
                pr.pendingSnapshot = 0
            }
            // Either way, wait for the follower's next answer (or a heartbeat) before probing again.
            pr.becomeProbe()
            pr.probeSent = true
            tracker.progress[m.from] = pr
        case .unreachable:
            var pr = tracker.progress[m.from]!
            if pr.state == .replicate { pr.becomeProbe() }
            tracker.progress[m.from] = pr
        case .transferLeader:
            let pr = tracker.progress[m.from]!
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
        if tracker.isSingleton(id) {
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
        guard let paused = tracker.progress[nodeID]?.isPaused, !paused else { return false }
        let next = tracker.progress[nodeID]!.next
        let previous = next - 1
        let previousTerm: UInt64
        let entries: [Entry]
        do {
            previousTerm = try log.term(at: previous)
            entries = try log.entries(from: next, maxSize: maxMessageSize)
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
        tracker.progress[nodeID]!.sentEntries(count: entries.count, last: previous + UInt64(entries.count), bytes: bytes)
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
