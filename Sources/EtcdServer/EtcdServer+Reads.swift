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
import SwiftProtobuf
import WAL

/// Writes and reads of the keyspace: proposals through Raft, linearizable and serializable ranges.
extension EtcdServer {
    /// Proposes a write; `completion` runs once it is committed, applied and visible to reads
    /// here, or with etcd's error when it cannot be (no leader, timeout, stopping).
    /// `caller` is who made it (nil: no credentials); auth checks it when the write is applied.
    package func propose(
        _ request: WriteRequest, by caller: AuthIdentity?, completion: @escaping @Sendable (Result<WriteResponse, EtcdError>) -> Void
    ) {
        if isLearner { return completion(.failure(.notSupportedForLearner)) }
        if let refusal = quotaRefusal(request) { return completion(.failure(refusal)) }
        propose(request, origin: .client(caller), completion: completion)
    }

    /// etcd's space quota, checked before a write is proposed: a request that would take the
    /// backend past `--quota-backend-bytes` is refused with `database space exceeded`, and this
    /// member raises the NOSPACE alarm (once), which refuses such requests cluster-wide.
    func quotaRefusal(_ request: WriteRequest) -> EtcdError? {
        let allocated = backend.allocatedBytes + Int64(committer.pendingBytes)
        guard request.exceeds(quota: configuration.quotaBackendBytes, allocated: allocated) else { return nil }
        if !published.withLock({ $0.alarms.members(of: .nospace).contains { $0.memberID == memberID } }) {
            let alarm = Etcdserverpb_AlarmRequest.with {
                $0.action = .activate
                $0.memberID = memberID
                $0.alarm = .nospace
            }
            propose(.alarm(alarm), origin: .member) { _ in }
        }
        return .noSpace
    }

    /// Proposes `request` from `origin` (a client's, or this member's own).
    func propose(
        _ request: WriteRequest, origin: EntryEnvelope.Origin, completion: @escaping @Sendable (Result<WriteResponse, EtcdError>) -> Void
    ) {
        let counts = proposalCounts
        counts.pending.add(1, ordering: .relaxed)
        let counted: @Sendable (Result<WriteResponse, EtcdError>) -> Void = { result in
            counts.pending.subtract(1, ordering: .relaxed)
            if case .failure(let error) = result, error.isConsensusFailure { counts.failed.add(1, ordering: .relaxed) }
            completion(result)
        }
        let proposal = Proposal(request: request, origin: origin, completion: counted, deadline: .now + configuration.requestTimeout)
        if !inbox.submit({ $0.proposals.append(proposal) }) { counted(.failure(.stopped)) }
    }

    /// Calls `completion` once a linearizable read may be served from the published store: the
    /// leader confirmed its leadership after the call and this member applied everything
    /// committed before it (Raft's ReadIndex). Concurrent reads share one confirmation.
    /// `timeout` bounds the wait (default: the request timeout).
    package func linearizableRead(timeout: Duration? = nil, completion: @escaping @Sendable (Result<Void, EtcdError>) -> Void) {
        // A member that leads a cluster of one voter is the only one that can commit, and it
        // answers writes only once applied: its published store already holds every write
        // acknowledged before this read began.
        let (alone, learner) = published.withLock { ($0.raft.role == .leader && $0.voters == 1, $0.membership[memberID]?.isLearner ?? false) }
        if alone { return completion(.success(())) }
        // A learner's applied state may lag without bound; etcd refuses it linearizable reads too.
        if learner { return completion(.failure(.notSupportedForLearner)) }
        let read = ReadWaiter(completion: completion, deadline: .now + (timeout ?? configuration.requestTimeout))
        if !inbox.submit({ $0.reads.append(read) }) { completion(.failure(.stopped)) }
    }

    /// Answers a range from the latest published snapshot, on the caller's thread, if `caller`
    /// may read it.
    package func range(_ request: Etcdserverpb_RangeRequest, by caller: AuthIdentity?) throws(EtcdError) -> Etcdserverpb_RangeResponse {
        if published.withLock({ $0.alarms.contains(.corrupt) }) { throw .corrupt }
        try TxnRules.validate(request)
        do throws(AuthError) {
            try checkRead(key: request.key, rangeEnd: request.rangeEnd, caller: caller)
        } catch {
            throw .auth(error)
        }
        operations.rangeServed()
        do throws(EtcdError) {
            return try range(request, in: readableStore())
        } catch .compacted where request.revision <= 0 {
            // A compaction committed after the snapshot was taken removed a record it names;
            // a newer snapshot has the record that replaced it.
            return try range(request, in: readableStore())
        }
    }

    func range(
        _ request: Etcdserverpb_RangeRequest, in state: (store: KeyValueStore, reader: any RevisionReader, term: UInt64)
    ) throws(EtcdError) -> Etcdserverpb_RangeResponse {
        var response = try RangeRules.answer(request) { key, end, options in
            try state.store.range(key, end: end, options: options, reader: state.reader)
        }
        response.header = header(revision: state.store.revision, term: state.term)
        return response
    }

    /// The read health checks make (etcd's: one key, keys only, as root): `completion` gets
    /// nil when it was served, else why not. A linearizable one gives up after an election
    /// timeout (etcd waits its 7 s request timeout): a member cut off from its quorum reports
    /// so within the time the cluster takes to notice.
    package func probeRead(serializable: Bool, completion: @escaping @Sendable (EtcdError?) -> Void) {
        let read: @Sendable () -> EtcdError? = { [self] in
            do throws(EtcdError) {
                _ = try range(.with { $0.key = Data([0]); $0.keysOnly = true; $0.limit = 1 }, in: readableStore())
                return nil
            } catch {
                return error
            }
        }
        guard !serializable else { return completion(read()) }
        linearizableRead(timeout: configuration.electionTimeout) { result in
            switch result {
            case .success: completion(read())
            case .failure(let error): completion(error)
            }
        }
    }

    /// Rejects a put etcd would reject before proposing it.
    package func validate(_ request: Etcdserverpb_PutRequest) throws(EtcdError) {
        try TxnRules.validate(request)
    }

    /// Rejects a transaction etcd would reject before proposing it.
    package func validate(_ request: Etcdserverpb_TxnRequest) throws(EtcdError) {
        try TxnRules.validate(request, maxOperations: configuration.maxTxnOperations)
    }

    /// A response header for this member at `revision`, with the current Raft term.
    package func header(revision: Int64) -> Etcdserverpb_ResponseHeader {
        header(revision: revision, term: published.withLock { $0.raft.term })
    }

    func header(revision: Int64, term: UInt64) -> Etcdserverpb_ResponseHeader {
        headers.header(revision: revision, term: term)
    }

    package var currentRevision: Int64 { published.withLock { $0.storeFacts.revision } }

    /// The record `key` had at main revision `revision`, if it existed then and is still kept
    /// (what a watch event's `prev_kv` reports).
    package func keyValue(_ key: [UInt8], atRevision revision: Int64) -> KeyValue? {
        let (store, reader, _) = readableStore()
        let options = KeyValueStore.RangeOptions(limit: 1, revision: revision)
        return (try? store.range(key, end: nil, options: options, reader: reader))?.kvs.first
    }

    /// The latest published store and how to read its records.
    func readableStore() -> (store: KeyValueStore, reader: any RevisionReader, term: UInt64) {
        published.withStore { store, state in
            let reader: any RevisionReader = state.uncommitted.isEmpty ? backend : OverlayReader(layers: state.uncommitted, base: backend)
            return (store, reader, state.raft.term)
        }
    }
}
