import EtcdProto
import Foundation
import SwiftProtobuf

/// How much a software transaction (``EtcdClient/stm(isolation:_:)``) is protected from
/// writes by others, as clientv3's `concurrency` STM defines its levels.
public enum EtcdIsolation: Sendable {
    /// Every read sees one snapshot (the revision of the first read), and the commit fails if
    /// any key read or written changed since: serializable, and no write skew. The default.
    case serializableSnapshot
    /// Reads after the first see the first read's revision; the commit fails if a key read
    /// changed since it was read.
    case serializable
    /// Each key is read once (from the member's local state) and the commit fails if a key
    /// read changed since.
    case repeatableReads
    /// Reads from the member's local state; the commit never fails. Invariants across keys
    /// are not kept.
    case readCommitted
}

/// The keys a software transaction reads and writes. Reads come from etcd (once per key) or
/// from the transaction's own writes; writes are buffered and made at once by the commit.
public final class EtcdSTM {
    let client: EtcdClient
    let isolation: EtcdIsolation
    /// Each key read: its range response (no key-value when absent).
    private(set) var reads: [Data: Etcdserverpb_RangeResponse] = [:]
    /// Reads fetched by the last failed commit, taken before asking etcd again.
    private var prefetched: [Data: Etcdserverpb_RangeResponse] = [:]
    /// The buffered writes, by key: a put (with its lease) or a delete (nil).
    private(set) var writes: [Data: (value: Data, lease: Int64)?] = [:]
    /// The revision later reads are pinned to (serializable levels), once the first read ran.
    private var snapshotRevision: Int64?

    init(client: EtcdClient, isolation: EtcdIsolation) {
        self.client = client
        self.isolation = isolation
    }

    /// The value of `key` (empty when absent), as this transaction sees it.
    public func get(_ key: Data) async throws(EtcdClientError) -> Data {
        if let write = writes[key] { return write?.value ?? Data() }
        return try await read(key).kvs.first?.value ?? Data()
    }

    public func get(_ key: String) async throws(EtcdClientError) -> String {
        String(decoding: try await get(Data(key.utf8)), as: UTF8.self)
    }

    /// The modification revision of `key` when read (0 when absent).
    public func revision(of key: Data) async throws(EtcdClientError) -> Int64 {
        try await read(key).kvs.first?.modRevision ?? 0
    }

    /// Buffers a put of `value` under `key` (with `lease`, 0 for none).
    public func put(_ key: Data, _ value: Data, lease: Int64 = 0) {
        writes[key] = (value, lease)
    }

    public func put(_ key: String, _ value: String, lease: Int64 = 0) {
        put(Data(key.utf8), Data(value.utf8), lease: lease)
    }

    /// Buffers a delete of `key`.
    public func delete(_ key: Data) {
        writes[key] = .some(nil)
    }

    public func delete(_ key: String) {
        delete(Data(key.utf8))
    }

    private func read(_ key: Data) async throws(EtcdClientError) -> Etcdserverpb_RangeResponse {
        if let known = reads[key] { return known }
        if let known = prefetched.removeValue(forKey: key) {
            if snapshotRevision == nil { snapshotRevision = known.header.revision }
            reads[key] = known
            return known
        }
        var request = Etcdserverpb_RangeRequest()
        request.key = key
        switch isolation {
        case .serializableSnapshot, .serializable:
            if let snapshotRevision {
                request.revision = snapshotRevision
                request.serializable = true
            }
        case .repeatableReads, .readCommitted:
            request.serializable = true
        }
        let response = try await client.range(request)
        if snapshotRevision == nil, isolation == .serializableSnapshot || isolation == .serializable {
            snapshotRevision = response.header.revision
        }
        reads[key] = response
        return response
    }

    /// The commit's guards: what the isolation level needs unchanged since it was read.
    func conflicts() -> [Etcdserverpb_Compare] {
        func modified(_ key: Data, _ result: Etcdserverpb_Compare.CompareResult, _ revision: Int64) -> Etcdserverpb_Compare {
            var compare = Etcdserverpb_Compare()
            compare.key = key
            compare.target = .mod
            compare.result = result
            compare.modRevision = revision
            return compare
        }
        // A key read is unchanged: the same modification revision (0: still absent).
        let readGuards = reads.keys.sorted { $0.lexicographicallyPrecedes($1) }.map {
            modified($0, .equal, reads[$0]!.kvs.first?.modRevision ?? 0)
        }
        switch isolation {
        case .serializableSnapshot:
            // A key written has not changed since the first read either (no write skew).
            let first = reads.values.map(\.header.revision).min() ?? Int64.max - 1
            return readGuards + writes.keys.sorted { $0.lexicographicallyPrecedes($1) }.map { modified($0, .less, first + 1) }
        case .serializable, .repeatableReads:
            return readGuards
        case .readCommitted:
            return []
        }
    }

    /// The buffered writes as transaction operations.
    func writeOperations() -> [Etcdserverpb_RequestOp] {
        writes.keys.sorted { $0.lexicographicallyPrecedes($1) }.map { key in
            var operation = Etcdserverpb_RequestOp()
            if let write = writes[key] ?? nil {
                operation.requestPut.key = key
                operation.requestPut.value = write.value
                operation.requestPut.lease = write.lease
            } else {
                operation.requestDeleteRange.key = key
            }
            return operation
        }
    }

    /// Commits: the writes if the guards hold, otherwise (serializable levels) reads again
    /// every key read, for the next attempt. Returns the response when committed.
    func commit() async throws(EtcdClientError) -> Etcdserverpb_TxnResponse? {
        let keys = reads.keys.sorted { $0.lexicographicallyPrecedes($1) }
        var txn = Etcdserverpb_TxnRequest()
        txn.compare = conflicts()
        txn.success = writeOperations()
        let prefetches = isolation == .serializableSnapshot || isolation == .serializable
        if prefetches {
            // A failed commit brings back what the retry will read first, saving round trips.
            txn.failure = keys.map { key in .with { $0.requestRange.key = key } }
        }
        let response = try await client.txn(txn)
        if response.succeeded { return response }
        prefetched = [:]
        if prefetches {
            for (key, result) in zip(keys, response.responses) {
                var read = result.responseRange
                read.header = response.header
                prefetched[key] = read
            }
        }
        reads = [:]
        writes = [:]
        snapshotRevision = nil
        return nil
    }
}

extension EtcdClient {
    /// Runs `apply` as a software transaction (clientv3's `concurrency.NewSTM`): its reads
    /// and writes are committed in one etcd transaction if no conflicting write came in
    /// between (as `isolation` defines conflicts); otherwise `apply` runs again on fresh
    /// reads, until it commits. An error thrown by `apply` aborts without writing.
    @discardableResult
    public func stm(
        isolation: EtcdIsolation = .serializableSnapshot, _ apply: (EtcdSTM) async throws -> Void
    ) async throws -> Etcdserverpb_TxnResponse {
        let transaction = EtcdSTM(client: self, isolation: isolation)
        while true {
            try await apply(transaction)
            if let response = try await transaction.commit() { return response }
        }
    }
}
