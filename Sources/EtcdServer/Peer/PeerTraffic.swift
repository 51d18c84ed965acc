import Locking
import Raft
import Synchronization

/// What went to and came from one peer, for etcd's `etcd_network_peer_*_total` metrics:
/// counted with relaxed atomic adds by the sender and the receivers, read when scraped.
package final class PeerTraffic: Sendable {
    let sentBytes = Atomic<UInt64>(0)
    let receivedBytes = Atomic<UInt64>(0)
    /// Messages that could not be sent (dropped while the peer was unreachable or too slow).
    let sentFailures = Atomic<UInt64>(0)
    /// Connections from the peer closed over data that did not decode.
    let receivedFailures = Atomic<UInt64>(0)

    /// The counts now, in the order of the properties.
    package var totals: (sentBytes: UInt64, receivedBytes: UInt64, sentFailures: UInt64, receivedFailures: UInt64) {
        (sentBytes.load(ordering: .relaxed), receivedBytes.load(ordering: .relaxed),
         sentFailures.load(ordering: .relaxed), receivedFailures.load(ordering: .relaxed))
    }
}

/// Every peer's ``PeerTraffic``, made on first use and kept while the member runs (a peer's
/// counts survive its connections and URL changes).
final class PeerTrafficTable: Sendable {
    private let table = Locked<[NodeID: PeerTraffic]>([:])

    func traffic(of peer: NodeID) -> PeerTraffic {
        table.withLock { table in
            if let traffic = table[peer] { return traffic }
            let traffic = PeerTraffic()
            table[peer] = traffic
            return traffic
        }
    }

    var all: [NodeID: PeerTraffic] { table.withLock { $0 } }
}
