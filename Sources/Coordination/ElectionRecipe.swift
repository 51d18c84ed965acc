import EtcdProto
import Foundation

/// A leader of an election as an observer sees it: its key-value (the proclaimed value) and
/// the header of the revision at which it became, or proclaimed, what it is.
package struct ObservedLeader: Sendable, Equatable {
    package var header: Etcdserverpb_ResponseHeader
    package var kv: Mvccpb_KeyValue
}

/// etcd's leader election (clientv3's `concurrency.Election`, which etcd's Election service
/// runs too). Each campaigner puts `<name>/<lease>` with its value; the key with the lowest
/// create revision leads. A leader is known by its ``V3electionpb_LeaderKey`` (name, key,
/// create revision, lease), which guards proclaims and resignations against a leadership
/// already lost.
package enum ElectionRecipe {
    /// Campaigns in election `name` with `lease` and waits until this campaign leads. A lease
    /// that already campaigns keeps its place (proclaiming `value` if it differs). A cancelled
    /// campaign resigns.
    package static func campaign(
        _ name: Data, lease: Int64, value: Data, on store: some CoordinationStore
    ) async throws -> (leader: V3electionpb_LeaderKey, header: Etcdserverpb_ResponseHeader) {
        let prefix = name + Data("/".utf8)
        let key = CoordinationKeys.key(under: prefix, lease: lease)
        var put = Etcdserverpb_RequestOp()
        put.requestPut.key = key
        put.requestPut.value = value
        put.requestPut.lease = lease
        var get = Etcdserverpb_RequestOp()
        get.requestRange.key = key
        var txn = Etcdserverpb_TxnRequest()
        txn.compare = [CoordinationKeys.created(key, at: 0)]
        txn.success = [put]
        txn.failure = [get]
        let response = try await store.txn(txn)
        var leader = V3electionpb_LeaderKey()
        leader.name = name
        leader.key = key
        leader.rev = response.header.revision
        leader.lease = lease
        if !response.succeeded {
            guard let existing = response.responses.first?.responseRange.kvs.first else {
                throw CoordinationError.unexpectedResponse
            }
            leader.rev = existing.createRevision
            if existing.value != value {
                do {
                    _ = try await proclaim(value, as: leader, on: store)
                } catch {
                    _ = try? await resign(leader, on: store)
                    throw error
                }
            }
        }
        do {
            _ = try await store.waitDeletes(under: prefix, maxCreateRevision: leader.rev - 1)
        } catch {
            if Task.isCancelled {
                let campaign = leader
                await store.cleanUp { _ = try await resign(campaign, on: $0) }
            }
            throw error
        }
        return (leader, response.header)
    }

    /// Sets the leader's value, if `leader` still leads (else ``CoordinationError/notLeader``).
    package static func proclaim(
        _ value: Data, as leader: V3electionpb_LeaderKey, on store: some CoordinationStore
    ) async throws -> Etcdserverpb_ResponseHeader {
        var put = Etcdserverpb_RequestOp()
        put.requestPut.key = leader.key
        put.requestPut.value = value
        put.requestPut.lease = leader.lease
        var txn = Etcdserverpb_TxnRequest()
        txn.compare = [CoordinationKeys.created(leader.key, at: leader.rev)]
        txn.success = [put]
        let response = try await store.txn(txn)
        guard response.succeeded else { throw CoordinationError.notLeader }
        return response.header
    }

    /// Gives up leadership (or a campaign's place) by deleting the key, if it is still the
    /// campaign's; a stale leader key changes nothing and is no error, as in etcd.
    package static func resign(_ leader: V3electionpb_LeaderKey, on store: some CoordinationStore) async throws
        -> Etcdserverpb_ResponseHeader
    {
        try await store.delete(leader.key, if: CoordinationKeys.created(leader.key, at: leader.rev)).header
    }

    /// The current leader, or ``CoordinationError/noLeader``.
    package static func leader(_ name: Data, on store: some CoordinationStore) async throws -> ObservedLeader {
        let response = try await store.range(CoordinationKeys.oldestOrNewest(under: name + Data("/".utf8), ascending: true))
        guard let kv = response.kvs.first else { throw CoordinationError.noLeader }
        return ObservedLeader(header: response.header, kv: kv)
    }

    /// Every leader of election `name` from now on: the current one (if any), then each change
    /// of leader or of the leader's value, in revision order.
    ///
    /// Unlike etcd's `Observe`, which reads the leader again after each one goes and so may
    /// skip a leader that came and went in between, this follows every campaign key of the
    /// election from one revision on: every observer sees every leader, the same sequence.
    /// Only when the history it needs is compacted away does it start over from the present.
    package static func observe(_ name: Data, on store: some CoordinationStore) -> AsyncThrowingStream<ObservedLeader, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: ObservedLeader.self)
        let task = Task {
            do {
                while true {
                    do {
                        try await follow(name, on: store) { continuation.yield($0) }
                        break
                    } catch CoordinationError.compacted {
                        continue
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Reads every campaign key, then applies each revision's changes to them, reporting the
    /// leader whenever it (or its value) changes. Returns when the watch ends.
    private static func follow(_ name: Data, on store: some CoordinationStore, report: (ObservedLeader) -> Void) async throws {
        let prefix = name + Data("/".utf8)
        var all = Etcdserverpb_RangeRequest()
        all.key = prefix
        all.rangeEnd = CoordinationKeys.prefixEnd(prefix)
        all.sortTarget = .create
        all.sortOrder = .ascend
        let start = try await store.range(all)
        var campaigns = start.kvs
        var reported = campaigns.first
        if let leader = reported { report(ObservedLeader(header: start.header, kv: leader)) }
        for try await changes in store.watch(key: prefix, rangeEnd: all.rangeEnd, startRevision: start.header.revision + 1) {
            var index = 0
            while index < changes.events.count {
                // One revision's events together: a leader that exists only inside a revision
                // never led.
                let revision = changes.events[index].kv.modRevision
                while index < changes.events.count, changes.events[index].kv.modRevision == revision {
                    let event = changes.events[index]
                    campaigns.removeAll { $0.key == event.kv.key }
                    if event.type == .put {
                        let position = campaigns.firstIndex { $0.createRevision > event.kv.createRevision } ?? campaigns.count
                        campaigns.insert(event.kv, at: position)
                    }
                    index += 1
                }
                guard let leader = campaigns.first, leader != reported else { continue }
                reported = leader
                var header = changes.header
                header.revision = revision
                report(ObservedLeader(header: header, kv: leader))
            }
        }
        try Task.checkCancellation()
    }
}
