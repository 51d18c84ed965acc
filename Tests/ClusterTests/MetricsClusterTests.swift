import EtcdClient
import EtcdProto
import Foundation
import SwiftProtobuf
import Testing
import TestSupport

/// `/metrics` on a three-member cluster: what every member applied is counted alike on each,
/// the peers' traffic and round trips are reported per member ID, and the gRPC latency
/// histograms appear with `--metrics extensive`.
@Suite("Metrics on a cluster", .cluster, .serialized)
struct MetricsClusterTests {
    /// The samples of a scrape, by series (`name{labels}`), as numbers.
    static func scrape(port: Int) async throws -> [String: Double] {
        let answer = try await HTTPProbe.request("/metrics", port: port)
        var samples: [String: Double] = [:]
        for line in answer.body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    @Test func membersCountWhatTheyApplyAndTheirPeers() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers + ["--metrics", "extensive"])
        defer { cluster.destroy() }
        let leader = try await cluster.startAndElect()
        let client = try EtcdClient(endpoints: [cluster.endpoint(0)])
        defer { Task { await client.close() } }
        let watch = try await client.watch(Data("k".utf8), rangeEnd: Data("l".utf8))
        defer { watch.close() }
        // The watcher is in place once its creation is answered: a put before that is not its event.
        var responses = watch.makeAsyncIterator()
        #expect(try await responses.next()?.created == true)
        for index in 0..<5 { try await client.put("k\(index)", "value") }
        _ = try await client.txn(.with { txn in
            txn.compare = [.with { $0.key = Data("k0".utf8); $0.target = .version; $0.result = .greater; $0.version = 0 }]
            txn.success = [
                .with { $0.requestPut = .with { $0.key = Data("t1".utf8); $0.value = Data("v".utf8) } },
                .with { $0.requestPut = .with { $0.key = Data("t2".utf8); $0.value = Data("v".utf8) } },
            ]
        })
        try await client.delete(Data("k4".utf8))
        let lease = try await client.grantLease(ttl: 60)
        _ = try await client.get("k0")
        let final = try await client.get("t2").header.revision
        // Probes go every 4 s; give every member two.
        try await Task.sleep(for: .seconds(9))

        var ids: [UInt64] = []
        for member in 0..<3 { ids.append(try await cluster.status(member).header.memberID) }
        for member in 0..<3 {
            let samples = try await Self.scrape(port: cluster.members[member].port)
            func value(_ series: String) -> Double? { samples[series] }
            // Applied on every member alike: 5 puts and the transaction's 2; one transaction;
            // one delete; 6 keys alive; the revision; one lease.
            #expect(value("etcd_mvcc_put_total") == 7, "member \(member)")
            #expect(value("etcd_mvcc_txn_total") == 1, "member \(member)")
            #expect(value("etcd_mvcc_delete_total") == 1, "member \(member)")
            #expect(value("etcd_debugging_mvcc_keys_total") == 6, "member \(member)")
            #expect(value("etcd_debugging_mvcc_current_revision") == Double(final), "member \(member)")
            #expect(value("etcd_debugging_lease_granted_total") == 1, "member \(member)")
            #expect(value("etcd_debugging_mvcc_total_put_size_in_bytes") == 41, "member \(member)")  // 5 × (2 + 5) + 2 × (2 + 1)
            #expect(value(#"etcd_debugging_lease_ttl_total_bucket{le="64.0"}"#) == 1, "member \(member)")
            // Raft traffic between the leader and each follower (followers send each other
            // nothing), a failure series per peer (some messages may have failed while the
            // members were starting), and round trips to every peer.
            for (index, peer) in ids.enumerated() where index != member {
                let id = String(peer, radix: 16)
                if member == leader || index == leader {
                    #expect((value(#"etcd_network_peer_sent_bytes_total{To="\#(id)"}"#) ?? 0) > 0, "member \(member) to \(id)")
                    #expect((value(#"etcd_network_peer_received_bytes_total{From="\#(id)"}"#) ?? 0) > 0, "member \(member) from \(id)")
                }
                #expect(value(#"etcd_network_peer_sent_failures_total{To="\#(id)"}"#) != nil, "member \(member) to \(id)")
                #expect((value(#"etcd_network_peer_round_trip_time_seconds_count{To="\#(id)"}"#) ?? 0) >= 1, "member \(member) to \(id)")
            }
        }
        // Served by member 0 alone: the ranges (the get, the compare), the watch, its events.
        let first = try await Self.scrape(port: cluster.members[0].port)
        #expect(first["etcd_mvcc_range_total"] == 3)  // 2 gets + the compare
        #expect(first["etcd_debugging_mvcc_watch_stream_total"] == 1)
        #expect(first["etcd_debugging_mvcc_watcher_total"] == 1)
        #expect(first["etcd_debugging_mvcc_events_total"] == 6)
        #expect(first[#"grpc_server_handling_seconds_count{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put"}"#] == 5)
        #expect(lease.ttl == 60)
    }
}
