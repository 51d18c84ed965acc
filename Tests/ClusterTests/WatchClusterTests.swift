import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import TestSupport
import Testing

/// Watches on real clusters: every member delivers what it applies; clients resume from
/// their last revision on another member, or on the same one restarted.
@Suite("Watch on clusters", .cluster, .serialized)
struct WatchClusterTests {
    /// `put key=value@revision` / `del key@revision` for each event.
    private static func describe(_ events: [Mvccpb_Event]) -> [String] {
        events.map { event in
            let key = String(decoding: event.kv.key, as: UTF8.self)
            return event.type == .delete
                ? "del \(key)@\(event.kv.modRevision)"
                : "put \(key)=\(String(decoding: event.kv.value, as: UTF8.self))@\(event.kv.modRevision)"
        }
    }

    private static func watchRequest(prefix: String, from revision: Int64) -> Etcdserverpb_WatchCreateRequest {
        .with {
            $0.key = Data(prefix.utf8)
            $0.rangeEnd = prefixEnd(prefix)
            $0.startRevision = revision
        }
    }

    @Test("watchers on every member receive the same events, in order, whole transactions together")
    func everyMemberDeliversWhatItApplies() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers)
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        var watchers: [WatchTranscript] = []
        var clients: [EtcdClient] = []
        for member in 0..<3 {
            let client = try EtcdClient(endpoints: [cluster.endpoint(member)])
            clients.append(client)
            let stream = try await client.watchStream()
            try await stream.create(Self.watchRequest(prefix: "w/", from: 0))
            watchers.append(WatchTranscript(stream))
        }
        for watcher in watchers { #expect(try await watcher.wait { $0.responses.count == 1 }) }
        // Writes through every member: puts, transactions of three keys, deletes.
        var last: Int64 = 0
        for round in 0..<30 {
            let client = clients[round % 3]
            switch round % 3 {
            case 0:
                last = try await client.put("w/\(round % 5)", "\(round)").header.revision
            case 1:
                last = try await client.txn(.with { txn in
                    txn.success = (0..<3).map { key in
                        .with { $0.requestPut = .with { $0.key = Data("w/t\(key)".utf8); $0.value = Data("\(round)".utf8) } }
                    }
                }).header.revision
            default:
                last = try await client.delete(Data("w/\((round + 1) % 5)".utf8)).header.revision
            }
        }
        let replay = WatchTranscript(try await clients[0].watch(Self.watchRequest(prefix: "w/", from: 1)))
        defer { replay.close() }
        #expect(try await replay.wait { $0.events.last?.kv.modRevision == last })
        let expected = Self.describe(replay.events)
        for (member, watcher) in watchers.enumerated() {
            #expect(try await watcher.wait { $0.events.last.map { $0.kv.modRevision >= last } ?? false }, "member \(member)")
            #expect(Self.describe(watcher.events) == expected, "member \(member)")
            // A transaction's three puts arrive in one response (which may hold other
            // revisions' events too: a stream joins events that arrive close together).
            for response in watcher.responses {
                for first in response.events where first.kv.key == Data("w/t0".utf8) {
                    #expect(response.events.filter { $0.kv.modRevision == first.kv.modRevision }.count == 3)
                }
            }
            watcher.close()
        }
        for client in clients { await client.close() }
    }

    @Test("a client resumes from its last revision on another member after a kill, and on the member restarted")
    func watchersResumeAcrossMembers() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers)
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        let writer = try EtcdClient(endpoints: [cluster.endpoint(0), cluster.endpoint(1)], requestTimeout: .seconds(30))
        defer { Task { await writer.close() } }
        let start = try await writer.put("r/start", "0").header.revision

        let watched = try EtcdClient(endpoints: [cluster.endpoint(2)])
        let first = WatchTranscript(try await watched.watch(Self.watchRequest(prefix: "r/", from: start)))
        let writes = Task {
            for index in 0..<150 {
                // A write whose answer was lost may be applied twice; the history decides.
                for _ in 0..<20 {
                    if (try? await writer.put("r/\(index % 7)", "\(index)")) != nil { break }
                }
            }
        }
        #expect(try await first.wait { $0.events.count >= 40 })
        cluster.members[2].kill9()
        #expect(try await first.wait { $0.end != nil })
        first.close()
        await watched.close()
        let before = first.events
        let resumeFrom = before.last!.kv.modRevision + 1

        let other = try EtcdClient(endpoints: [cluster.endpoint(1)])
        let second = WatchTranscript(try await other.watch(Self.watchRequest(prefix: "r/", from: resumeFrom)))
        await writes.value
        let final = try await writer.put("r/end", "done").header.revision
        #expect(try await second.wait { $0.events.last?.kv.modRevision == final })
        second.close()
        await other.close()

        // The whole history, once, in order: exactly what a replay from the start shows.
        let replay = WatchTranscript(try await writer.watch(Self.watchRequest(prefix: "r/", from: start)))
        defer { replay.close() }
        #expect(try await replay.wait { $0.events.last?.kv.modRevision == final })
        #expect(Self.describe(before + second.events) == Self.describe(replay.events))

        // The killed member, restarted, catches up and serves the same history from the same point.
        try await cluster.start(2)
        let restarted = try EtcdClient(endpoints: [cluster.endpoint(2)])
        defer { Task { await restarted.close() } }
        let third = WatchTranscript(try await restarted.watch(Self.watchRequest(prefix: "r/", from: resumeFrom)))
        defer { third.close() }
        #expect(try await third.wait { $0.events.last?.kv.modRevision == final })
        #expect(Self.describe(third.events) == Self.describe(second.events))
    }

    @Test("a watch that requires a leader ends with etcd's no-leader error on a member cut off from the majority")
    func aWatchRequiringALeaderEndsWhenTheMemberLosesIt() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers, partitionable: true)
        defer { cluster.destroy() }
        let leader = try await cluster.startAndElect()
        let follower = (leader + 1) % 3
        let client = try EtcdClient(endpoints: [cluster.endpoint(follower)])
        defer { Task { await client.close() } }
        let stream = try await client.watchStream(requireLeader: true)
        try await stream.create(Self.watchRequest(prefix: "x/", from: 0))
        let watch = WatchTranscript(stream)
        defer { watch.close() }
        #expect(try await watch.wait { $0.responses.count == 1 })

        cluster.links!.isolate([follower])
        // etcd ends it after three election timeouts without a leader (here 500 ms each).
        #expect(try await watch.wait { $0.end != nil })
        #expect(watch.end?.contains("etcdserver: no leader") == true)
        // A new stream that requires a leader is refused at once while the member has none.
        let refused = WatchTranscript(try await client.watchStream(requireLeader: true))
        defer { refused.close() }
        #expect(try await refused.wait { $0.end != nil })
        #expect(refused.end?.contains("etcdserver: no leader") == true)

        cluster.links!.heal()
        _ = try await cluster.waitForLeader()
        let healed = try await client.watchStream(requireLeader: true)
        try await healed.create(Self.watchRequest(prefix: "x/", from: 0))
        let again = WatchTranscript(healed)
        defer { again.close() }
        #expect(try await again.wait { $0.responses.first?.created == true })
    }
}
