import Backend
import EtcdProto
import Foundation
import MVCC
import SwiftProtobuf
import Testing
import WAL

@testable import EtcdServer

/// A member on a temporary data directory, with async helpers for proposals.
final class TestMember: Sendable {
    let directory: URL
    let server: EtcdServer

    /// A configuration on a fresh temporary data directory.
    static func configuration() -> EtcdServer.Configuration {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-server-\(UUID().uuidString)")
        return EtcdServer.Configuration(
            name: "default", dataDirectory: directory.path, initialCluster: "default=http://localhost:2380",
            initialClusterToken: "etcd-cluster", advertiseClientURLs: ["http://localhost:2379"])
    }

    init(maxTxnOperations: Int = 128) throws {
        var configuration = Self.configuration()
        configuration.maxTxnOperations = maxTxnOperations
        directory = URL(fileURLWithPath: configuration.dataDirectory)
        server = try EtcdServer(configuration)
    }

    init(configuration: EtcdServer.Configuration) throws {
        directory = URL(fileURLWithPath: configuration.dataDirectory)
        server = try EtcdServer(configuration)
    }

    deinit {
        server.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    func write(_ request: WriteRequest) async -> Result<WriteResponse, EtcdError> {
        await withCheckedContinuation { continuation in server.propose(request, by: nil) { continuation.resume(returning: $0) } }
    }

    @discardableResult
    func put(_ key: String, _ value: String, lease: Int64 = 0) async -> Result<WriteResponse, EtcdError> {
        await write(.put(.with { $0.key = Data(key.utf8); $0.value = Data(value.utf8); $0.lease = lease }))
    }

    func get(_ key: String, end: String = "", _ configure: (inout Etcdserverpb_RangeRequest) -> Void = { _ in }) throws -> Etcdserverpb_RangeResponse {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(key.utf8)
        request.rangeEnd = Data(end.utf8)
        configure(&request)
        return try server.range(request, by: nil)
    }
}

func put(_ key: String, _ value: String = "v") -> Etcdserverpb_RequestOp {
    .with { $0.requestPut = .with { $0.key = Data(key.utf8); $0.value = Data(value.utf8) } }
}

func delete(_ key: String, end: String = "") -> Etcdserverpb_RequestOp {
    .with { $0.requestDeleteRange = .with { $0.key = Data(key.utf8); $0.rangeEnd = Data(end.utf8) } }
}

func nested(success: [Etcdserverpb_RequestOp], failure: [Etcdserverpb_RequestOp] = []) -> Etcdserverpb_RequestOp {
    .with { $0.requestTxn = .with { $0.success = success; $0.failure = failure } }
}

func compare(_ key: String, _ target: Etcdserverpb_Compare.CompareTarget, _ result: Etcdserverpb_Compare.CompareResult,
             version: Int64? = nil, value: String? = nil, end: String = "") -> Etcdserverpb_Compare {
    .with {
        $0.key = Data(key.utf8)
        $0.target = target
        $0.result = result
        $0.rangeEnd = Data(end.utf8)
        if let version { $0.version = version }
        if let value { $0.value = Data(value.utf8) }
    }
}

@Suite("Transaction checks before proposing")
struct TxnValidationTests {
    private func check(_ success: [Etcdserverpb_RequestOp], _ failure: [Etcdserverpb_RequestOp] = [], max: Int = 128) -> EtcdError? {
        do throws(EtcdError) {
            try TxnRules.validate(.with { $0.success = success; $0.failure = failure }, maxOperations: max)
            return nil
        } catch {
            return error
        }
    }

    @Test func aKeyPutTwiceInOneBranchIsADuplicate() {
        #expect(check([put("a"), put("a")]) == .duplicateKey)
        #expect(check([put("a")], [put("a")]) == nil)
        #expect(check([put("a"), put("b")]) == nil)
    }

    @Test func aPutInsideARangeTheBranchDeletesIsADuplicate() {
        #expect(check([delete("a", end: "c"), put("b")]) == .duplicateKey)
        #expect(check([put("b"), delete("a", end: "c")]) == .duplicateKey)
        #expect(check([delete("a", end: "c"), put("c")]) == nil)
        #expect(check([delete("b"), put("b")]) == .duplicateKey)
        #expect(check([delete("a", end: "\u{0}"), put("zzz")]) == .duplicateKey)
        #expect(check([delete("a"), delete("a")]) == nil)
    }

