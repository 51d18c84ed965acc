import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import Synchronization
import TestSupport
import Testing

/// Collects a watch stream's responses in the background, as short strings.
final class WatchTranscript: Sendable {
    private final class Lines: Sendable {
        let value = Mutex<[String]>([])
        func withLock<T: Sendable>(_ body: (inout [String]) -> T) -> T { value.withLock { body(&$0) } }
    }

    private let lines = Lines()
    private let reader: Task<Void, Never>
    let stream: WatchStream

    init(_ stream: WatchStream) {
        self.stream = stream
        let lines = self.lines
        reader = Task {
            do {
                for try await response in stream {
                    lines.withLock { $0 += WatchTranscript.describe(response) }
                }
            } catch {
                lines.withLock { $0.append("error: \(error)") }
            }
        }
    }

    /// Waits (at most 30 s) until `count` more lines than `seen` arrived, then a little longer
    /// for any extra one; returns the new lines, each watcher's in order, watchers by ID.
    func next(_ count: Int, after seen: inout Int) async throws -> [String] {
        let deadline = ContinuousClock.now + .seconds(30)
        while lines.withLock({ $0.count }) < seen + count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        try await Task.sleep(for: .milliseconds(150))
        let new = lines.withLock { Array($0.dropFirst(seen)) }
        seen += new.count
        // Responses for different watchers may interleave differently; each one's order counts.
        return new.enumerated().sorted { a, b in
            let (idA, idB) = (Self.watcher(of: a.element), Self.watcher(of: b.element))
            return idA == idB ? a.offset < b.offset : idA < idB
        }.map(\.element)
    }

    func close() {
        stream.close()
        reader.cancel()
    }

    private static func watcher(of line: String) -> Int {
        Int(line.split(separator: " ").dropFirst().first ?? "") ?? .max
    }

    /// `created 0 @3`, `events 0 @4: put a=2 (prev 1)`, `canceled 1 @5`, `progress -1 @5`,
    /// `compacted 2 @0: 4`, `refused -1 @3: reason`, `fragment 0 @5: 3 events`.
    static func describe(_ response: Etcdserverpb_WatchResponse) -> [String] {
        let head = "\(response.watchID) @\(response.header.revision)"
        if response.compactRevision != 0 { return ["compacted \(head): \(response.compactRevision)\(response.canceled ? "" : " not canceled")"] }
        if response.created, response.canceled { return ["refused \(head): \(response.cancelReason)"] }
        if response.created { return ["created \(head)"] }
        if response.canceled { return ["canceled \(head)\(response.cancelReason.isEmpty ? "" : ": " + response.cancelReason)"] }
        if response.events.isEmpty { return ["progress \(head)"] }
        if response.fragment { return ["fragment \(head): \(response.events.count) events"] }
        let events = response.events.map { event -> String in
            let key = String(decoding: event.kv.key, as: UTF8.self)
            let previous = event.hasPrevKv ? " (prev \(String(decoding: event.prevKv.value, as: UTF8.self)))" : ""
            switch event.type {
            case .delete: return "del \(key)@\(event.kv.modRevision)\(previous)"
            default:
                let value = event.kv.value.count > 20 ? "<\(event.kv.value.count) bytes>" : String(decoding: event.kv.value, as: UTF8.self)
                return "put \(key)=\(value)@\(event.kv.modRevision) v\(event.kv.version) c\(event.kv.createRevision)\(previous)"
            }
        }
        return ["events \(head): " + events.joined(separator: " ")]
    }
}

/// The Watch service over the wire, driven by the Swift client against swift-etcd and against
/// Debian's etcd: both must give the same transcript.
@Suite("Watch over gRPC", .serialized)
struct WatchTests {
    private func withServer(_ kind: ServerProcess.Kind, arguments: [String] = [], _ body: (EtcdClient) async throws -> Void)
        async throws
    {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("watch-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try await ServerProcess(dataDirectory: directory, kind: kind)
        try await server.start(arguments: arguments)
        defer { server.kill9() }
        let client = try EtcdClient(endpoints: ["http://127.0.0.1:\(server.port)"])
        do {
            try await body(client)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
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

}
