import EtcdProto
import Foundation

/// What etcd's lock and election recipes need from a store: a transaction, a linearizable
/// read, a lease grant and a watch, all made as one caller.
///
/// Two kinds of store run the same recipes: `EtcdClient` (the recipes a program uses through
/// its client, as clientv3's `concurrency` package) and a member serving its own Lock and
/// Election services (as etcd's server runs clientv3's recipes over an in-process client).
package protocol CoordinationStore: Sendable {
    func txn(_ request: Etcdserverpb_TxnRequest) async throws -> Etcdserverpb_TxnResponse
    /// A linearizable range.
    func range(_ request: Etcdserverpb_RangeRequest) async throws -> Etcdserverpb_RangeResponse
    /// Grants a lease of `ttl` seconds and returns its ID.
    func grantLease(ttl: Int64) async throws -> Int64
    /// The changes to `[key, rangeEnd)` (one key when `rangeEnd` is empty) from
    /// `startRevision` on, one element per watch response, until the consumer stops. Ends
    /// with ``CoordinationError/compacted`` when that revision is gone, and with an error when
    /// the store cannot go on watching.
    func watch(key: Data, rangeEnd: Data, startRevision: Int64) -> AsyncThrowingStream<WatchedChanges, any Error>
}

/// The events of one watch response and its header.
package struct WatchedChanges: Sendable {
    package var header: Etcdserverpb_ResponseHeader
    package var events: [Mvccpb_Event]

    package init(header: Etcdserverpb_ResponseHeader, events: [Mvccpb_Event]) {
        self.header = header
        self.events = events
    }
}

/// The recipes' own failures, worded as clientv3's `concurrency` package words them; etcd's
/// servers answer them with gRPC code UNKNOWN.
package enum CoordinationError: Error, Sendable, Equatable {
    /// A proclaim with a leader key that no longer leads.
    case notLeader
    /// Nobody leads the election.
    case noLeader
    /// The lock's key vanished (its lease expired) while the lock was awaited.
    case sessionExpired
    /// `tryLock` found the lock held.
    case locked
    /// A watch ended without the delete it waited for.
    case lostWatcher
    /// A watch needed history that has been compacted away.
    case compacted
    /// An election request without its `leader` field.
    case missingLeaderKey
    /// A transaction answered with fewer results than it asked for.
    case unexpectedResponse

    package var message: String {
        switch self {
        case .notLeader: "election: not leader"
        case .noLeader: "election: no leader"
        case .sessionExpired: "mutex: session is expired"
        case .locked: "mutex: Locked by another session"
        case .lostWatcher: "lost watcher waiting for delete"
        case .compacted: "etcdserver: mvcc: required revision has been compacted"
        case .missingLeaderKey: "\"leader\" field must be provided"
        case .unexpectedResponse: "unexpected transaction response"
        }
    }
}

/// Key arithmetic the recipes share.
package enum CoordinationKeys {
    /// The end of the range of every key that starts with `prefix` (clientv3's `GetPrefixRangeEnd`):
    /// the prefix with its last byte below 0xff incremented and what follows dropped; `"\0"`
    /// (every key) when there is none.
    package static func prefixEnd(_ prefix: Data) -> Data {
        var end = [UInt8](prefix)
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return Data(end)
            }
            end.removeLast()
        }
        return Data([0])
    }

    /// The key a lease holds under `prefix`: the prefix and the lease ID in lowercase hex, as
    /// clientv3 names lock and campaign keys.
    package static func key(under prefix: Data, lease: Int64) -> Data {
        prefix + Data(String(UInt64(bitPattern: lease), radix: 16).utf8)
    }

    /// `[prefix, prefixEnd)` with `limit` 1 in create-revision order: the oldest key
    /// (`ascending`) or the newest one (no older than `maxCreateRevision` when it is not 0).
    package static func oldestOrNewest(
        under prefix: Data, ascending: Bool, maxCreateRevision: Int64 = 0
    ) -> Etcdserverpb_RangeRequest {
        var request = Etcdserverpb_RangeRequest()
        request.key = prefix
        request.rangeEnd = prefixEnd(prefix)
        request.sortTarget = .create
        request.sortOrder = ascending ? .ascend : .descend
        request.limit = 1
        request.maxCreateRevision = maxCreateRevision
        return request
    }

    /// A compare that holds when `key`'s create revision is `revision` (0: the key does not exist).
    package static func created(_ key: Data, at revision: Int64) -> Etcdserverpb_Compare {
        var compare = Etcdserverpb_Compare()
        compare.key = key
        compare.target = .create
        compare.result = .equal
        compare.createRevision = revision
        return compare
    }
}

extension CoordinationStore {
    /// Returns once no key under `prefix` created at or before `maxCreateRevision` is left
    /// (clientv3's `waitDeletes`): waits for the newest such key to go, then looks again, so
    /// each waiter watches only the key just ahead of it.
    func waitDeletes(under prefix: Data, maxCreateRevision: Int64) async throws -> Etcdserverpb_ResponseHeader {
        while true {
            let response = try await range(
                CoordinationKeys.oldestOrNewest(under: prefix, ascending: false, maxCreateRevision: maxCreateRevision))
            guard let newest = response.kvs.first else { return response.header }
            try await waitDelete(of: newest.key, from: response.header.revision)
        }
    }

    /// Returns once `key` is deleted at or after `revision`.
    func waitDelete(of key: Data, from revision: Int64) async throws {
        for try await changes in watch(key: key, rangeEnd: Data(), startRevision: revision)
        where changes.events.contains(where: { $0.type == .delete }) {
            return
        }
        try Task.checkCancellation()
        throw CoordinationError.lostWatcher
    }

    /// Runs `cleanup` to its end even when the current task is cancelled (a cancelled wait
    /// still removes its key), ignoring its failure as clientv3 does.
    func cleanUp(_ cleanup: @escaping @Sendable (Self) async throws -> Void) async {
        let store = self
        await Task { try? await cleanup(store) }.value
    }

    /// A transaction of one delete of `key`, done only while `compare` holds (always when nil).
    func delete(_ key: Data, if compare: Etcdserverpb_Compare? = nil) async throws -> Etcdserverpb_TxnResponse {
        var txn = Etcdserverpb_TxnRequest()
        if let compare { txn.compare = [compare] }
        var delete = Etcdserverpb_RequestOp()
        delete.requestDeleteRange.key = key
        txn.success = [delete]
        return try await self.txn(txn)
    }
}
