import Auth
import Backend
import EtcdProto
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

    struct Published {
        var store: KeyValueStore
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
    }
}

/// The member's latest published state behind one lock: what requests read without the loop
/// thread. A class so the peer transport can share it.
final class PublishedState: Sendable {
    private let state: Locked<EtcdServer.Published>

    init(_ initial: EtcdServer.Published) {
        state = Locked(initial)
    }

    func withLock<Result>(_ body: (inout EtcdServer.Published) -> Result) -> Result {
        state.withLock { body(&$0) }
    }

    /// Publishes the store as applied, with the records of its batch the backend has not
    /// committed yet (``committed(layers:throughRevision:)`` says when it has).
    func publish(store: KeyValueStore, appliedIndex: UInt64, uncommitted: [Revision: KeyValue]) {
        withLock {
            $0.store = store
            $0.appliedIndex = appliedIndex
            $0.uncommitted.append(UncommittedLayer(through: store.revision, records: uncommitted))
        }
    }

    /// Publishes a store the backend holds entirely (a member starting, or one that installed
    /// a snapshot).
    func publish(committedStore store: KeyValueStore, appliedIndex: UInt64) {
        withLock {
            $0.store = store
            $0.appliedIndex = appliedIndex
            $0.uncommitted = []
            $0.committedRevision = store.revision
        }
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
