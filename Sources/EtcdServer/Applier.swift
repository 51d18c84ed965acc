import Auth
import Backend
import EtcdProto
import Foundation
import Lease
import MVCC
import SwiftProtobuf

/// A write request as the apply loop receives it.
package enum WriteRequest: Sendable {
    case put(Etcdserverpb_PutRequest)
    case deleteRange(Etcdserverpb_DeleteRangeRequest)
    case txn(Etcdserverpb_TxnRequest)
    case compaction(Etcdserverpb_CompactionRequest)
    case leaseGrant(Etcdserverpb_LeaseGrantRequest)
    case leaseRevoke(Etcdserverpb_LeaseRevokeRequest)
    /// What the leader's leases had left when it took the checkpoint. In our log,
    /// `remaining_TTL` holds milliseconds (etcd's holds seconds): followers count down from it.
    case leaseCheckpoint(Etcdserverpb_LeaseCheckpointRequest)
    case auth(AuthRequest)
    /// Raises, clears or lists alarms (every member applies it; the loop, not the store).
    case alarm(Etcdserverpb_AlarmRequest)
    /// Enables or cancels a downgrade job (etcd's `DowngradeInfoSetRequest`).
    case downgrade(Etcdserverpb_DowngradeRequest)
}

extension WriteRequest {
    /// What the request may add to the backend, in etcd's quota cost model (a put: 256 bytes
    /// of overhead plus key and value; a transaction: its costlier branch's puts; a lease
    /// grant: 64 bytes); 0 for requests that cannot grow it.
    package var cost: Int {
        func put(_ request: Etcdserverpb_PutRequest) -> Int { 256 + request.key.count + request.value.count }
        func branch(_ operations: [Etcdserverpb_RequestOp]) -> Int {
            operations.reduce(0) { total, operation in
                switch operation.request {
                case .requestPut(let request)?: total + put(request)
                case .requestTxn(let nested)?: total + WriteRequest.txn(nested).cost
                default: total
                }
            }
        }
        switch self {
        case .put(let request): return put(request)
        case .txn(let request): return max(branch(request.success), branch(request.failure))
        case .leaseGrant: return 64
        default: return 0
        }
    }

    /// Whether the request would take a backend of `allocated` bytes to `quota` or past it
    /// (`quota` 0 or less: no quota).
    func exceeds(quota: Int64, allocated: Int64) -> Bool {
        quota > 0 && cost > 0 && allocated + Int64(cost) >= quota
    }

    /// Whether the request is refused while a NOSPACE alarm is raised (etcd's capped applier).
    var needsSpace: Bool { cost > 0 }

    /// Whether the request is refused while a CORRUPT alarm is raised (etcd's corrupt applier):
    /// everything that reads or changes the keyspace or leases.
    var refusedWhenCorrupt: Bool {
        switch self {
        case .put, .deleteRange, .txn, .compaction, .leaseGrant, .leaseRevoke: true
        case .leaseCheckpoint, .auth, .alarm, .downgrade: false
        }
    }

    /// The byte that starts a put's log data.
    static let putKind: UInt8 = 1

    /// The request as a write-ahead log entry: a kind byte, then the protobuf message.
    var logData: [UInt8] {
        if case .auth(let request) = self { return [8] + request.logData }
        let (kind, message): (UInt8, any SwiftProtobuf.Message) =
            switch self {
            case .put(let request): (Self.putKind, request)
            case .deleteRange(let request): (2, request)
            case .txn(let request): (3, request)
            case .compaction(let request): (4, request)
            case .leaseGrant(let request): (5, request)
            case .leaseRevoke(let request): (6, request)
            case .leaseCheckpoint(let request): (7, request)
            case .alarm(let request): (9, request)
            case .downgrade(let request): (10, request)
            case .auth: preconditionFailure("handled above")
            }
        // Encoding a message built from a decoded one cannot fail.
        return [kind] + (try! message.serializedBytes() as [UInt8])
    }

