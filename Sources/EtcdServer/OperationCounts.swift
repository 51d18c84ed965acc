import EtcdProto
import Synchronization

/// What this member has served and applied, counted as etcd's `etcd_mvcc_*_total` and
/// `etcd_debugging_lease_*_total` count it: relaxed atomic adds where it happens, read when
/// `/metrics` is scraped.
package final class OperationCounts: Sendable {
    /// Ranges: Range requests served here, and in applied transactions each range and each
    /// compare (etcd reads a compare's key as a range).
    private let ranges = Atomic<UInt64>(0)
    private let puts = Atomic<UInt64>(0)
    private let deletes = Atomic<UInt64>(0)
    /// Transactions that did more than one operation (etcd's rule).
    private let txns = Atomic<UInt64>(0)
    /// Bytes of the keys and values put.
    private let putBytes = Atomic<UInt64>(0)
    private let leasesGranted = Atomic<UInt64>(0)
    private let leasesRevoked = Atomic<UInt64>(0)
    /// Requests whose apply took longer than `--warning-apply-duration`.
    private let slowApplies = Atomic<UInt64>(0)

    init() {}

    /// The counts now.
    struct Totals {
        var ranges, puts, deletes, txns, putBytes, leasesGranted, leasesRevoked, slowApplies: UInt64
    }

    var totals: Totals {
        Totals(
            ranges: ranges.load(ordering: .relaxed), puts: puts.load(ordering: .relaxed), deletes: deletes.load(ordering: .relaxed),
            txns: txns.load(ordering: .relaxed), putBytes: putBytes.load(ordering: .relaxed),
            leasesGranted: leasesGranted.load(ordering: .relaxed), leasesRevoked: leasesRevoked.load(ordering: .relaxed),
            slowApplies: slowApplies.load(ordering: .relaxed))
    }

    /// A Range request was served here.
    func rangeServed() { ranges.add(1, ordering: .relaxed) }
    func leaseGrantApplied() { leasesGranted.add(1, ordering: .relaxed) }
    func leaseRevokeApplied() { leasesRevoked.add(1, ordering: .relaxed) }
    func slowApply() { slowApplies.add(1, ordering: .relaxed) }

    /// Counts what applied `request` did, given its `response`.
    func applied(_ request: WriteRequest, _ response: WriteResponse) {
        var tally = Tally()
        switch (request, response) {
        case (.put(let put), _):
            tally.puts = 1
            tally.putBytes = put.key.count + put.value.count
        case (.deleteRange, _):
            tally.deletes = 1
        case (.txn(let txn), .txn(let answer)):
            tally.count(txn, answer)
            if tally.ranges + tally.puts + tally.deletes > 1 { txns.add(1, ordering: .relaxed) }
        default:
            return
        }
        if tally.ranges > 0 { ranges.add(UInt64(tally.ranges), ordering: .relaxed) }
        if tally.puts > 0 { puts.add(UInt64(tally.puts), ordering: .relaxed) }
        if tally.deletes > 0 { deletes.add(UInt64(tally.deletes), ordering: .relaxed) }
        if tally.putBytes > 0 { putBytes.add(UInt64(tally.putBytes), ordering: .relaxed) }
    }

    /// The operations of a transaction's branch that ran, nested ones included.
    private struct Tally {
        var ranges = 0
        var puts = 0
        var deletes = 0
        var putBytes = 0

        mutating func count(_ txn: Etcdserverpb_TxnRequest, _ answer: Etcdserverpb_TxnResponse) {
            ranges += txn.compare.count
            for (operation, result) in zip(answer.succeeded ? txn.success : txn.failure, answer.responses) {
                switch (operation.request, result.response) {
                case (.requestRange?, _): ranges += 1
                case (.requestPut(let put)?, _):
                    puts += 1
                    putBytes += put.key.count + put.value.count
                case (.requestDeleteRange?, _): deletes += 1
                case (.requestTxn(let nested)?, .responseTxn(let nestedAnswer)?): count(nested, nestedAnswer)
                default: break
                }
            }
        }
    }
}
