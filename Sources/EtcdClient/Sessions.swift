import Coordination
import EtcdProto
import Foundation
import GRPCWire
import Locking
import SwiftProtobuf
import Synchronization

/// The client as the store of the lock and election recipes: short calls with the client's
/// deadline, linearizable reads, and watches that resume on another endpoint when theirs
/// fails (``EtcdClient/resumingWatch(_:rangeEnd:startRevision:prevKV:)``).
struct ClientCoordinationStore: CoordinationStore {
    let client: EtcdClient

    func txn(_ request: Etcdserverpb_TxnRequest) async throws -> Etcdserverpb_TxnResponse {
        try await client.txn(request)
    }

    func range(_ request: Etcdserverpb_RangeRequest) async throws -> Etcdserverpb_RangeResponse {
        try await client.range(request)
    }

    func grantLease(ttl: Int64) async throws -> Int64 {
        try await client.grantLease(ttl: ttl).id
    }

    func watch(key: Data, rangeEnd: Data, startRevision: Int64) -> AsyncThrowingStream<WatchedChanges, any Error> {
        let responses = client.resumingWatch(key, rangeEnd: rangeEnd, startRevision: startRevision)
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: WatchedChanges.self)
        let relay = Task {
            do {
                for try await response in responses where !response.events.isEmpty {
                    continuation.yield(WatchedChanges(header: response.header, events: response.events))
                }
                continuation.finish()
            } catch let failure as EtcdClientError where failure.code == .outOfRange {
                continuation.finish(throwing: CoordinationError.compacted)
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in relay.cancel() }
        return stream
    }
}

/// A lease kept alive in the background for as long as the session is open (and held): the
/// life of the locks and campaigns made with it (clientv3's `concurrency.Session`). When the lease is lost
/// (it expired while no member could be reached, or was revoked), the session ends and says
/// so: every lock and leadership made with it is gone too.
public final class EtcdSession: Sendable {
    /// How a session ended.
    public enum End: Sendable, Equatable {
        /// ``close()`` or ``orphan()`` ended it.
        case closed
        /// The lease is gone: the server refused to renew it, with this error.
        case lost(EtcdClientError)
    }

    public let client: EtcdClient
    /// The session's lease: attach it to keys that must go when the session does.
    public let lease: Int64
    private let keeper: Task<End, Never>

    /// Opens a session on a new lease of `ttl` seconds (clientv3's default is 60).
    public static func open(_ client: EtcdClient, ttl: Int64 = 60) async throws(EtcdClientError) -> EtcdSession {
        EtcdSession(client, lease: try await client.grantLease(ttl: ttl).id)
    }

    /// A session that keeps an existing lease alive.
    public init(_ client: EtcdClient, lease: Int64) {
        self.client = client
        self.lease = lease
        keeper = Task {
            do {
                for try await _ in client.keepingAlive(lease: lease) {}
                return .closed
            } catch {
                return Task.isCancelled ? .closed : .lost(EtcdClientError(error))
            }
        }
    }

    /// Waits until the session ends and says how.
    public func ended() async -> End {
        await keeper.value
    }

    /// Stops renewing the lease and revokes it: every key made with it goes, so every lock
    /// held and campaign made with it ends.
    public func close() async throws(EtcdClientError) {
        keeper.cancel()
        _ = await keeper.value
        do {
            try await client.revokeLease(lease)
        } catch where error.code == .notFound {
            // Already gone.
        }
    }

    /// Stops renewing the lease and leaves it to expire on its own.
    public func orphan() {
        keeper.cancel()
    }

    /// A session nobody holds any more stops renewing its lease, which then expires.
    deinit {
        keeper.cancel()
    }

    var store: ClientCoordinationStore { ClientCoordinationStore(client: client) }
}

/// A lock held through etcd: its key, and the key's create revision, which is the lock's
/// fencing token.
public struct EtcdLock: Sendable, Equatable {
    /// `<name>/<lease in hex>`.
    public var key: Data
    /// The key's create revision. It only grows from one holder to the next: give it to what
    /// the lock protects, or guard writes with ``fence``.
    public var revision: Int64
    /// The header of the answer that gave the lock.
    public var header: Etcdserverpb_ResponseHeader

