/// The follower side of log replication: appends, heartbeats and snapshots from the leader.
extension RaftCore {
    mutating func handleAppend(_ m: Message) {
        if m.index < log.committed {
            send(Message(type: .appendResponse, to: m.from, index: log.committed))
            return
        }
        if let lastNew = log.maybeAppend(index: m.index, logTerm: m.logTerm, committed: m.commit, entries: m.entries) {
            send(Message(type: .appendResponse, to: m.from, index: lastNew))
            return
        }
        // Rejected: suggest where the leader should probe next, skipping a whole conflicting term at once.
        let hint = log.findConflictByTerm(index: min(m.index, log.lastIndex), term: m.logTerm)
        send(
            Message(
                type: .appendResponse,
                to: m.from,
                logTerm: hint.term,
                index: m.index,
                reject: true,
                rejectHint: hint.index
            )
        )
    }

    mutating func handleHeartbeat(_ m: Message) {
        // The leader sends min(our match, its commit), which our durable log holds. A commit past
        // our log means storage lost acknowledged entries: never commit whatever stands there instead.
        if m.commit <= log.lastIndex {
            log.commit(to: m.commit)
        }
        send(Message(type: .heartbeatResponse, to: m.from, context: m.context))
    }

    mutating func handleSnapshot(_ m: Message) {
        guard let snapshot = m.snapshot else { return }
        if restore(snapshot) {
            send(Message(type: .appendResponse, to: m.from, index: log.lastIndex))
        } else {
            send(Message(type: .appendResponse, to: m.from, index: log.committed))
        }
    }

    /// Replaces the log with `snapshot` when it is newer than what we have; false when it is ignored.
    mutating func restore(_ snapshot: Snapshot) -> Bool {
        let meta = snapshot.metadata
        guard meta.index > log.committed else { return false }
        if role != .follower {
            // Only a leader of a newer term sends snapshots, and stepping made us its follower.
            becomeFollower(term: term + 1, leader: noNode)
            return false
        }
        let cs = meta.confState
        let isMember = cs.voters.contains(id) || cs.learners.contains(id) || cs.votersOutgoing.contains(id)
        guard isMember else { return false }
        if log.matchTerm(index: meta.index, term: meta.term) {
            // We already have the entries: just learn that they are committed.
            log.commit(to: meta.index)
            return false
        }
        log.restore(snapshot)
        let fresh = ProgressTracker(maxInflight: tracker.maxInflight, maxInflightBytes: tracker.maxInflightBytes)
        do {
            let changer = try ConfChanger.restore(cs, tracker: fresh, lastIndex: log.lastIndex)
            tracker = fresh
            switchToConfig(changer.config, changer.progress)
        } catch {
            preconditionFailure("unable to restore config \(cs): \(error)")
        }
        return true
    }
}
