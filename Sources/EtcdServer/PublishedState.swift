import Auth
import Backend
import Dispatch
import EtcdProto
import Foundation
import Locking
import MVCC
import Raft
import Synchronization

extension EtcdServer {
    /// The Raft facts requests and `Status` report.
    struct RaftSummary {
        var term: UInt64 = 0
        var leader: NodeID = noNode
        var role: StateRole = .follower
        var commitIndex: UInt64 = 0
        var appliedIndex: UInt64 = 0
        var leaderChanges: UInt64 = 0
    }

    /// What requests report about the published store without reading it.
    struct StoreFacts {
        var revision: Int64
        var compactedRevision: Int64

        init(_ store: KeyValueStore) {
            revision = store.revision
            compactedRevision = store.compactedRevision
        }
    }

    struct Published {
        /// The store as of ``appliedIndex``, for reads (``PublishedState/withStore(_:)``): nil
        /// while the apply loop has it back (``PublishedState/lendStoreIfUntaken()``).
        fileprivate var store: KeyValueStore?
        /// A read took ``store`` since it was published, or waits for it.
        fileprivate var storeTaken = false
        fileprivate var readersWaiting = 0
        /// The thread the store is lent to, which must never wait for it (the apply loop's,
        /// alive until it publishes again, so no other thread has its ID meanwhile).
        fileprivate var borrower: pthread_t?
        var storeFacts: StoreFacts
        var appliedIndex: UInt64
        /// Records of `store` the backend has not committed yet, a layer per applied batch,
        /// oldest first (acknowledged writes wait for the log, not for the backend): reads
        /// find them here.
        var uncommitted: [UncommittedLayer] = []
        /// The newest revision the backend holds.
        var committedRevision: Int64 = 0
        var raft = RaftSummary()
        var voters: Int
        var membership: Membership
        /// Users, roles and grants as of ``appliedIndex``.
        var auth: AuthState
        /// The active alarms as of ``appliedIndex``.
        var alarms: AlarmList

        init(
            store: KeyValueStore, appliedIndex: UInt64, committedRevision: Int64, voters: Int, membership: Membership,
            auth: AuthState, alarms: AlarmList
        ) {
            self.store = store
            storeFacts = StoreFacts(store)
            self.appliedIndex = appliedIndex
            self.committedRevision = committedRevision
            self.voters = voters
            self.membership = membership
            self.auth = auth
            self.alarms = alarms
        }
    }
}

/// The member's latest published state behind one lock: what requests read without the loop
/// thread. A class so the peer transport can share it.
///
/// The published store shares its index's nodes with the apply loop's own: the loop copies
/// every node on the path of a key it writes after a publication (the copy-on-write that
/// keeps a read's snapshot still), about a tenth of a put's CPU under load. So when no read
/// took the last publication, a batch of plain puts takes the store back
/// (``lendStoreIfUntaken()``) and writes its nodes in place; a read arriving meanwhile waits
/// for the batch's publication (at most ``lendableBatch`` puts' apply). Once a read took a
/// publication, the next batch leaves it alone.
final class PublishedState: Sendable {
    private let state: Locked<EtcdServer.Published>
    /// Signalled once per waiting read when the store is published again.
    private let storeReturned = DispatchSemaphore(value: 0)

    /// The most entries a batch that takes the store back may hold: what bounds a read's wait.
    static let lendableBatch = 512

    init(_ initial: EtcdServer.Published) {
        state = Locked(initial)
    }

    /// Runs `body` with the published store (and the rest of the state) under the lock,
    /// waiting for the store if a batch has it back.
    func withStore<Result>(_ body: (KeyValueStore, EtcdServer.Published) -> Result) -> Result {
        while true {
            let outcome = withLock { state -> Result? in
                guard let store = state.store else {
                    precondition(state.borrower.map { pthread_equal($0, pthread_self()) == 0 } ?? true, "the apply loop waits for its own store")
                    state.readersWaiting += 1
                    return nil
                }
                state.storeTaken = true
                return body(store, state)
            }
            if let outcome { return outcome }
            storeReturned.wait()
        }
    }

    /// Takes the store back for the apply loop when no read took it since it was published:
    /// the loop's own copy is then the only one, and its writes need no copies of nodes.
    /// Whether it did; ``publish(store:appliedIndex:uncommitted:)`` returns it.
    func lendStoreIfUntaken() -> Bool {
        withLock {
            guard !$0.storeTaken, $0.store != nil else { return false }
            $0.store = nil
            $0.borrower = pthread_self()
            return true
        }
    }

    /// Sets the published store and wakes the reads that wait for it; they will take it, so
    /// the next batch leaves it alone.
    private func setStore(_ store: KeyValueStore, in state: inout EtcdServer.Published) -> Int {
        state.store = store
        state.storeFacts = EtcdServer.StoreFacts(store)
        state.borrower = nil
        state.storeTaken = state.readersWaiting > 0
        defer { state.readersWaiting = 0 }
        return state.readersWaiting
    }

    private func wake(_ readers: Int) {
        for _ in 0..<readers { storeReturned.signal() }
    }

    func withLock<Result>(_ body: (inout EtcdServer.Published) -> Result) -> Result {
        state.withLock { body(&$0) }
    }

    /// Publishes the store as applied, with the records of its batch the backend has not
    /// committed yet (``committed(layers:throughRevision:)`` says when it has).
    func publish(store: KeyValueStore, appliedIndex: UInt64, uncommitted: [Revision: KeyValue]) {
        wake(withLock {
            $0.appliedIndex = appliedIndex
            $0.uncommitted.append(UncommittedLayer(through: store.revision, records: uncommitted))
            return setStore(store, in: &$0)
        })
    }

    /// Publishes a store the backend holds entirely (a member starting, or one that installed
    /// a snapshot).
    func publish(committedStore store: KeyValueStore, appliedIndex: UInt64) {
        wake(withLock {
            $0.appliedIndex = appliedIndex
            $0.uncommitted = []
            $0.committedRevision = store.revision
            return setStore(store, in: &$0)
        })
    }

    /// The backend committed the oldest `layers` uncommitted batches, up to `revision`.
    func committed(layers: Int, throughRevision revision: Int64) {
        withLock {
            $0.uncommitted.removeFirst(layers)
            $0.committedRevision = revision
        }
    }

    /// The records applied but not yet committed to the backend, oldest batch first.
    var uncommittedLayers: [UncommittedLayer] { withLock { $0.uncommitted } }

    func publish(raft: EtcdServer.RaftSummary, voters: Int) {
        withLock {
            $0.raft = raft
            $0.voters = voters
        }
    }

    func publish(membership: Membership) {
        withLock { $0.membership = membership }
    }
}

/// The header every response carries: this member's and its cluster's IDs, the revision and
/// the Raft term.
struct ResponseHeaders: Sendable {
    let clusterID: UInt64
    let memberID: UInt64

    func header(revision: Int64, term: UInt64) -> Etcdserverpb_ResponseHeader {
        var header = Etcdserverpb_ResponseHeader()
        header.clusterID = clusterID
        header.memberID = memberID
        header.revision = revision
        header.raftTerm = term
        return header
    }
}
