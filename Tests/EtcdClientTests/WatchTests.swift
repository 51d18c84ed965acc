import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import Synchronization
import TestSupport
import Testing

/// The Watch service over the wire, driven by the Swift client against swift-etcd and against
/// Debian's etcd: both must give the same transcript.
@Suite("Watch over gRPC", .server, .serialized)
struct WatchTests {
    private func withServer(_ kind: ServerProcess.Kind, arguments: [String] = [], _ body: (EtcdClient) async throws -> Void)
        async throws
    {
        try await ServerProcess.withFreshServer(kind, arguments: arguments) { _, client in try await body(client) }
    }

    private func create(
        _ key: String, _ end: String = "", start: Int64 = 0, id: Int64 = 0, prevKV: Bool = false,
        filters: [Etcdserverpb_WatchCreateRequest.FilterType] = [], fragment: Bool = false
    ) -> Etcdserverpb_WatchCreateRequest {
        .with {
            $0.key = Data(key.utf8)
            $0.rangeEnd = Data(end.utf8)
            $0.startRevision = start
            $0.watchID = id
            $0.prevKv = prevKV
            $0.filters = filters
            $0.fragment = fragment
        }
    }

    @Test(arguments: EtcdClientTests.kinds)
    func aStreamOfManyWatchersAnswersAsEtcdDoes(kind: ServerProcess.Kind) async throws {
        try await withServer(kind) { client in
            try await client.put("a", "1")
            try await client.put("b", "1")
            let watch = WatchTranscript(try await client.watchStream())
            defer { watch.close() }
            var seen = 0
            try await watch.stream.create(create("a", start: 1, prevKV: true))
            #expect(try await watch.next(2, after: &seen) == ["created 0 @3", "events 0 @3: put a=1@2 v1 c2"])
            try await watch.stream.create(create("a", "c"))
            try await watch.stream.create(create("b", id: 7, filters: [.noput]))
            try await watch.stream.create(create("b", id: 7))
            try await watch.stream.create(create("b", "a"))
            #expect(try await watch.next(4, after: &seen) == [
                "refused -1 @3: mvcc: duplicate watch ID provided on the WatchStream",
                "refused -1 @3: mvcc: watcher range is empty",
                "created 1 @3", "created 7 @3",
            ])