    init(logData: [UInt8]) throws {
        let message = logData.dropFirst()
        switch logData.first {
        case Self.putKind: self = .put(try .init(serializedBytes: Array(message)))
        case 2: self = .deleteRange(try .init(serializedBytes: Array(message)))
        case 3: self = .txn(try .init(serializedBytes: Array(message)))
        case 4: self = .compaction(try .init(serializedBytes: Array(message)))
        case 5: self = .leaseGrant(try .init(serializedBytes: Array(message)))
        case 6: self = .leaseRevoke(try .init(serializedBytes: Array(message)))
        case 7: self = .leaseCheckpoint(try .init(serializedBytes: Array(message)))
        case 8: self = .auth(try AuthRequest(logData: message))
        case 9: self = .alarm(try .init(serializedBytes: Array(message)))
        case 10: self = .downgrade(try .init(serializedBytes: Array(message)))
        default: throw ConfigurationError("wal: unknown entry kind \(logData.first.map(String.init) ?? "none")")
        }
    }
}

/// The response to a ``WriteRequest``; its header's revision is filled in, the rest by the caller.
package enum WriteResponse: Sendable {
    case put(Etcdserverpb_PutResponse)
    case deleteRange(Etcdserverpb_DeleteRangeResponse)
    case txn(Etcdserverpb_TxnResponse)
    case compaction(Etcdserverpb_CompactionResponse)
    case leaseGrant(Etcdserverpb_LeaseGrantResponse)
    case leaseRevoke(Etcdserverpb_LeaseRevokeResponse)
    case leaseCheckpoint(Etcdserverpb_LeaseCheckpointResponse)
    /// The response to an ``AuthRequest``, header included.
    case auth(any SwiftProtobuf.Message)
    case alarm(Etcdserverpb_AlarmResponse)
    case downgrade(Etcdserverpb_DowngradeResponse)
}

/// What applying a request did to leases, for the loop to carry out on the lessor once the
/// request succeeded (a failed txn changes nothing).
enum LeaseEffect {
    case grant(id: Int64, ttl: Int64)
    case revoke(id: Int64)
    case attach(key: [UInt8], lease: Int64)
    case detach(key: [UInt8], lease: Int64)
    case checkpoint([(id: Int64, milliseconds: Int64)])
}

/// Applies write requests to the store with etcd's semantics (etcd's `apply.go`).
enum Applier {
    /// What applying one request changed, for the backend batch.
    struct Outcome {
        var response: Result<WriteResponse, EtcdError>
        var changes: [Change] = []
        var compaction: (main: Int64, kept: Set<Revision>)?
        var leaseEffects: [LeaseEffect] = []
    }

    /// Applies one request; responses carry `header` with the resulting revision. `lessor` is
    /// only read (which leases exist); the effects on it come back in the outcome.
    static func apply(
        _ request: WriteRequest, to store: inout KeyValueStore, reader: some RevisionReader, header: Etcdserverpb_ResponseHeader,
        lessor: Lessor
    ) -> Outcome {
        var header = header
        switch request {
        case .leaseGrant(let grant):
            guard !lessor.contains(grant.id) else { return Outcome(response: .failure(.leaseExists)) }
            var response = Etcdserverpb_LeaseGrantResponse()
            header.revision = store.revision
            response.header = header
            response.id = grant.id
            response.ttl = max(grant.ttl, lessor.minTTL)
            return Outcome(response: .success(.leaseGrant(response)), leaseEffects: [.grant(id: grant.id, ttl: response.ttl)])
        case .leaseCheckpoint(let checkpoint):
            var response = Etcdserverpb_LeaseCheckpointResponse()
            header.revision = store.revision
            response.header = header
            let remaining = checkpoint.checkpoints.map { (id: $0.id, milliseconds: $0.remainingTtl) }
            return Outcome(response: .success(.leaseCheckpoint(response)), leaseEffects: [.checkpoint(remaining)])
        default:
            break
        }
        if case .compaction(let compaction) = request {
            do {
                let kept = try store.compact(atMain: compaction.revision)
                var response = Etcdserverpb_CompactionResponse()
                header.revision = store.revision
                response.header = header
                return Outcome(response: .success(.compaction(response)), compaction: (compaction.revision, kept))
            } catch let error as MVCCError {
                return Outcome(response: .failure(EtcdError(error)))
            } catch {
                preconditionFailure("compaction failed: \(error)")
            }
        }
        do {
            // A failed request changes nothing: `write` undoes what it did to the store.
            var leases = LeaseContext(lessor: lessor)
            let (response, changes) = try store.write(reader: reader) { writer -> WriteResponse in
                switch request {
                case .put(let put): .put(try applyPut(put, &writer, &leases))
                case .deleteRange(let delete): .deleteRange(try applyDelete(delete, &writer, &leases))
                case .txn(let txn): .txn(try applyTxn(txn, path: try branches(of: txn, writer), &writer, &leases))
                case .leaseRevoke(let revoke): .leaseRevoke(try applyRevoke(revoke, &writer, &leases))
                case .compaction, .leaseGrant, .leaseCheckpoint, .auth, .alarm, .downgrade: preconditionFailure("handled above")
                }
            }
            header.revision = store.revision
            return Outcome(response: .success(response.withHeader(header)), changes: changes, leaseEffects: leases.effects)
        } catch let error as EtcdError {
            return Outcome(response: .failure(error))
        } catch let error as MVCCError {
            return Outcome(response: .failure(EtcdError(error)))
        } catch {
            // The member cannot apply what its peers apply (a corrupt record, say): it stops.
            EtcdServer.fatal("backend read failed while applying", error)
        }
    }

