import Backend
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
    }

    struct Published {
        var store: KeyValueStore
        var appliedIndex: UInt64
        /// Records of `store` the backend has not committed yet, a layer per applied batch,
        /// oldest first (acknowledged writes wait for the log, not for the backend): reads
        /// find them here.
        var uncommitted: [[Revision: KeyValue]] = []
        /// The newest revision the backend holds.
        var committedRevision: Int64 = 0
        var raft = RaftSummary()
        var voters: Int
        var membership: Membership
    }
}

/// The member's latest published state behind one lock: what requests read without the loop
/// thread. A class so the peer transport can share it.
final class PublishedState: Sendable {
    private let state: Mutex<EtcdServer.Published>

    init(_ initial: EtcdServer.Published) {
        state = Mutex(initial)
    }

    func withLock<Result>(_ body: (inout EtcdServer.Published) -> Result) -> Result {
        state.withLock { body(&$0) }
    }
}
