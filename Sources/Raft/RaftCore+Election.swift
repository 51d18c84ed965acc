/// Elections: campaigns (pre-vote and vote), counting votes, answering vote requests.
extension RaftCore {
    enum CampaignKind {
        case preElection, election, transfer
    }

    mutating func hup(_ kind: CampaignKind) {
        guard role != .leader, isPromotable else { return }
        // A membership change committed but not applied could change who may vote: wait for it.
        if hasUnappliedConfChanges { return }
        campaign(kind)
    }

    private var hasUnappliedConfChanges: Bool {
        guard log.committed > log.applied else { return false }
        var index = log.applied + 1
        while index <= log.committed {
            guard let batch = try? log.slice(index, log.committed + 1, maxSize: log.maxApplyingSize), !batch.isEmpty
            else { return false }
            if batch.contains(where: { $0.kind == .confChange }) { return true }
            index = batch[batch.count - 1].index + 1
        }
        return false
    }

    mutating func campaign(_ kind: CampaignKind) {
        let voteType: MessageType
        let voteTerm: UInt64
        if kind == .preElection {
            becomePreCandidate()
            voteType = .preVote
            // A pre-vote asks about the term this node would campaign in, without moving to it.
            voteTerm = term + 1
        } else {
            becomeCandidate()
            voteType = .vote
            voteTerm = term
        }
        let context = kind == .transfer ? campaignTransferContext : []
        for voter in tracker.config.voters.allVoters.sorted() {
            if voter == id {
                // Our own vote counts only once it is durable.
                send(Message(type: voteType.responseType, to: id, term: voteTerm))
                continue
            }
            send(
                Message(
                    type: voteType,
                    to: voter,
                    term: voteTerm,
                    logTerm: log.lastTerm,
                    index: log.lastIndex,
                    context: context
                )
            )
        }
    }

    mutating func poll(_ from: NodeID, granted: Bool) -> VoteResult {
        tracker.recordVote(from, granted: granted)
        return tracker.tallyVotes().result
    }

    mutating func handleVoteRequest(_ m: Message) {
        // We may vote again for the same candidate (a repeated request), vote for anyone when we
        // have neither voted nor know a leader in this term, and pre-vote for any future term.
        let canVote = vote == m.from || (vote == noNode && lead == noNode) || (m.type == .preVote && m.term > term)
        if canVote && log.isUpToDate(index: m.index, term: m.logTerm) {
            send(Message(type: m.type.responseType, to: m.from, term: m.term))
            if m.type == .vote {
                electionElapsed = 0
                vote = m.from
            }
        } else {
            send(Message(type: m.type.responseType, to: m.from, term: term, reject: true))
        }
    }

    mutating func stepCandidate(_ m: Message) throws(RaftError) {
        let ownResponseType: MessageType = role == .preCandidate ? .preVoteResponse : .voteResponse
        switch m.type {
        case .propose:
            throw .proposalDropped(.noLeader)
        case .append:
            becomeFollower(term: m.term, leader: m.from)
            handleAppend(m)
        case .heartbeat:
            becomeFollower(term: m.term, leader: m.from)
            handleHeartbeat(m)
        case .snapshot:
            becomeFollower(term: m.term, leader: m.from)
            handleSnapshot(m)
        case ownResponseType:
            switch poll(m.from, granted: !m.reject) {
            case .won:
                if role == .preCandidate {
                    campaign(.election)
                } else {
                    becomeLeader()
                    broadcastAppend()
                }
            case .lost:
                // A pre-vote response may carry a newer term; take it up with no leader.
                becomeFollower(term: term, leader: noNode)
            case .pending:
                break
            }
        case .readIndex:
            throw .proposalDropped(.noLeader)
        default:
            break
        }
    }
}