    /// The leases a request may use, and what it does to them.
    struct LeaseContext {
        let lessor: Lessor
        var effects: [LeaseEffect] = []
        /// Leases revoked earlier in this request (a txn cannot revoke, but keep it exact).
        var revoked: Set<Int64> = []

        func exists(_ id: Int64) -> Bool { lessor.contains(id) && !revoked.contains(id) }

        /// Leases of keys written earlier in this request (0: none), which the lessor does
        /// not know yet.
        private var written: [[UInt8]: Int64]

        init(lessor: Lessor) {
            self.lessor = lessor
            self.written = [:]
        }

        /// The lease `key`'s current record carries, 0 for none (or no record).
        func lease(of key: [UInt8]) -> Int64 { written[key] ?? lessor.lease(attachedTo: key) }

        /// `key` now has record `lease` (0: none) where it had `previous`.
        mutating func keyWritten(_ key: [UInt8], lease: Int64, previous: Int64) {
            guard lease != previous else { return }
            written[key] = lease
            if previous != 0 { effects.append(.detach(key: key, lease: previous)) }
            if lease != 0 { effects.append(.attach(key: key, lease: lease)) }
        }
    }

    private static func applyPut(
        _ request: Etcdserverpb_PutRequest, _ writer: inout KeyValueStore.Writer, _ leases: inout LeaseContext
    ) throws -> Etcdserverpb_PutResponse {
        var response = Etcdserverpb_PutResponse()
        let key = Array(request.key)
        // A plain put reads nothing: the previous record is fetched only when asked for.
        let previous = request.prevKv || request.ignoreValue || request.ignoreLease ? try writer.current(key) : nil
        var value = Array(request.value)
        var lease = request.lease
        if request.ignoreValue || request.ignoreLease {
            guard let previous else { throw EtcdError.keyNotFound }
            if request.ignoreValue { value = previous.value }
            if request.ignoreLease { lease = previous.lease }
        }
        if lease != 0, !leases.exists(lease) { throw EtcdError.leaseNotFound }
        if request.prevKv, let previous { response.prevKv = Mvccpb_KeyValue(previous) }
        let previousLease = leases.lease(of: key)
        writer.put(key, value: value, lease: lease)
        leases.keyWritten(key, lease: lease, previous: previousLease)
        return response
    }

    private static func applyDelete(
        _ request: Etcdserverpb_DeleteRangeRequest, _ writer: inout KeyValueStore.Writer, _ leases: inout LeaseContext
    ) throws -> Etcdserverpb_DeleteRangeResponse {
        var response = Etcdserverpb_DeleteRangeResponse()
        let deleted = try writer.delete(Array(request.key), end: request.rangeEnd.isEmpty ? nil : Array(request.rangeEnd))
        for record in deleted { leases.keyWritten(record.key, lease: 0, previous: record.lease) }
        response.deleted = Int64(deleted.count)
        if request.prevKv { response.prevKvs = deleted.map(Mvccpb_KeyValue.init) }
        return response
    }