    /// A compare that holds only while this lock is held: put it in the `compare` of a
    /// transaction, and the transaction's writes happen only if the lock has not passed on
    /// (its lease expired while the holder was paused, for instance).
    public var fence: Etcdserverpb_Compare {
        CoordinationKeys.created(key, at: revision)
    }

    init(_ lock: HeldLock) {
        key = lock.key
        revision = lock.revision
        header = lock.header
    }
}

/// A distributed mutex (clientv3's `concurrency.Mutex`): the lock `name` taken with a
/// session's lease. Holders take turns in the order they asked; a holder whose session ends
/// loses the lock. Locking again while holding it is a no-op.
///
/// No lease-based lock can promise that a holder paused past its lease's TTL knows it lost
/// the lock; guard what it protects with ``EtcdLock/fence``.
public final class EtcdMutex: Sendable {
    public let session: EtcdSession
    public let name: Data
    private let held = Locked<EtcdLock?>(nil)

    public init(session: EtcdSession, name: String) {
        self.session = session
        self.name = Data(name.utf8)
    }

    /// The lock while this mutex holds it.
    public var lock: EtcdLock? { held.withLock { $0 } }

    /// Waits until the lock is held. Cancelling the task stops the wait and removes this
    /// session's place in the queue.
    @discardableResult
    public func lock() async throws(EtcdClientError) -> EtcdLock {
        try await hold { try await LockRecipe.lock($0, lease: $1, on: $2) }
    }

    /// Takes the lock if nobody holds it; otherwise fails at once with `mutex: Locked by
    /// another session`, leaving no key behind.
    @discardableResult
    public func tryLock() async throws(EtcdClientError) -> EtcdLock {
        try await hold { try await LockRecipe.tryLock($0, lease: $1, on: $2) }
    }

    /// Remembers the lock `take` gets.
    private func hold(
        _ take: (Data, Int64, ClientCoordinationStore) async throws -> HeldLock
    ) async throws(EtcdClientError) -> EtcdLock {
        do {
            let lock = EtcdLock(try await take(name, session.lease, session.store))
            held.withLock { $0 = lock }
            return lock
        } catch {
            throw EtcdClientError(error)
        }
    }

    /// Releases the lock (deleting this session's key).
    public func unlock() async throws(EtcdClientError) {
        let key = held.withLock { $0?.key } ?? CoordinationKeys.key(under: name + Data("/".utf8), lease: session.lease)
        do {
            _ = try await LockRecipe.unlock(key, on: session.store)
        } catch {
            throw EtcdClientError(error)
        }
        held.withLock { $0 = nil }
    }
}

/// A leader election (clientv3's `concurrency.Election`): campaigners with a session each;
/// the oldest campaign leads, until it resigns or its session ends. Observers see every leader.
public final class EtcdElection: Sendable {
    public let session: EtcdSession
    public let name: Data
    private let leadership = Locked<V3electionpb_LeaderKey?>(nil)

    public init(session: EtcdSession, name: String) {
        self.session = session
        self.name = Data(name.utf8)
    }

    /// The leader key of this campaign while it leads.
    public var leaderKey: V3electionpb_LeaderKey? { leadership.withLock { $0 } }

    /// Campaigns with `value` and waits until this campaign leads. Cancelling the task stops
    /// the wait and withdraws the campaign.
    public func campaign(_ value: Data) async throws(EtcdClientError) {
        do {
            let (leader, _) = try await ElectionRecipe.campaign(name, lease: session.lease, value: value, on: session.store)
            leadership.withLock { $0 = leader }
        } catch {
            throw EtcdClientError(error)
        }
    }

    /// Sets the leader's value; fails with `election: not leader` unless this campaign leads.
    public func proclaim(_ value: Data) async throws(EtcdClientError) {
        guard let leader = leaderKey else { throw EtcdClientError(CoordinationError.notLeader) }
        do {
            _ = try await ElectionRecipe.proclaim(value, as: leader, on: session.store)
        } catch {
            throw EtcdClientError(error)
        }
    }

    /// Gives up leadership; nothing happens unless this campaign leads.
    public func resign() async throws(EtcdClientError) {
        guard let leader = leaderKey else { return }
        do {
            _ = try await ElectionRecipe.resign(leader, on: session.store)
        } catch {
            throw EtcdClientError(error)
        }
        leadership.withLock { $0 = nil }
    }

