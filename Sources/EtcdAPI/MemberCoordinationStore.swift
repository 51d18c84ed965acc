import Auth
import Coordination
import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import SwiftProtobuf
import MVCC
import Synchronization

/// The member itself as the store of the lock and election recipes, used as `caller`: its
/// transactions are proposals, its ranges linearizable reads, its watches watchers on the
/// member's hub. etcd's server runs the same recipes through an in-process client that
/// carries the caller's credentials; here they skip the client but keep the caller, so every
/// step meets the caller's permissions.
struct MemberCoordinationStore: CoordinationStore {
    let server: EtcdServer
    let caller: AuthIdentity?

    /// Runs a Lock or Election call's `body` with the store of `context`'s caller; a failure
    /// ends the call as etcd ends it (``GRPCStatus/init(coordinationFailure:)``).
    static func serve<Response>(
        _ server: EtcdServer, _ context: ServerContext, _ body: (MemberCoordinationStore) async throws -> Response
    ) async throws -> Response {
        do {
            return try await body(MemberCoordinationStore(server: server, caller: context.caller))
        } catch {
            throw GRPCStatus(coordinationFailure: error)
        }
    }

    func txn(_ request: Etcdserverpb_TxnRequest) async throws -> Etcdserverpb_TxnResponse {
        try server.validate(request)
        // etcd's recipes send their transactions through a client: above --max-request-bytes
        // the member refuses them, as it refuses any client's.
        if try request.serializedData().count > server.configuration.maxRequestBytes { throw EtcdError.requestTooLarge }
        let write = try await propose(.txn(request))
        guard case .txn(let response) = write else { throw GRPCStatus(.internal, "etcdserver: unexpected response kind") }
        return response
    }

    func range(_ request: Etcdserverpb_RangeRequest) async throws -> Etcdserverpb_RangeResponse {
        let server = self.server
        let _: Void = try await withCheckedThrowingContinuation { continuation in
            server.linearizableRead { continuation.resume(with: $0) }
        }
        // Served on this task's thread, never on the member's loop thread.
        return try server.range(request, by: caller)
    }

    func grantLease(ttl: Int64) async throws -> Int64 {
        let server = self.server
        let caller = self.caller
        let write = try await withCheckedThrowingContinuation { continuation in
            server.grantLease(.with { $0.ttl = ttl }, by: caller) { continuation.resume(with: $0) }
        }
        guard case .leaseGrant(let response) = write else { throw GRPCStatus(.internal, "etcdserver: unexpected response kind") }
        return response.id
    }

    func watch(key: Data, rangeEnd: Data, startRevision: Int64) -> AsyncThrowingStream<WatchedChanges, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: WatchedChanges.self)
        do throws(AuthError) {
            try server.checkRead(key: key, rangeEnd: rangeEnd, caller: caller)
        } catch {
            continuation.finish(throwing: GRPCStatus(error))
            return stream
        }
        let sink = CoordinationWatchSink()
        let server = self.server
        // The hub offers deliveries holding its lock; headers are made here, outside it.
        let relay = Task {
            do {
                for try await delivery in sink.deliveries {
                    switch delivery.kind {
                    case .events(let changes):
                        continuation.yield(WatchedChanges(header: server.header(revision: delivery.revision), events: changes.map(Mvccpb_Event.init)))
                    case .compacted:
                        throw CoordinationError.compacted
                    case .refused(let reason):
                        throw GRPCStatus(.unknown, reason)
                    case .canceled:
                        break
                    case .created, .progress:
                        continue
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in
            relay.cancel()
            server.watchHub.close(sink)
        }
        let range = KeyRange(key: key.isEmpty ? [0] : [UInt8](key), end: rangeEnd.isEmpty ? nil : [UInt8](rangeEnd))
        server.watchHub.watch(
            WatchRequest(range: range, startRevision: startRevision, watchID: 0, skipsPuts: false, skipsDeletes: false, progressNotify: false),
            on: sink)
        return stream
    }

    private func propose(_ request: WriteRequest) async throws -> WriteResponse {
        let server = self.server
        let caller = self.caller
        return try await withCheckedThrowingContinuation { continuation in
            server.propose(request, by: caller) { continuation.resume(with: $0) }
        }
    }
}

/// A watch stream of one watcher inside the member: takes every delivery at once (a recipe
/// watches one key or one election's keys, which stay small).
private final class CoordinationWatchSink: WatchSink {
    let deliveries: AsyncThrowingStream<WatchDelivery, any Error>
    private let continuation: AsyncThrowingStream<WatchDelivery, any Error>.Continuation

    init() {
        (deliveries, continuation) = AsyncThrowingStream.makeStream(of: WatchDelivery.self)
    }

    func offer(_ deliveries: [WatchDelivery]) -> Int {
        for delivery in deliveries { continuation.yield(delivery) }
        return deliveries.count
    }

    func deliveriesOffered() {}

    var hasRoom: Bool { true }
}

extension GRPCStatus {
    /// The status a Lock or Election call ends with for `error`, as etcd's services give it:
    /// UNKNOWN with etcd's message, whatever the error (etcd runs them through an in-process
    /// client whose errors lose their code on the way out; clientv3 recognises them by their
    /// message), and CANCELLED for a call the client gave up.
    init(coordinationFailure error: any Error) {
        switch error {
        case let status as GRPCStatus: self.init(.unknown, status.message)
        case let error as EtcdError: self.init(.unknown, GRPCStatus(error).message)
        case let error as CoordinationError: self.init(.unknown, error.message)
        case is CancellationError: self.init(.cancelled, "context canceled")
        default: self.init(.unknown, "\(error)")
        }
    }
}