    /// Revokes a lease: its keys are deleted in this one revision (none when it had none).
    private static func applyRevoke(
        _ request: Etcdserverpb_LeaseRevokeRequest, _ writer: inout KeyValueStore.Writer, _ leases: inout LeaseContext
    ) throws -> Etcdserverpb_LeaseRevokeResponse {
        guard leases.exists(request.id) else { throw EtcdError.leaseNotFound }
        for key in leases.lessor.keys(of: request.id) { _ = try writer.delete(key, end: nil) }
        leases.revoked.insert(request.id)
        leases.effects.append(.revoke(id: request.id))
        return Etcdserverpb_LeaseRevokeResponse()
    }

    /// The branch a txn takes, and those its nested txns in that branch take, in order.
    struct BranchPath {
        var succeeded: Bool
        var nested: [BranchPath]
    }

    /// Decides every branch, nested ones included, from the state before any operation of the
    /// txn runs, as etcd does: a nested compare does not see its parent's writes.
    static func branches(of request: Etcdserverpb_TxnRequest, _ writer: KeyValueStore.Writer) throws -> BranchPath {
        let succeeded = try request.compare.allSatisfy { compare in
            let end = compare.rangeEnd.isEmpty ? nil : Array(compare.rangeEnd)
            return TxnRules.holds(compare, records: try writer.range(Array(compare.key), end: end).kvs)
        }
        let nested = try (succeeded ? request.success : request.failure).compactMap { operation -> BranchPath? in
            guard case .requestTxn(let txn) = operation.request else { return nil }
            return try branches(of: txn, writer)
        }
        return BranchPath(succeeded: succeeded, nested: nested)
    }

    private static func applyTxn(
        _ request: Etcdserverpb_TxnRequest, path: BranchPath, _ writer: inout KeyValueStore.Writer, _ leases: inout LeaseContext
    ) throws -> Etcdserverpb_TxnResponse {
        var response = Etcdserverpb_TxnResponse()
        response.succeeded = path.succeeded
        var nestedPaths = path.nested.makeIterator()
        for operation in path.succeeded ? request.success : request.failure {
            var result = Etcdserverpb_ResponseOp()
            switch operation.request {
            case .requestRange(let range):
                let view = writer
                result.responseRange = try RangeRules.answer(range) { key, end, options in try view.range(key, end: end, options: options) }
                result.responseRange.header.revision = currentRevision(writer)
            case .requestPut(let put):
                result.responsePut = try applyPut(put, &writer, &leases)
                result.responsePut.header.revision = currentRevision(writer)
            case .requestDeleteRange(let delete):
                result.responseDeleteRange = try applyDelete(delete, &writer, &leases)
                result.responseDeleteRange.header.revision = currentRevision(writer)
            case .requestTxn(let nested):
                result.responseTxn = try applyTxn(nested, path: nestedPaths.next()!, &writer, &leases)
                result.responseTxn.header.revision = currentRevision(writer)
            case nil:
                break
            }
            response.responses.append(result)
        }
        return response
    }

    /// The revision a txn's reads see so far: the next one once it has written anything.
    private static func currentRevision(_ writer: KeyValueStore.Writer) -> Int64 {
        writer.main - (writer.changes.isEmpty ? 1 : 0)
    }
}

extension WriteResponse {
    fileprivate func withHeader(_ header: Etcdserverpb_ResponseHeader) -> WriteResponse {
        switch self {
        case .put(var response):
            response.header = header
            return .put(response)
        case .deleteRange(var response):
            response.header = header
            return .deleteRange(response)
        case .txn(var response):
            response.header = header
            return .txn(response)
        case .compaction(var response):
            response.header = header
            return .compaction(response)
        case .leaseGrant(var response):
            response.header = header
            return .leaseGrant(response)
        case .leaseRevoke(var response):
            response.header = header
            return .leaseRevoke(response)
        case .leaseCheckpoint(var response):
            response.header = header
            return .leaseCheckpoint(response)
        case .alarm(var response):
            response.header = header
            return .alarm(response)
        case .downgrade(var response):
            response.header = header
            return .downgrade(response)
        case .auth:
            return self
        }
    }
}
