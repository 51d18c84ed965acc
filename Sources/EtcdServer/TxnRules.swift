import Backend
import EtcdProto
import Foundation
import MVCC

/// etcd's checks on write requests before they are proposed, and its compare semantics.
enum TxnRules {
    /// Rejects what etcd rejects before proposing: empty keys, invalid sort options, more
    /// operations than `maxOperations` at any level, and a key written twice in one branch.
    static func validate(_ request: Etcdserverpb_TxnRequest, maxOperations: Int) throws(EtcdError) {
        try validateShape(request, maxOperations: maxOperations)
        _ = try writes(of: request.success)
        _ = try writes(of: request.failure)
    }

    static func validate(_ request: Etcdserverpb_RangeRequest) throws(EtcdError) {
        guard !request.key.isEmpty else { throw .emptyKey }
        if case .UNRECOGNIZED = request.sortOrder { throw .invalidSortOption }
        if case .UNRECOGNIZED = request.sortTarget { throw .invalidSortOption }
    }

    /// etcd's checks on a put, at the top level or inside a txn.
    static func validate(_ request: Etcdserverpb_PutRequest) throws(EtcdError) {
        if request.key.isEmpty { throw .emptyKey }
        if request.ignoreValue, !request.value.isEmpty { throw .valueProvided }
        if request.ignoreLease, request.lease != 0 { throw .leaseProvided }
    }

    private static func validateShape(_ request: Etcdserverpb_TxnRequest, maxOperations: Int) throws(EtcdError) {
        guard request.compare.count <= maxOperations, request.success.count <= maxOperations,
            request.failure.count <= maxOperations
        else { throw .tooManyOperations }
        for compare in request.compare where compare.key.isEmpty { throw .emptyKey }
        for operation in request.success + request.failure {
            switch operation.request {
            case .requestRange(let range): try validate(range)
            case .requestPut(let put): try validate(put)
            case .requestDeleteRange(let delete): if delete.key.isEmpty { throw .emptyKey }
            case .requestTxn(let txn): try validateShape(txn, maxOperations: maxOperations)
            case nil: break
            }
        }
    }

    /// What one branch writes: the keys it puts and the ranges it deletes, nested branches
    /// included. A key may be put once per branch and never inside a range the branch deletes;
    /// the success and failure branches of a nested txn are exclusive, so they may share keys.
    private static func writes(of operations: [Etcdserverpb_RequestOp]) throws(EtcdError) -> (puts: Set<Data>, deletes: [DeletedRange]) {
        var deletes: [DeletedRange] = operations.compactMap {
            guard case .requestDeleteRange(let delete) = $0.request else { return nil }
            return DeletedRange(delete.key, delete.rangeEnd)
        }
        var puts = Set<Data>()
        func add(_ key: Data) throws(EtcdError) {
            guard !puts.contains(key), !deletes.contains(where: { $0.contains(key) }) else { throw .duplicateKey }
            puts.insert(key)
        }
        for operation in operations {
            guard case .requestTxn(let nested) = operation.request else { continue }
            let success = try writes(of: nested.success)
            let failure = try writes(of: nested.failure)
            for key in success.puts { try add(key) }
            for key in failure.puts where !success.puts.contains(key) { try add(key) }
            deletes += success.deletes + failure.deletes
        }
        for operation in operations {
            if case .requestPut(let put) = operation.request { try add(put.key) }
        }
        return (puts, deletes)
    }

    /// A deleted key or range, with etcd's range-end conventions.
    private struct DeletedRange {
        let start: Data
        let end: Data

        init(_ start: Data, _ end: Data) {
            self.start = start
            self.end = end
        }

        func contains(_ key: Data) -> Bool {
            if end.isEmpty { return key == start }
            guard !key.lexicographicallyPrecedes(start) else { return false }
            return end == Data([0]) || key.lexicographicallyPrecedes(end)
        }
    }

    /// Whether every key the compare selects satisfies it. A compare on the value of a key that
    /// does not exist fails; other targets compare against zero (etcd's rule).
    static func holds(_ compare: Etcdserverpb_Compare, records: [KeyValue]) -> Bool {
        guard !records.isEmpty else {
            if compare.target == .value { return false }
            return holds(compare, record: KeyValue(key: [], value: [], createRevision: 0, modRevision: 0, version: 0, lease: 0))
        }
        return records.allSatisfy { holds(compare, record: $0) }
    }

    private static func holds(_ compare: Etcdserverpb_Compare, record: KeyValue) -> Bool {
        // The target's own union field; when it is missing (or of another kind) the record is
        // compared with zero or the empty value, as etcd's getters return those.
        let union = compare.targetUnion
        let order: Int
        switch compare.target {
        case .value:
            let expected: [UInt8] = if case .value(let value)? = union { [UInt8](value) } else { [] }
            order = record.value == expected ? 0 : (record.value.lexicographicallyPrecedes(expected) ? -1 : 1)
        case .version: order = three(record.version, { if case .version(let v)? = union { v } else { 0 } }())
        case .create: order = three(record.createRevision, { if case .createRevision(let v)? = union { v } else { 0 } }())
        case .mod: order = three(record.modRevision, { if case .modRevision(let v)? = union { v } else { 0 } }())
        case .lease: order = three(record.lease, { if case .lease(let v)? = union { v } else { 0 } }())
        case .UNRECOGNIZED: order = 0
        }
        switch compare.result {
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .greater: return order > 0
        case .less: return order < 0
        case .UNRECOGNIZED: return false
        }
    }

    private static func three(_ a: Int64, _ b: Int64) -> Int { a == b ? 0 : (a < b ? -1 : 1) }
}