            try await client.put("a", "2")
            #expect(try await watch.next(2, after: &seen) == [
                "events 0 @4: put a=2@4 v2 c2 (prev 1)", "events 1 @4: put a=2@4 v2 c2",
            ])
            // A transaction's events reach each watcher in one response.
            _ = try await client.txn(.with {
                $0.success = [
                    .with { $0.requestPut = .with { $0.key = Data("a".utf8); $0.value = Data("3".utf8) } },
                    .with { $0.requestDeleteRange = .with { $0.key = Data("b".utf8) } },
                ]
            })
            #expect(try await watch.next(3, after: &seen) == [
                "events 0 @5: put a=3@5 v3 c2 (prev 2)", "events 1 @5: put a=3@5 v3 c2 del b@5", "events 7 @5: del b@5",
            ])
            try await watch.stream.requestProgress()
            #expect(try await watch.next(1, after: &seen) == ["progress -1 @5"])
            try await watch.stream.cancel(watchID: 1)
            try await watch.stream.cancel(watchID: 99)
            #expect(try await watch.next(1, after: &seen) == ["canceled 1 @5"])

            // History before a compaction is gone; a watch from exactly the compaction revision is served.
            _ = try await client.compact(revision: 4)
            try await watch.stream.create(create("a", start: 3))
            #expect(try await watch.next(2, after: &seen) == ["created 2 @5", "compacted 2 @0: 4"])
            try await watch.stream.create(create("a", start: 4))
            #expect(try await watch.next(2, after: &seen) == ["created 3 @5", "events 3 @5: put a=2@4 v2 c2 put a=3@5 v3 c2"])
        }
    }

    @Test(arguments: EtcdClientTests.kinds)
    func largeHistoriesComeInFragmentsForWatchersThatAskForThem(kind: ServerProcess.Kind) async throws {
        // etcd fragments at --max-request-bytes plus 512 KiB of gRPC overhead.
        try await withServer(kind, arguments: ["--max-request-bytes", "65536"]) { client in
            let value = Data(repeating: UInt8(ascii: "x"), count: 60_000)
            for index in 0..<12 { try await client.put(Data("big\(index)".utf8), value) }
            let watch = WatchTranscript(try await client.watchStream())
            defer { watch.close() }
            var seen = 0
            try await watch.stream.create(create("big", "bih", start: 1, fragment: true))
            let fragmented = try await watch.next(3, after: &seen)
            try await watch.stream.create(create("big", "bih", start: 1))
            let whole = try await watch.next(2, after: &seen)
            #expect(fragmented == ["created 0 @13", "fragment 0 @13: 9 events", "events 0 @13: " + Self.bigEvents(9..<12)])
            #expect(whole == ["created 1 @13", "events 1 @13: " + Self.bigEvents(0..<12)])
        }
    }

    private static func bigEvents(_ indices: Range<Int>) -> String {
        indices.map { "put big\($0)=<60000 bytes>@\($0 + 2) v1 c\($0 + 2)" }.joined(separator: " ")
    }


    @Test(arguments: EtcdClientTests.kinds)
    func idleWatchersThatAskGetProgressAtTheConfiguredInterval(kind: ServerProcess.Kind) async throws {
        try await withServer(kind, arguments: ["--experimental-watch-progress-notify-interval", "200ms"]) { client in
            let watch = WatchTranscript(try await client.watch(.with {
                $0.key = Data("p".utf8)
                $0.progressNotify = true
            }))
            defer { watch.close() }
            #expect(try await watch.wait { $0.responses.count >= 3 })
            #expect(watch.responses.prefix(3).flatMap(WatchTranscript.describe) == ["created 0 @1", "progress 0 @1", "progress 0 @1"])
        }
    }

    @Test func aProgressIntervalThatIsNotADurationIsRefused() async throws {
        for value in ["0", "10", "-1s", "soon"] {
            let (status, output) = try await runTool(ServerProcess.binary, ["--experimental-watch-progress-notify-interval=\(value)"])
            #expect(status != 0, "\(value)")
            #expect(output.contains("--experimental-watch-progress-notify-interval: '\(value)' is not a positive duration"), "\(output)")
        }
    }

    /// A client that stops reading (the real etcdctl, paused) while 47 MiB of events are due to
    /// it: the other watchers get every event meanwhile, and the paused one gets every event
    /// once it reads again. (What the server holds for it meanwhile is bounded by its stream's
    /// backlog: `WatchHubTests` checks the bound, `scripts/bench-compare.sh` measures memory.)
    @Test func aWatcherThatStopsReadingDelaysNoOneAndLosesNothing() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("watch-paused-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try await ServerProcess(dataDirectory: directory.appendingPathComponent("data"))
        try await server.start()
        defer { server.kill9() }
        let client = try EtcdClient(endpoints: ["http://127.0.0.1:\(server.port)"])
        defer { Task { await client.close() } }

        let output = directory.appendingPathComponent("etcdctl.out")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let etcdctl = Process()
        etcdctl.executableURL = URL(fileURLWithPath: "/usr/bin/etcdctl")
        // From revision 2, the first put: it reaches etcdctl however late its watch starts.
        etcdctl.arguments = ["--endpoints", "127.0.0.1:\(server.port)", "watch", "--prefix", "p/", "--rev", "2"]
        etcdctl.environment = ["ETCDCTL_API": "3"]
        etcdctl.standardOutput = try FileHandle(forWritingTo: output)
        etcdctl.standardError = FileHandle.nullDevice
        try ChildProcesses.launch(etcdctl)
        defer {
            kill(etcdctl.processIdentifier, SIGKILL)
            ChildProcesses.waitForExit(etcdctl)
        }
        func putsSeenByEtcdctl() -> Int {
            let text = (try? String(contentsOf: output, encoding: .isoLatin1)) ?? ""
            return text.split(separator: "\n").count { $0 == "PUT" }
        }
        // Once etcdctl shows the first event its watch is in place: pause it.
        try await client.put("p/first", "x")
        let started = ContinuousClock.now
        while putsSeenByEtcdctl() < 1, ContinuousClock.now < started + .seconds(30) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(putsSeenByEtcdctl() == 1)
        kill(etcdctl.processIdentifier, SIGSTOP)

        let fast = WatchTranscript(try await client.watch(.with {
            $0.key = Data("p/".utf8)
            $0.rangeEnd = Data("p0".utf8)
        }))
        defer { fast.close() }
        #expect(try await fast.wait { $0.responses.count == 1 })
        let puts = 3000
        let value = Data(repeating: UInt8(ascii: "v"), count: 16 * 1024)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for index in stride(from: worker, to: puts, by: 8) { try await client.put(Data("p/\(index)".utf8), value) }
                }
            }
            try await group.waitForAll()
        }
        // The reading watcher got everything while the other one was paused.
        #expect(try await fast.wait { $0.events.count == puts })

        kill(etcdctl.processIdentifier, SIGCONT)
        let resumed = ContinuousClock.now
        while putsSeenByEtcdctl() < puts + 1, ContinuousClock.now < resumed + .seconds(60) {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(putsSeenByEtcdctl() == puts + 1)
    }
}