    @Test func nestedBranchesAreExclusiveButNotWithTheirParent() {
        #expect(check([nested(success: [put("a")], failure: [put("a")])]) == nil)
        #expect(check([put("a"), nested(success: [put("a")])]) == .duplicateKey)
        #expect(check([delete("a", end: "z"), nested(success: [], failure: [put("k")])]) == .duplicateKey)
        #expect(check([nested(success: [delete("k")]), put("k")]) == .duplicateKey)
    }

    @Test func operationCountsAreLimitedAtEveryLevel() {
        #expect(check(Array(repeating: delete("a"), count: 129)) == .tooManyOperations)
        #expect(check(Array(repeating: delete("a"), count: 128)) == nil)
        #expect(check([nested(success: Array(repeating: delete("a"), count: 4))], max: 3) == .tooManyOperations)
        #expect(check([put("")]) == .emptyKey)
        #expect(check([nested(success: [delete("")])]) == .emptyKey)
    }
}

@Suite("Applying writes")
struct ApplyTests {
    @Test func comparesFollowEtcd() async throws {
        let member = try TestMember()
        await member.put("k1", "v1")
        func succeeds(_ compares: [Etcdserverpb_Compare]) async -> Bool? {
            guard case .success(.txn(let response)) = await member.write(.txn(.with { $0.compare = compares })) else { return nil }
            return response.succeeded
        }
        #expect(await succeeds([compare("k1", .value, .equal, value: "v1")]) == true)
        #expect(await succeeds([compare("k1", .value, .greater, value: "v0")]) == true)
        #expect(await succeeds([compare("k1", .version, .notEqual, version: 1)]) == false)
        // A missing key's value never compares; its version is 0.
        #expect(await succeeds([compare("missing", .value, .equal, value: "")]) == false)
        #expect(await succeeds([compare("missing", .version, .equal, version: 0)]) == true)
        await member.put("k2", "v2")
        #expect(await succeeds([compare("k", .version, .equal, version: 1, end: "l")]) == true)
        await member.put("k2", "v2b")
        #expect(await succeeds([compare("k", .version, .equal, version: 1, end: "l")]) == false)
        #expect(await succeeds([compare("k", .version, .less, version: 3, end: "l")]) == true)
    }

    @Test func nestedComparesSeeTheStateBeforeTheTxn() async throws {
        let member = try TestMember()
        await member.put("k", "v1")
        let result = await member.write(.txn(.with {
            $0.success = [
                put("k", "v2"),
                nested(success: [put("x", "inner-success")], failure: [put("y", "inner-failure")]),
            ]
            $0.success[1].requestTxn.compare = [compare("k", .value, .equal, value: "v1")]
        }))
        guard case .success(.txn(let response)) = result else { Issue.record("txn failed: \(result)"); return }
        #expect(response.responses[1].responseTxn.succeeded)
        #expect(try member.get("x").count == 1)
        #expect(try member.get("y").count == 0)
        #expect(response.responses.map(\.responsePut.header.revision).first == 3)
    }

    @Test func comparesWithoutAValueUseZeroAndTxnReadsCannotRunAhead() async throws {
        let member = try TestMember()
        await member.put("k", "v")
        let modGreaterThanNothing = Etcdserverpb_Compare.with { $0.key = Data("k".utf8); $0.target = .mod; $0.result = .greater }
        guard case .success(.txn(let response)) = await member.write(.txn(.with { $0.compare = [modGreaterThanNothing] })) else {
            Issue.record("txn failed"); return
        }
        #expect(response.succeeded)
        let readAhead = Etcdserverpb_RequestOp.with { $0.requestRange = .with { $0.key = Data("k".utf8); $0.revision = 3 } }
        guard case .failure(.futureRevision) = await member.write(.txn(.with { $0.success = [readAhead] })) else {
            Issue.record("a txn read at the revision it has not written yet must be a future revision"); return
        }
        let huge = try member.get("k", end: "\u{0}") { $0.limit = Int64.max }
        #expect(huge.kvs.count == 1)
        #expect(!huge.more)
    }