    /// The current leader's key-value (its value is what it proclaimed); fails with
    /// `election: no leader` when nobody leads.
    public func leader() async throws(EtcdClientError) -> Mvccpb_KeyValue {
        do {
            return try await ElectionRecipe.leader(name, on: session.store).kv
        } catch {
            throw EtcdClientError(error)
        }
    }

    /// Every leader from now on, in order: the current one, then each new leader or new value.
    /// Every observer sees the same sequence, with none skipped.
    public func observe() -> AsyncThrowingStream<Mvccpb_KeyValue, any Error> {
        let leaders = ElectionRecipe.observe(name, on: session.store)
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: Mvccpb_KeyValue.self)
        let relay = Task {
            do {
                for try await leader in leaders { continuation.yield(leader.kv) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: EtcdClientError(error))
            }
        }
        continuation.onTermination = { _ in relay.cancel() }
        return stream
    }
}

extension EtcdClient {
    // MARK: - Lock and Election services

    /// `Lock`: the server takes lock `name` for `lease` (0: a new 60-second lease nobody
    /// renews) and answers once it is held. Waits without a deadline; cancelling the task
    /// cancels the call, and the server removes the key.
    public func lock(_ name: Data, lease: Int64) async throws(EtcdClientError) -> V3lockpb_LockResponse {
        try await waitingCall(V3lockpb_LockRPCs.lock, .with { $0.name = name; $0.lease = lease })
    }

    /// `Unlock`: deletes the lock's key.
    @discardableResult
    public func unlock(key: Data) async throws(EtcdClientError) -> V3lockpb_UnlockResponse {
        try await call(V3lockpb_LockRPCs.unlock, .with { $0.key = key })
    }

    /// `Campaign`: answers once the campaign leads, with its leader key. Waits without a
    /// deadline; cancelling the task cancels the call, and the server withdraws the campaign.
    public func campaign(_ name: Data, lease: Int64, value: Data) async throws(EtcdClientError) -> V3electionpb_CampaignResponse {
        try await waitingCall(V3electionpb_ElectionRPCs.campaign, .with { $0.name = name; $0.lease = lease; $0.value = value })
    }

    /// `Proclaim`: sets the leader's value while `leader` leads.
    @discardableResult
    public func proclaim(_ value: Data, as leader: V3electionpb_LeaderKey) async throws(EtcdClientError)
        -> V3electionpb_ProclaimResponse
    {
        try await call(V3electionpb_ElectionRPCs.proclaim, .with { $0.leader = leader; $0.value = value })
    }

    /// `Resign`: gives up leadership held by `leader`.
    @discardableResult
    public func resign(_ leader: V3electionpb_LeaderKey) async throws(EtcdClientError) -> V3electionpb_ResignResponse {
        try await call(V3electionpb_ElectionRPCs.resign, .with { $0.leader = leader })
    }

    /// `Leader`: the current leader of election `name`.
    public func leader(of name: Data) async throws(EtcdClientError) -> V3electionpb_LeaderResponse {
        try await call(V3electionpb_ElectionRPCs.leader, .with { $0.name = name })
    }

    /// `Observe`: the server's stream of each leader of election `name`, until the task stops reading.
    public func observe(_ name: Data) async throws(EtcdClientError) -> AsyncThrowingStream<V3electionpb_LeaderResponse, any Error> {
        do {
            let call = try await grpc.makeStreamingCall(
                V3electionpb_ElectionRPCs.observe.path, metadata: try await streamMetadata(),
                requestType: V3electionpb_LeaderRequest.self, responseType: V3electionpb_LeaderResponse.self)
            call.send(.with { $0.name = name })
            call.finishSending()
            return call.responses
        } catch {
            throw EtcdClientError(error)
        }
    }

    /// A unary call sent as a stream, so that cancelling the task cancels it on the server.
    private func waitingCall<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ rpc: RPC<Request, Response>, _ request: Request
    ) async throws(EtcdClientError) -> Response {
        do {
            let call = try await grpc.makeStreamingCall(
                rpc.path, metadata: try await streamMetadata(), requestType: Request.self, responseType: Response.self)
            return try await withTaskCancellationHandler {
                call.send(request)
                call.finishSending()
                for try await response in call.responses { return response }
                throw EtcdClientError(code: .internal, message: "grpc: the server sent no response message")
            } onCancel: {
                call.cancel()
            }
        } catch {
            throw EtcdClientError(error)
        }
    }
}
