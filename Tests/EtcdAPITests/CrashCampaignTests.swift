import EtcdProto
import Foundation
import GRPCWire
import Locking
import NIOCore
import SwiftProtobuf
import Synchronization
import TestSupport
import Testing

/// Kills the real server with SIGKILL at random instants under concurrent puts and txns, with
/// snapshots, segment rollover and purges happening all the time, and checks after every restart
/// that nothing acknowledged was lost or changed. `CRASH_KILLS` sets the number of kills (20 by
/// default); `CRASH_SEED` replays a run. `scripts/crash-campaign.sh N` runs a long campaign.
@Suite("Crash campaign", .cpuBound, .serialized)
struct CrashCampaignTests {
    /// Small snapshot interval and segments, few files kept: kills land during snapshots and purges too.
    static let arguments = [
        "--snapshot-count", "64", "--wal-segment-bytes", "16384", "--max-wals", "2", "--max-snapshots", "2",
    ]

    @Test func killsAtRandomInstantsLoseNothingAcknowledged() async throws {
        let environment = ProcessInfo.processInfo.environment
        let kills = environment["CRASH_KILLS"].flatMap(Int.init) ?? 20
        let seed = environment["CRASH_SEED"].flatMap(UInt64.init) ?? UInt64(Date().timeIntervalSince1970)
        var random = SeededRandom(seed: seed)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swift-etcd-crash-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try await ServerProcess(dataDirectory: directory)
        let history = History()
        for round in 1...kills {
            try await server.start(arguments: Self.arguments)
            let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.port))
            let killAfter = Duration.milliseconds(Int64(random.next() % 700) + 30)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<8 {
                    group.addTask { await Self.write(connection, round: round, worker: worker, into: history) }
                }
                group.addTask {
                    try await Task.sleep(for: killAfter)
                    server.kill9()
                }
                try await group.waitForAll()
            }
            await connection.close()

            try await server.start(arguments: Self.arguments)
            let check = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.port))
            let problems = try await Self.verify(check, history, round: round, random: &random)
            await check.close()
            try #require(problems.isEmpty, "seed \(seed), kill \(round): \(problems.prefix(5).joined(separator: "; "))")
            server.kill9()
        }
        let total = history.writes.withLock { $0.count }
        print("crash campaign: \(kills) kills, \(total) acknowledged writes all intact (seed \(seed))")
        #expect(total > kills)
    }

    /// One client: puts to its own keys and two-key txns, recording every acknowledged write.
    static func write(_ connection: GRPCClientConnection, round: Int, worker: Int, into history: History) async {
        for n in 0..<100_000 {
            let value = "r\(round)-w\(worker)-\(n)"
            let keys = n % 3 == 2 ? ["t\(worker)-a-\(n % 7)", "t\(worker)-b-\(n % 7)"] : ["k\(worker)-\(n % 50)"]
            do {
                let revision: Int64
                if keys.count == 1 {
                    let request = Etcdserverpb_PutRequest.with { $0.key = Data(keys[0].utf8); $0.value = Data(value.utf8) }
                    revision = try await connection.unary(
                        Etcdserverpb_KVRPCs.put.path, request, timeout: .seconds(5), responseType: Etcdserverpb_PutResponse.self
                    ).header.revision
                } else {
                    let request = Etcdserverpb_TxnRequest.with { txn in
                        txn.compare = [Etcdserverpb_Compare.with { $0.key = Data(keys[0].utf8); $0.target = .version; $0.result = .greater; $0.version = -1 }]
                        txn.success = keys.map { key in
                            Etcdserverpb_RequestOp.with { $0.requestPut = .with { $0.key = Data(key.utf8); $0.value = Data(value.utf8) } }
                        }
                    }
                    let response = try await connection.unary(
                        Etcdserverpb_KVRPCs.txn.path, request, timeout: .seconds(5), responseType: Etcdserverpb_TxnResponse.self)
                    guard response.succeeded else { return }
                    revision = response.header.revision
                }
                history.record(Write(keys: keys, value: value, revision: revision, worker: worker))
            } catch {
                // The server was killed: anything not acknowledged may or may not be there.
                return
            }
        }
    }

    /// What must hold after a restart; each problem found, described.
    static func verify(_ connection: GRPCClientConnection, _ history: History, round: Int, random: inout SeededRandom)
        async throws -> [String]
    {
        var problems: [String] = []
        let writes = history.writes.withLock { $0 }
        // (b) No revision was handed to two different writes; (c) each client saw its revisions increase.
        var owners: [Int64: String] = [:]
        var lastByClient: [String: Int64] = [:]
        for write in writes {
            if let other = owners[write.revision], other != write.value {
                problems.append("revision \(write.revision) acknowledged for both \(other) and \(write.value)")
            }
            owners[write.revision] = write.value
            let client = String(write.value.split(separator: "-").prefix(2).joined(separator: "-"))
            if let last = lastByClient[client], last >= write.revision {
                problems.append("\(client) got revision \(write.revision) after \(last)")
            }
            lastByClient[client] = write.revision
        }
        // (a) Every write of the round just killed, and a sample of older ones, reads back at its revision.
        let recent = writes.filter { $0.value.hasPrefix("r\(round)-") }
        let older = writes.filter { !$0.value.hasPrefix("r\(round)-") }
        var sample = recent
        for _ in 0..<min(100, older.count) { sample.append(older[Int(random.next() % UInt64(older.count))]) }
        for write in sample {
            for key in write.keys {
                let request = Etcdserverpb_RangeRequest.with { $0.key = Data(key.utf8); $0.revision = write.revision }
                let response = try await connection.unary(
                    Etcdserverpb_KVRPCs.range.path, request, timeout: .seconds(10), responseType: Etcdserverpb_RangeResponse.self)
                let found = response.kvs.first
                if found?.modRevision != write.revision || found?.value != Data(write.value.utf8) {
                    problems.append("\(key) = \(write.value) at revision \(write.revision) reads back as \(found.map { String(decoding: $0.value, as: UTF8.self) } ?? "nothing") at \(found?.modRevision ?? 0)")
                }
            }
        }
        // (c) The revision continues from where it was.
        let status = try await connection.unary(
            Etcdserverpb_MaintenanceRPCs.status.path, Etcdserverpb_StatusRequest(), timeout: .seconds(10),
            responseType: Etcdserverpb_StatusResponse.self)
        let newest = writes.map(\.revision).max() ?? 0
        if status.header.revision < newest {
            problems.append("revision went back to \(status.header.revision) after \(newest) was acknowledged")
        }
        return problems
    }

    struct Write: Sendable {
        var keys: [String]
        var value: String
        var revision: Int64
        var worker: Int
    }

    final class History: Sendable {
        let writes = Locked<[Write]>([])

        func record(_ write: Write) {
            writes.withLock { $0.append(write) }
        }
    }
}