    @Test func aFailingTransactionChangesNothing() async throws {
        let member = try TestMember()
        await member.put("a", "1")
        let before = member.server.currentRevision
        let result = await member.write(.txn(.with {
            $0.success = [put("b"), .with { $0.requestPut = .with { $0.key = Data("c".utf8); $0.lease = 99 } }]
        }))
        guard case .failure(let error) = result else { Issue.record("txn succeeded"); return }
        #expect(error == .leaseNotFound)
        #expect(member.server.currentRevision == before)
        #expect(try member.get("b").count == 0)
    }

    @Test func putRulesForIgnoredFieldsAndLeases() async throws {
        let member = try TestMember()
        guard case .failure(.keyNotFound) = await member.write(.put(.with { $0.key = Data("x".utf8); $0.ignoreValue = true })) else {
            Issue.record("ignore_value on a missing key must fail"); return
        }
        guard case .failure(.leaseNotFound) = await member.put("x", "1", lease: 5) else {
            Issue.record("a put with an unknown lease must fail"); return
        }
        await member.put("x", "keep")
        guard case .success(.put(let response)) = await member.write(.put(.with {
            $0.key = Data("x".utf8); $0.ignoreValue = true; $0.prevKv = true
        })) else { Issue.record("ignore_value put failed"); return }
        #expect(String(decoding: response.prevKv.value, as: UTF8.self) == "keep")
        let now = try member.get("x")
        #expect(String(decoding: now.kvs[0].value, as: UTF8.self) == "keep")
        #expect(now.kvs[0].version == 2)
        #expect(now.header.revision == 3)
    }

    @Test func rangeRulesLimitsMoreAndBadOptions() async throws {
        let member = try TestMember()
        for key in ["a", "b", "c", "d"] { await member.put(key, key.uppercased()) }
        let limited = try member.get("a", end: "\u{0}") { $0.limit = 2 }
        #expect(limited.kvs.map { String(decoding: $0.key, as: UTF8.self) } == ["a", "b"])
        #expect(limited.more)
        #expect(limited.count == 4)
        let exact = try member.get("a", end: "\u{0}") { $0.limit = 4 }
        #expect(!exact.more)
        // etcd answers these without an error: a negative limit is no limit, a reversed range is empty.
        #expect(try member.get("a", end: "\u{0}") { $0.limit = -1 }.kvs.count == 4)
        #expect(try member.get("d", end: "a").count == 0)
        #expect(throws: EtcdError.emptyKey) { try member.get("") }
        #expect(throws: EtcdError.invalidSortOption) { try member.get("a") { $0.sortTarget = .UNRECOGNIZED(9) } }
        #expect(throws: EtcdError.futureRevision) { try member.get("a") { $0.revision = 100 } }
    }

