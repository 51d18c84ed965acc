import EtcdProto
import Foundation

/// A lock held in etcd: the key its holder's lease owns, and the key's create revision.
package struct HeldLock: Sendable, Equatable {
    /// `<name>/<lease in hex>`; deleting it releases the lock.
    package var key: Data
    /// The key's create revision: the lock's fencing token. A write guarded by a compare on
    /// it (``CoordinationKeys/created(_:at:)``) fails once the lock has passed to another holder.
    package var revision: Int64
    package var header: Etcdserverpb_ResponseHeader
}

/// etcd's distributed mutex (clientv3's `concurrency.Mutex`, which etcd's Lock service runs
/// too). Each contender puts `<name>/<lease>` with its lease; the key with the lowest create
/// revision holds the lock; a contender waits only for the newest key older than its own, so
/// a release wakes one waiter, not all of them.
package enum LockRecipe {
    /// Takes the lock `name` for `lease`, waiting as long as it is held by others. Taking it
    /// again with a lease that already holds it (or waits for it) reuses its key. A wait that
    /// fails or is cancelled removes the key; a key that vanished while waiting (the lease
    /// expired) ends with ``CoordinationError/sessionExpired``.
    package static func lock(_ name: Data, lease: Int64, on store: some CoordinationStore) async throws -> HeldLock {
        let prefix = name + Data("/".utf8)
        let attempt = try await acquire(prefix, lease: lease, on: store)
        if attempt.holds { return attempt.lock }
        let key = attempt.lock.key
        let header: Etcdserverpb_ResponseHeader
        do {
            _ = try await store.waitDeletes(under: prefix, maxCreateRevision: attempt.lock.revision - 1)
            var mine = Etcdserverpb_RangeRequest()
            mine.key = key
            let check = try await store.range(mine)
            guard !check.kvs.isEmpty else { throw CoordinationError.sessionExpired }
            header = check.header
        } catch CoordinationError.sessionExpired {
            throw CoordinationError.sessionExpired
        } catch {
            await store.cleanUp { _ = try await $0.delete(key) }
            throw error
        }
        var lock = attempt.lock
        lock.header = header
        return lock
    }

    /// Takes the lock `name` for `lease` only if nobody else holds it; otherwise removes the
    /// key it put and fails with ``CoordinationError/locked``.
    package static func tryLock(_ name: Data, lease: Int64, on store: some CoordinationStore) async throws -> HeldLock {
        let attempt = try await acquire(name + Data("/".utf8), lease: lease, on: store)
        if attempt.holds { return attempt.lock }
        _ = try await store.delete(attempt.lock.key)
        throw CoordinationError.locked
    }

    /// Releases a lock by deleting its key (etcd's `Unlock`: deleting a key not held is no error).
    package static func unlock(_ key: Data, on store: some CoordinationStore) async throws -> Etcdserverpb_ResponseHeader {
        try await store.delete(key).header
    }

    /// One transaction: put our key unless it exists (else read it), and read the oldest key
    /// under the prefix, which holds the lock.
    private static func acquire(
        _ prefix: Data, lease: Int64, on store: some CoordinationStore
    ) async throws -> (lock: HeldLock, holds: Bool) {
        let key = CoordinationKeys.key(under: prefix, lease: lease)
        var put = Etcdserverpb_RequestOp()
        put.requestPut.key = key
        put.requestPut.lease = lease
        var get = Etcdserverpb_RequestOp()
        get.requestRange.key = key
        var owner = Etcdserverpb_RequestOp()
        owner.requestRange = CoordinationKeys.oldestOrNewest(under: prefix, ascending: true)
        var txn = Etcdserverpb_TxnRequest()
        txn.compare = [CoordinationKeys.created(key, at: 0)]
        txn.success = [put, owner]
        txn.failure = [get, owner]
        let response = try await store.txn(txn)
        guard response.responses.count == 2 else { throw CoordinationError.unexpectedResponse }
        var revision = response.header.revision
        if !response.succeeded {
            guard let mine = response.responses[0].responseRange.kvs.first else { throw CoordinationError.sessionExpired }
            revision = mine.createRevision
        }
        let oldest = response.responses[1].responseRange.kvs.first
        let holds = oldest == nil || oldest?.createRevision == revision
        return (HeldLock(key: key, revision: revision, header: response.header), holds)
    }
}