/// A full disk must stop the member without losing or corrupting anything acknowledged. Needs a
/// small tmpfs (root); where mounting is not allowed the test says so and passes vacuously.
@Suite("Disk full", .cpuBound, .serialized)
struct DiskFullTests {
    @Test func aFullDiskStopsTheMemberAndLosesNothingAcknowledged() async throws {
        let mountPoint = FileManager.default.temporaryDirectory.appendingPathComponent("swift-etcd-tinyfs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: mountPoint) }
        guard Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=640k", "tmpfs", mountPoint.path]) == 0 else {
            print("disk full: cannot mount a tmpfs here (not root?); skipped")
            return
        }
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("swift-etcd-after-full-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: copy) }
        var acknowledged: [String: Int64] = [:]
        do {
            defer { _ = Self.run("/bin/umount", ["-l", mountPoint.path]) }
            let data = mountPoint.appendingPathComponent("data.etcd")
            let server = try await ServerProcess(dataDirectory: data)
            try await server.start(arguments: ["--wal-segment-bytes", "65536", "--snapshot-count", "100"])
            let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.port))
            let value = Data(repeating: 0x78, count: 2000)
            for n in 0..<1000 {
                let key = "key\(n)"
                let request = Etcdserverpb_PutRequest.with { $0.key = Data(key.utf8); $0.value = value }
                guard let response = try? await connection.unary(
                    Etcdserverpb_KVRPCs.put.path, request, timeout: .seconds(5), responseType: Etcdserverpb_PutResponse.self)
                else { break }
                acknowledged[key] = response.header.revision
            }
            await connection.close()
            // The member stopped itself (fail-stop) rather than answer from a state it cannot persist.
            #expect(acknowledged.count > 5 && acknowledged.count < 1000)
            server.kill9()
            try FileManager.default.copyItem(at: data, to: copy)
        }
        // On a disk with room, the same data directory opens with every acknowledged write.
        let server = try await ServerProcess(dataDirectory: copy)
        try await server.start()
        let check = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.port))
        for (key, revision) in acknowledged {
            let response = try await check.unary(
                Etcdserverpb_KVRPCs.range.path, Etcdserverpb_RangeRequest.with { $0.key = Data(key.utf8) }, timeout: .seconds(5),
                responseType: Etcdserverpb_RangeResponse.self)
            #expect(response.kvs.first?.modRevision == revision, "\(key)")
        }
        await check.close()
        server.kill9()
        print("disk full: \(acknowledged.count) writes acknowledged before the disk filled, all present after moving the data")
    }

    private static func run(_ executable: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? ChildProcesses.launch(process)) != nil else { return -1 }
        return ChildProcesses.waitForExit(process) ?? -1
    }
}
