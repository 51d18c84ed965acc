import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf
import Testing
import TestSupport

@testable import EtcdEmbed

/// The space quota and the NOSPACE alarm on one member, as etcd behaves: filled past
/// `--quota-backend-bytes`, writes that grow the store are refused and the alarm is raised;
/// reads, deletes and put-free transactions go on; the alarm shows in `Alarm`, `Status` and
/// `/health`, survives a restart, and once space is given back (delete, compact, defragment)
/// disarming it lets writes through again.
@Suite("Space quota and alarms", .server)
struct QuotaTests {
    static let noSpace = EtcdClientError(code: .resourceExhausted, message: "etcdserver: mvcc: database space exceeded")

    @Test func aMemberOverItsQuotaRaisesNoSpaceAndRefusesWhatGrows() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("quota-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = try await EmbeddedEtcdTests().configuration(directory: directory)
        configuration.quotaBackendBytes = 4 << 20
        var etcd = try await EmbeddedEtcd.start(configuration)
        var port = try #require(etcd.clientAddresses.first?.port)
        var client = try EtcdClient(endpoints: ["127.0.0.1:\(port)"])
        let value = String(repeating: "x", count: 100_000)
        var refusedAt: Int?
        for index in 0..<100 {
            do {
                try await client.put("k\(index)", value)
            } catch {
                #expect(error == Self.noSpace)
                refusedAt = index
                break
            }
        }
        // 4 MiB hold about 40 values of 100 kB with their overhead.
        let first = try #require(refusedAt)
        #expect(first > 30 && first < 42, "\(first)")

        // The put refused is either refused before it is proposed (the backend's size already
        // past the quota) or, when the backend's commit of the puts before it had not landed
        // yet, applied and then answered NOSPACE (etcd's quota applier): so k0...k(first - 1)
        // are stored, and k(first) too in the second case. The alarm is raised through Raft
        // just after the answer.
        let stored = try await client.get(Data("k".utf8), rangeEnd: Data("l".utf8)).count
        #expect(stored == Int64(first) || stored == Int64(first + 1), "\(stored)")
        var listed = Etcdserverpb_AlarmResponse()
        for _ in 0..<100 {
            listed = try await client.call(Etcdserverpb_MaintenanceRPCs.alarm, .with { $0.action = .get })
            if !listed.alarms.isEmpty { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(listed.alarms.map(\.alarm) == [.nospace])
        #expect(listed.alarms.map(\.memberID) == [etcd.memberID])
        // What grows the store is refused now, however small; the rest works.
        await #expect(throws: Self.noSpace) { try await client.put("small", "1") }
        await #expect(throws: Self.noSpace) { try await client.grantLease(ttl: 10) }
        await #expect(throws: Self.noSpace) {
            try await client.txn(.with { $0.success = [.with { $0.requestPut = .with { $0.key = Data("t".utf8) } }] })
        }
        #expect(try await client.get("k0").kvs.count == 1)
        #expect(try await client.delete(Data("k0".utf8)).deleted == 1)
        let readOnly = try await client.txn(.with { $0.success = [.with { $0.requestRange = .with { $0.key = Data("k1".utf8) } }] })
        #expect(readOnly.succeeded)
        #expect(try await client.status().errors == ["memberID:\(etcd.memberID) alarm:NOSPACE "])
        let health = try await HTTPProbe.request("/health", port: port)
        #expect(health.status == 503 && health.body == "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n")
        #expect(try await HTTPProbe.request("/health?exclude=NOSPACE", port: port).status == 200)

        // The alarm is kept in the backend: a restarted member still refuses.
        await client.close()
        await etcd.stop()
        etcd = try await EmbeddedEtcd.start(configuration)
        port = try #require(etcd.clientAddresses.first?.port)
        client = try EtcdClient(endpoints: ["127.0.0.1:\(port)"])
        await #expect(throws: Self.noSpace) { try await client.put("small", "1") }

        // etcd's way out: delete, compact, defragment (the file shrinks), disarm (etcdctl alarm
        // disarm's two calls); then what fits under the quota goes through.
        let deleted = try await client.delete(Data("k".utf8), rangeEnd: Data("l".utf8))
        #expect(deleted.deleted == stored - 1)
        try await client.compact(revision: deleted.header.revision)
        _ = try await client.call(Etcdserverpb_MaintenanceRPCs.defragment, Etcdserverpb_DefragmentRequest())
        let defragmented = try await client.status()
        #expect(defragmented.dbSize < 1 << 20, "\(defragmented.dbSize)")
        let disarmed = try await client.call(Etcdserverpb_MaintenanceRPCs.alarm, .with {
            $0.action = .deactivate
            $0.memberID = etcd.memberID
            $0.alarm = .nospace
        })
        #expect(disarmed.alarms.map(\.alarm) == [.nospace])
        #expect(try await client.call(Etcdserverpb_MaintenanceRPCs.alarm, .with { $0.action = .get }).alarms.isEmpty)
        try await client.put("small", "1")
        for index in 0..<(first / 2) { try await client.put("k\(index)", value) }
        #expect(try await HTTPProbe.request("/health", port: port).status == 200)
        await client.close()
        await etcd.stop()
    }
}