    @Test func restartKeepsEverything() async throws {
        let directory: URL
        do {
            let member = try TestMember()
            directory = member.directory
            await member.put("durable", "yes")
            _ = await member.write(.compaction(.with { $0.revision = 2 }))
            member.server.stop()
            // Reopen the same data directory before the member's cleanup removes it.
            let reopened = try EtcdServer(member.server.configuration)
            let response = try reopened.range(.with { $0.key = Data("durable".utf8) }, by: nil)
            #expect(String(decoding: response.kvs[0].value, as: UTF8.self) == "yes")
            #expect(response.header.revision == 2)
            #expect(throws: EtcdError.compacted) { try reopened.range(.with { $0.key = Data("durable".utf8); $0.revision = 1 }, by: nil) }
            reopened.stop()
        }
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    @Test func loggedButUnappliedWritesAreAppliedOnceAtStart() async throws {
        let member = try TestMember()
        await member.put("before", "1")
        member.server.stop()
        let id = member.server.memberID
        // As if the member crashed after the log's fdatasync but before the backend commit.
        do {
            let (log, contents) = try WriteAheadLog.open(
                directory: member.directory.appendingPathComponent("member/wal").path, from: WALSnapshot(index: 0, term: 0))
            // The bootstrap membership entry, the new leader's empty entry, the member's published
            // attributes and the put (those two in either order).
            let last = UInt64(contents.entries.count)
            #expect(contents.entries.map(\.index) == Array(1...last))
            #expect(last == 4)
            #expect(contents.entries[1].data.isEmpty)
            #expect(contents.hardState == WALHardState(term: 2, vote: id, commit: last))
            let unapplied: [WriteRequest] = [
                .put(.with { $0.key = Data("after".utf8); $0.value = Data("2".utf8) }),
                .deleteRange(.with { $0.key = Data("before".utf8) }),
            ]
            try log.save(
                hardState: WALHardState(term: 2, vote: id, commit: 6),
                entries: unapplied.enumerated().map {
                    LogEntry(
                        index: 5 + UInt64($0.offset), term: 2,
                        data: EntryEnvelope.encode(proposer: id, requestID: UInt64($0.offset), origin: .member, request: $0.element))
                })
            log.close()
        }
        for start in 1...2 {  // the second start must not apply them again
            let reopened = try EtcdServer(member.server.configuration)
            // Each start elects the member again (a new term, a new empty entry), applies what
            // the log has beyond the backend, and publishes the member's attributes (as etcd
            // does at every start: applying that entry makes the member ready).
            let applied = 6 + 2 * UInt64(start)
            for _ in 0..<600 where try reopened.status().raftAppliedIndex < applied {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(try reopened.status().raftAppliedIndex == applied)
            let all = try reopened.range(.with { $0.key = Data([0]); $0.rangeEnd = Data([0]) }, by: nil)
            #expect(all.kvs.map { String(decoding: $0.key, as: UTF8.self) } == ["after"])
            #expect(all.header.revision == 4)
            reopened.stop()
        }
    }

    @Test func snapshotsBoundTheLogAndRestartsReadFromTheNewest() async throws {
        var configuration = TestMember.configuration()
        configuration.snapshotCount = 10
        configuration.walSegmentSize = 4096
        configuration.maxWALs = 2
        configuration.maxSnapshots = 2
        let member = try TestMember(configuration: configuration)
        for n in 0..<95 { await member.put("key\(n)", String(repeating: "v", count: 100)) }
        member.server.stop()
        let wal = member.directory.appendingPathComponent("member/wal").path
        let snap = member.directory.appendingPathComponent("member/snap").path
        // Purging runs in the background after each snapshot; give it a bounded moment.
        var segments: [String] = []
        for _ in 0..<50 {
            segments = try FileManager.default.contentsOfDirectory(atPath: wal).filter { $0.hasSuffix(".wal") }
            if segments.count <= 2 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(segments.count == 2)
        let snapshots = try FileManager.default.contentsOfDirectory(atPath: snap).filter { $0.hasSuffix(".snap") }.sorted()
        // Entries 1-3 are the bootstrap membership, the leader's empty entry and the member's
        // attributes: snapshots every 10 entries, the newest two kept.
        #expect(snapshots == ["0000000000000002-0000000000000050.snap", "0000000000000002-000000000000005a.snap"])
        // A snapshot file whose log marker never got written (a crash between the two) is skipped.
        try Snapshotter.save(SnapshotFile(index: 95, term: 1, confState: []), directory: snap)
        let reopened = try EtcdServer(configuration)
        let response = try reopened.range(.with { $0.key = Data("key".utf8); $0.rangeEnd = Data("kez".utf8); $0.countOnly = true }, by: nil)
        #expect(response.count == 95)
        #expect(response.header.revision == 96)
        reopened.stop()
    }

    @Test func aBackendOlderThanTheSnapshotIsRefused() async throws {
        var configuration = TestMember.configuration()
        configuration.snapshotCount = 10
        let member = try TestMember(configuration: configuration)
        for n in 0..<12 { await member.put("key\(n)", "v") }
        member.server.stop()
        // As if backend.sqlite were restored from an older copy: it claims only 3 entries applied.
        let path = member.directory.appendingPathComponent("member/snap/backend.sqlite").path
        try SQLiteBackend(path: path, synchronousCommits: true).commit([], meta: [.consistentIndex: 3])
        do {
            _ = try EtcdServer(configuration)
            Issue.record("a backend behind the snapshot was accepted")
        } catch let error as ConfigurationError {
            #expect(error.description.contains("it applied entries up to 3 but the snapshot at 10"))
        }
    }

    @Test func idsMatchEtcdsForTheSameFlags() throws {
        let cluster = try ClusterConfiguration(initialCluster: "default=http://localhost:2380", token: "etcd-cluster")
        // etcd's well-known IDs for its default single-member configuration.
        #expect(cluster.members.map(\.id) == [0x8e9e_05c5_2164_694d])
        #expect(cluster.id == 0xcdf8_1819_4e3a_8c32)
        #expect(throws: ConfigurationError.self) { try ClusterConfiguration(initialCluster: "nonsense", token: "t") }
    }
}
