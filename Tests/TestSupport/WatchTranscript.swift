import EtcdClient
import EtcdProto
import Foundation
import Locking
import Synchronization

/// Collects a watch stream's responses in the background: as received, and as short lines
/// for exact comparisons.
public final class WatchTranscript: Sendable {
    private final class Received: Sendable {
        let state = Locked<(responses: [Etcdserverpb_WatchResponse], lines: [String], end: String?)>(([], [], nil))
    }

    private let received = Received()
    private let reader: Task<Void, Never>
    public let stream: WatchStream

    public init(_ stream: WatchStream) {
        self.stream = stream
        let received = self.received
        reader = Task {
            do {
                for try await response in stream {
                    received.state.withLock {
                        $0.responses.append(response)
                        $0.lines += WatchTranscript.describe(response)
                    }
                }
                received.state.withLock { $0.end = "ended" }
            } catch {
                received.state.withLock {
                    $0.lines.append("error: \(error)")
                    $0.end = "\(error)"
                }
            }
        }
    }

    /// Every response so far.
    public var responses: [Etcdserverpb_WatchResponse] { received.state.withLock { $0.responses } }

    /// Every event so far, in order.
    public var events: [Mvccpb_Event] { responses.flatMap(\.events) }

    /// How the stream ended (its error), nil while it is open.
    public var end: String? { received.state.withLock { $0.end } }

    /// Waits at most `limit` for `condition` to hold; returns whether it did.
    @discardableResult
    public func wait(within limit: Duration = .seconds(30), until condition: (WatchTranscript) -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while !condition(self) {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// Waits (at most 30 s) until `count` more lines than `seen` arrived, then a little longer
    /// for any extra one; returns the new lines, each watcher's in order, watchers by ID.
    public func next(_ count: Int, after seen: inout Int) async throws -> [String] {
        let target = seen + count
        try await wait { $0.received.state.withLock { $0.lines.count } >= target }
        try await Task.sleep(for: .milliseconds(150))
        let new = received.state.withLock { [seen] in Array($0.lines.dropFirst(seen)) }
        seen += new.count
        // Responses for different watchers may interleave differently; each one's order counts.
        return new.enumerated().sorted { a, b in
            let (idA, idB) = (Self.watcher(of: a.element), Self.watcher(of: b.element))
            return idA == idB ? a.offset < b.offset : idA < idB
        }.map(\.element)
    }

    public func close() {
        stream.close()
        reader.cancel()
    }

    private static func watcher(of line: String) -> Int {
        Int(line.split(separator: " ").dropFirst().first ?? "") ?? .max
    }

    /// `created 0 @3`, `events 0 @4: put a=2 (prev 1)`, `canceled 1 @5`, `progress -1 @5`,
    /// `compacted 2 @0: 4`, `refused -1 @3: reason`, `fragment 0 @5: 3 events`.
    public static func describe(_ response: Etcdserverpb_WatchResponse) -> [String] {
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

