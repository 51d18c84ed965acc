import Backend
import EtcdProto
import Foundation
import MVCC

/// etcd's rules for answering a `RangeRequest` from the store: range end conventions, limit
/// and `more`, revision filters, sorting, keys-only and count-only. Used by reads and by the
/// range operations inside transactions.
enum RangeRules {
    /// A range over some view of the store (a published snapshot, or a write in progress).
    typealias Read = (_ key: [UInt8], _ end: [UInt8]?, _ options: KeyValueStore.RangeOptions) throws -> KeyValueStore.RangeResult

    static func answer(_ request: Etcdserverpb_RangeRequest, read: Read) throws(EtcdError) -> Etcdserverpb_RangeResponse {
        let filtered = request.minModRevision != 0 || request.maxModRevision != 0
            || request.minCreateRevision != 0 || request.maxCreateRevision != 0
        var sortOrder = request.sortOrder
        if request.sortTarget != .key, sortOrder == .none { sortOrder = .ascend }
        if request.sortTarget == .key, sortOrder == .ascend { sortOrder = .none }  // already in key order
        // Fetch one more than the limit to learn whether there is more; everything when the
        // result is filtered or sorted before the limit applies. As in etcd, the request's own
        // sort order decides: a non-key target with order NONE sorts only the fetched keys.
        let fetchEverything = request.sortOrder != .none || filtered || request.limit <= 0 || request.limit >= Int64(Int.max - 1)
        let fetchLimit = fetchEverything ? 0 : Int(request.limit) + 1
        let result: KeyValueStore.RangeResult
        do {
            result = try read(
                Array(request.key), request.rangeEnd.isEmpty ? nil : Array(request.rangeEnd),
                .init(limit: fetchLimit, revision: request.revision, countOnly: request.countOnly))
        } catch let error as MVCCError {
            throw EtcdError(error)
        } catch is SQLiteBackend.CorruptRecord {
            // Reported by the backend's observer (the member's CORRUPT alarm); never served.
            throw .corrupt
        } catch {
            // The backend cannot be read (an I/O error, a damaged page): as etcd, the member
            // stops rather than answer from what it can read; with a log line, not a trap.
            EtcdServer.fatal("failed to read the backend", error)
        }
        var kvs = result.kvs
        if filtered {
            kvs.removeAll { kv in
                (request.maxModRevision != 0 && kv.modRevision > request.maxModRevision)
                    || (request.minModRevision != 0 && kv.modRevision < request.minModRevision)
                    || (request.maxCreateRevision != 0 && kv.createRevision > request.maxCreateRevision)
                    || (request.minCreateRevision != 0 && kv.createRevision < request.minCreateRevision)
            }
        }
        if sortOrder != .none {
            let ascending = sortOrder == .ascend
            kvs.sort { a, b in
                let order = compare(a, b, by: request.sortTarget)
                if order != 0 { return ascending ? order < 0 : order > 0 }
                // Ties keep key order in both directions, as etcd's results do.
                return a.key.lexicographicallyPrecedes(b.key)
            }
        }
        var response = Etcdserverpb_RangeResponse()
        if request.limit > 0, kvs.count > Int(request.limit) {
            kvs.removeLast(kvs.count - Int(request.limit))
            response.more = true
        }
        response.count = Int64(result.count)
        response.kvs = kvs.map { kv in
            var out = Mvccpb_KeyValue(kv)
            if request.keysOnly { out.value = Data() }
            return out
        }
        response.header.revision = result.revision
        return response
    }

    /// Orders two records by a sort target: negative, zero or positive.
    private static func compare(_ a: KeyValue, _ b: KeyValue, by target: Etcdserverpb_RangeRequest.SortTarget) -> Int {
        func order<T: Comparable>(_ x: T, _ y: T) -> Int { x == y ? 0 : (x < y ? -1 : 1) }
        func order(_ x: [UInt8], _ y: [UInt8]) -> Int { x == y ? 0 : (x.lexicographicallyPrecedes(y) ? -1 : 1) }
        return switch target {
        case .key, .UNRECOGNIZED: order(a.key, b.key)
        case .version: order(a.version, b.version)
        case .create: order(a.createRevision, b.createRevision)
        case .mod: order(a.modRevision, b.modRevision)
        case .value: order(a.value, b.value)
        }
    }
}

extension Mvccpb_KeyValue {
    /// The wire form of a stored record.
    package init(_ kv: KeyValue) {
        self.init()
        key = Data(kv.key)
        value = Data(kv.value)
        createRevision = kv.createRevision
        modRevision = kv.modRevision
        version = kv.version
        lease = kv.lease
    }
}
