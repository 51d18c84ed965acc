import Backend
import Foundation
import TestSupport
import Testing

@testable import MVCC

/// Random interleavings of puts, deletes, transactions and compactions with many watchers
/// starting at random revisions on slow and fast streams, some cancelled: every watcher's
/// events must be exactly the matching history from its start, in order, each revision whole
/// in one delivery (or a prefix of it, for a watcher cancelled or compacted away).
@Suite("Watch guarantees under random schedules", .cpuBound)
struct WatchPropertyTests {
    /// `put k1=v3@4 del k2@5 ...`
    private func describe(_ changes: [Change]) -> String {
        changes.map { change in
            let key = String(decoding: change.kv.key, as: UTF8.self)
            let value = String(decoding: change.kv.value, as: UTF8.self)
            return change.kind == .put ? "put \(key)=\(value)@\(change.revision)" : "del \(key)@\(change.revision)"
        }.joined(separator: " ")
    }

    private struct Created {
        let sink: Int
        let id: Int64
        let request: WatchRequest
    }

    @Test("watchers see ordered, unique, gap-free, whole revisions", arguments: 0..<40)
    func watchersSeeExactlyTheirHistory(seed: Int) async throws {
        var random = SeededRandom(seed: UInt64(seed) &* 7919 &+ 17)
        var limits = WatchHub.Limits()
        limits.catchUpChanges = Int.random(in: 1...8, using: &random)
        // Small byte bounds cut catch-up deliveries short (a change here counts about 55 bytes).
        limits.catchUpBytes = Bool.random(using: &random) ? Int.random(in: 50...400, using: &random) : 1 << 20
        limits.recentChanges = Int.random(in: 0...12, using: &random)
        limits.watchersPerPass = Int.random(in: 1...4, using: &random)
        let watched = try WatchedStore(limits: limits)
        let hub = watched.hub
        let sinks = (0..<4).map { index in TestSink(capacity: index == 0 ? .max : Int.random(in: 1...3, using: &random)) }
        let keys = (0..<6).map { Array("k\($0)".utf8) }
        var history: [Change] = []
        var created: [Created] = []
        var cancelled: Set<String> = []

        func randomRange() -> KeyRange {
            let first = Int.random(in: 0..<keys.count, using: &random)
            switch Int.random(in: 0..<4, using: &random) {
            case 0: return .single(keys[first])
            case 1: return KeyRange(key: keys[first], end: Array("k\(Int.random(in: first + 1...keys.count, using: &random))".utf8))
            case 2: return KeyRange(key: keys[first], end: [0])
            default: return KeyRange(key: [0], end: [0])
            }
        }

        for step in 0..<400 {
            if step % 50 == 0 { await Task.yield() }
            let roll = Int.random(in: 0..<100, using: &random)
            switch roll {
            case 0..<35:
                let key = keys.randomElement(using: &random)!
                history += try watched.write { $0.put(key, value: Array("v\(step)".utf8), lease: 0) }
            case 35..<45:
                let range = randomRange()
                history += try watched.write { _ = try $0.delete(range.key, end: range.end) }
            case 45..<55:
                let chosen = keys.shuffled(using: &random).prefix(Int.random(in: 2...4, using: &random))
                history += try watched.write { writer in
                    for (index, key) in chosen.enumerated() {
                        if index == 0, Bool.random(using: &random) {
                            _ = try writer.delete(key, end: nil)
                        } else {
                            writer.put(key, value: Array("t\(step)".utf8), lease: 0)
                        }
                    }
                }
            case 55..<58:
                let floor = max(watched.store.compactedRevision + 1, 1)
                if floor <= watched.store.revision {
                    try watched.compact(Int64.random(in: floor...watched.store.revision, using: &random))
                }
            case 58..<75:
                let sink = Int.random(in: 0..<sinks.count, using: &random)
                let current = watched.store.revision
                let start: Int64 = Bool.random(using: &random) ? 0 : Int64.random(in: 1...(current + 3), using: &random)
                let request = WatchRequest(
                    range: randomRange(), startRevision: start, skipsPuts: Int.random(in: 0..<10, using: &random) == 0,
                    skipsDeletes: Int.random(in: 0..<10, using: &random) == 0)
                if let id = hub.watch(request, on: sinks[sink]) {
                    created.append(Created(sink: sink, id: id, request: request))
                }
            case 75..<78:
                if let victim = created.randomElement(using: &random) {
                    hub.cancel(victim.id, on: sinks[victim.sink])
                    cancelled.insert("\(victim.sink)/\(victim.id)")
                }
            case 78..<95:
                sinks.randomElement(using: &random)!.read(from: hub)
            default:
                hub.settle()
            }
        }
        for sink in sinks { _ = sink.readAll(from: hub) }

        var checked = 0
        for watcher in created {
            let deliveries = sinks[watcher.sink].readAll(from: hub).filter { $0.watchID == watcher.id }
            // IDs are not reused on a stream here, so everything for this ID is this watcher's.
            guard case .created = deliveries.first?.kind else {
                Issue.record("seed \(seed): watcher \(watcher.sink)/\(watcher.id) has no created first")
                continue
            }
            let createdAt = deliveries[0].revision
            let start = watcher.request.startRevision == 0 ? createdAt + 1 : watcher.request.startRevision
            let expected = history.filter { change in
                change.revision.main >= start && watcher.request.range.contains(change.kv.key)
                    && !(change.kind == .put && watcher.request.skipsPuts)
                    && !(change.kind == .delete && watcher.request.skipsDeletes)
            }
            var received: [Change] = []
            var ended = false
            for delivery in deliveries.dropFirst() {
                #expect(!ended, "seed \(seed): delivery after the end for \(watcher.sink)/\(watcher.id)")
                switch delivery.kind {
                case .events(let changes):
                    // Its header never reports a revision older than the events it carries.
                    #expect(delivery.revision >= changes.last!.revision.main,
                            "seed \(seed): header @\(delivery.revision) below its events for \(watcher.sink)/\(watcher.id)")
                    // Atomic: each revision in the delivery is there whole.
                    for main in Set(changes.map(\.revision.main)) {
                        #expect(
                            describe(changes.filter { $0.revision.main == main })
                                == describe(expected.filter { $0.revision.main == main }),
                            "seed \(seed): revision \(main) split for \(watcher.sink)/\(watcher.id)")
                    }
                    received += changes
                case .canceled, .compacted:
                    ended = true
                default:
                    Issue.record("seed \(seed): unexpected \(delivery.kind) for \(watcher.sink)/\(watcher.id)")
                }
            }
            if ended || cancelled.contains("\(watcher.sink)/\(watcher.id)") {
                // Ordered, unique, no gaps: a prefix of the history.
                #expect(describe(Array(expected.prefix(received.count))) == describe(received), "seed \(seed): \(watcher.sink)/\(watcher.id)")
            } else {
                #expect(describe(received) == describe(expected), "seed \(seed): \(watcher.sink)/\(watcher.id) start \(start)")
            }
            checked += 1
        }
        #expect(checked == created.count)
    }
}
