import Backend
import Foundation
import Synchronization
import Testing

@testable import MVCC

@Suite("Watch hub")
struct WatchHubTests {
    @Test func liveEventsReachWatchersOfTheirKeysRangesAndPrefixes() throws {
        let watched = try WatchedStore()
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("a"))), on: sink)
        watched.hub.watch(WatchRequest(range: range("a", "c")), on: sink)
        watched.hub.watch(WatchRequest(range: KeyRange(key: bytes("b"), end: [0])), on: sink)
        try watched.put("a", "1")
        try watched.put("b", "2")
        try watched.put("c", "3")
        try watched.delete("a")
        try watched.write {
            $0.put(bytes("a"), value: bytes("4"), lease: 0)
            $0.put(bytes("z"), value: bytes("5"), lease: 0)
        }
        let events = describe(sink.readAll(from: watched.hub))
        #expect(events.filter { $0.hasPrefix("created") } == ["created 0 @1", "created 1 @1", "created 2 @1"])
        #expect(events.filter { $0.hasPrefix("events 0") } == [
            "events 0 @2: put a=1@2", "events 0 @5: del a@5", "events 0 @6: put a=4@6",
        ])
        #expect(events.filter { $0.hasPrefix("events 1") } == [
            "events 1 @2: put a=1@2", "events 1 @3: put b=2@3", "events 1 @5: del a@5", "events 1 @6: put a=4@6",
        ])
        #expect(events.filter { $0.hasPrefix("events 2") } == [
            "events 2 @3: put b=2@3", "events 2 @4: put c=3@4", "events 2 @6: put z=5@6",
        ])
    }

    @Test func recordsCarryTheirVersionsAndDeletesAreTombstones() throws {
        let watched = try WatchedStore()
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("k"))), on: sink)
        try watched.put("k", "1")
        try watched.put("k", "2")
        try watched.delete("k")
        let changes = sink.readAll(from: watched.hub).flatMap { delivery -> [Change] in
            if case .events(let changes) = delivery.kind { changes } else { [] }
        }
        #expect(changes.map(\.kv) == [
            KeyValue(key: bytes("k"), value: bytes("1"), createRevision: 2, modRevision: 2, version: 1, lease: 0),
            KeyValue(key: bytes("k"), value: bytes("2"), createRevision: 2, modRevision: 3, version: 2, lease: 0),
            KeyValue(key: bytes("k"), value: [], createRevision: 0, modRevision: 4, version: 0, lease: 0),
        ])
        #expect(changes.map(\.kind) == [.put, .put, .delete])
    }

    @Test func filtersDropPutsOrDeletesAndEmptyResultsSendNothing() throws {
        let watched = try WatchedStore()
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("k")), skipsPuts: true), on: sink)
        watched.hub.watch(WatchRequest(range: .single(bytes("k")), skipsDeletes: true), on: sink)
        try watched.put("k", "1")
        try watched.delete("k")
        #expect(describe(sink.readAll(from: watched.hub)) == [
            "created 0 @1", "created 1 @1", "events 1 @2: put k=1@2", "events 0 @3: del k@3",
        ])
    }

    @Test func aPastStartReplaysHistoryThenGoesLiveWithoutRepeats() throws {
        let watched = try WatchedStore()
        for value in 1...5 { try watched.put("k", "\(value)") }
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("k")), startRevision: 4), on: sink)
        watched.hub.settle()
        try watched.put("k", "6")
        #expect(describe(sink.readAll(from: watched.hub)) == [
            "created 0 @6", "events 0 @6: put k=3@4 put k=4@5 put k=5@6", "events 0 @7: put k=6@7",
        ])
    }

    @Test func aFutureStartWaitsForItsRevision() throws {
        let watched = try WatchedStore()
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("k")), startRevision: 4), on: sink)
        for value in 1...4 { try watched.put("k", "\(value)") }
        #expect(describe(sink.readAll(from: watched.hub)) == [
            "created 0 @1", "events 0 @4: put k=3@4", "events 0 @5: put k=4@5",
        ])
    }

    @Test func idsAreAutomaticFromZeroOrChosenAndDuplicatesAndEmptyRangesAreRefused() throws {
        let watched = try WatchedStore()
        let sink = TestSink()
        let hub = watched.hub
        #expect(hub.watch(WatchRequest(range: .single(bytes("a")), watchID: 1), on: sink) == 1)
        #expect(hub.watch(WatchRequest(range: .single(bytes("a"))), on: sink) == 0)
        // The next automatic ID skips one in use.
        #expect(hub.watch(WatchRequest(range: .single(bytes("a"))), on: sink) == 2)
        #expect(hub.watch(WatchRequest(range: .single(bytes("a")), watchID: 2), on: sink) == nil)
        #expect(hub.watch(WatchRequest(range: range("b", "a")), on: sink) == nil)
        #expect(hub.watch(WatchRequest(range: range("a", "a")), on: sink) == nil)
        #expect(hub.watch(WatchRequest(range: .single(bytes("a")), startRevision: -1), on: sink) == nil)
        // IDs are per stream.
        let other = TestSink()
        #expect(hub.watch(WatchRequest(range: .single(bytes("a")), watchID: 1), on: other) == 1)
        #expect(describe(sink.readAll(from: hub)) == [
            "created 1 @1", "created 0 @1", "created 2 @1",
            "refused -1 @1: mvcc: duplicate watch ID provided on the WatchStream",
            "refused -1 @1: mvcc: watcher range is empty", "refused -1 @1: mvcc: watcher range is empty",
            "refused -1 @1: etcdserver: mvcc: required revision has been compacted",
        ])
    }

    @Test func aStartBeforeTheCompactionIsCancelledWithItAndOneAtItIsServed() throws {
        let watched = try WatchedStore()
        for value in 1...5 { try watched.put("k", "\(value)") }
        try watched.compact(4)
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("k")), startRevision: 3), on: sink)
        watched.hub.watch(WatchRequest(range: .single(bytes("k")), startRevision: 4), on: sink)
        watched.hub.settle()
        try watched.put("k", "6")
        let seen = describe(sink.readAll(from: watched.hub))
        #expect(seen.filter { $0.contains(" 0 ") } == ["created 0 @6", "compacted 0 @0: 4"])
        #expect(seen.filter { $0.contains(" 1 ") } == [
            "created 1 @6", "events 1 @6: put k=3@4 put k=4@5 put k=5@6", "events 1 @7: put k=6@7",
        ])
    }

    @Test func aWatcherBehindWhenHistoryIsCompactedIsCancelled() throws {
        let watched = try WatchedStore()
        let sink = TestSink(capacity: 1)
        watched.hub.watch(WatchRequest(range: .single(bytes("k"))), on: sink)
        for value in 1...4 { try watched.put("k", "\(value)") }
        // The sink held one batch and refused the rest: the watcher is behind from revision 3.
        try watched.compact(5)
        #expect(describe(sink.readAll(from: watched.hub)) == ["created 0 @1", "events 0 @2: put k=1@2", "compacted 0 @0: 5"])
    }

    @Test func cancellingStopsEventsAndUnknownIDsAreIgnored() throws {
        let watched = try WatchedStore()
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("k"))), on: sink)
        try watched.put("k", "1")
        watched.hub.cancel(0, on: sink)
        watched.hub.cancel(7, on: sink)
        try watched.put("k", "2")
        #expect(describe(sink.readAll(from: watched.hub)) == ["created 0 @1", "events 0 @2: put k=1@2", "canceled 0 @2"])
    }

    @Test func aProgressRequestIsAnsweredOnceEveryWatcherIsSynced() throws {
        let watched = try WatchedStore()
        let hub = watched.hub
        let empty = TestSink()
        hub.requestProgress(on: empty)
        #expect(describe(empty.readAll(from: hub)) == [])

        for value in 1...3 { try watched.put("k", "\(value)") }
        let sink = TestSink(capacity: 1)
        hub.watch(WatchRequest(range: .single(bytes("k"))), on: sink)
        hub.watch(WatchRequest(range: .single(bytes("k")), startRevision: 2), on: sink)
        hub.settle()
        try watched.put("k", "4")
        // The sink holds one batch: both watchers are behind with the new put, so the answer waits.
        hub.requestProgress(on: sink)
        hub.settle()
        #expect(!describe(sink.read(from: hub)).contains { $0.hasPrefix("progress") })
        let seen = describe(sink.readAll(from: hub))
        #expect(seen.last == "progress -1 @5")
        // Synced: answered at once.
        hub.requestProgress(on: sink)
        #expect(describe(sink.read(from: hub)) == ["progress -1 @5"])
    }

    /// The hub tells a sink to start writing only after it released its lock: the sink here
    /// calls back into the hub at that moment, which would deadlock under the lock.
    @Test(.timeLimit(.minutes(1))) func sinksHearOfDeliveriesAfterTheLockIsReleased() throws {
        let watched = try WatchedStore()
        let sink = TestSink()
        let hub = watched.hub
        sink.onNotice { hub.sinkHasRoom(sink) }
        hub.watch(WatchRequest(range: .single(bytes("a"))), on: sink)
        #expect(sink.notices == 1)
        try watched.put("a", "1")
        try watched.put("b", "1")
        #expect(sink.notices == 2)
        #expect(describe(sink.read(from: hub)) == ["created 0 @1", "events 0 @2: put a=1@2"])
    }

    @Test func idleWatchersThatAskedGetPeriodicProgress() throws {
        var limits = WatchHub.Limits()
        limits.progressInterval = .seconds(600)
        let timer = ManualWatchTimer()
        let watched = try WatchedStore(limits: limits, timer: timer)
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("a")), progressNotify: true), on: sink)
        watched.hub.watch(WatchRequest(range: .single(bytes("b"))), on: sink)
        watched.hub.watch(WatchRequest(range: .single(bytes("c")), startRevision: 100, progressNotify: true), on: sink)
        try watched.put("x", "1")
        func progress() -> [String] { describe(sink.read(from: watched.hub)).filter { $0.hasPrefix("progress") } }
        _ = progress()
        timer.advance(by: .seconds(599))
        #expect(progress().isEmpty)
        timer.advance(by: .seconds(1))
        // Only the idle watcher that asked, never the one whose start is in the future.
        #expect(progress() == ["progress 0 @2"])
        timer.advance(by: .seconds(600))
        #expect(progress() == ["progress 0 @2"])
        // A watcher that received an event in the interval is not idle.
        try watched.put("a", "2")
        _ = sink.read(from: watched.hub)
        timer.advance(by: .seconds(600))
        #expect(progress().isEmpty)
    }

    @Test func aSlowStreamFallsBehindWithinItsBoundAndCatchesUpCompletely() throws {
        var limits = WatchHub.Limits()
        limits.catchUpChanges = 3
        limits.recentChanges = 4
        let watched = try WatchedStore(limits: limits)
        let slow = TestSink(capacity: 2)
        let fast = TestSink()
        watched.hub.watch(WatchRequest(range: KeyRange(key: [0], end: [0])), on: slow)
        watched.hub.watch(WatchRequest(range: KeyRange(key: [0], end: [0])), on: fast)
        for value in 1...40 { try watched.put("k\(value % 3)", "\(value)") }
        #expect(slow.mostUnreadEvents == 2)
        let expected = (1...40).map { "put k\($0 % 3)=\($0)@\($0 + 1)" }
        func events(_ deliveries: [WatchDelivery]) -> [String] {
            deliveries.flatMap { delivery -> [String] in
                if case .events(let changes) = delivery.kind { changes.map { describe([$0]) } } else { [] }
            }
        }
        #expect(events(fast.readAll(from: watched.hub)) == expected)
        #expect(events(slow.readAll(from: watched.hub)) == expected)
        #expect(slow.mostUnreadEvents <= 2)
    }

    @Test func aWatcherCatchingUpReadsOnlyWhatTheBackendCommittedAndLosesNothing() throws {
        var limits = WatchHub.Limits()
        limits.catchUpChanges = 2
        limits.recentChanges = 1
        let watched = try WatchedStore(limits: limits)
        try watched.put("a", "1")
        // Three more batches applied and announced whose commits lag (as a member's do).
        var lagging: [[Change]] = []
        for value in 2...4 {
            let (_, changes) = watched.store.write(reader: watched.backend) { $0.put(bytes("a"), value: bytes("\(value)"), lease: 0) }
            watched.hub.notify(changes, store: watched.store)
            lagging.append(changes)
        }
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("a")), startRevision: 2), on: sink)
        func events(_ deliveries: [WatchDelivery]) -> [String] {
            deliveries.flatMap { delivery -> [String] in
                if case .events(let changes) = delivery.kind { changes.map { describe([$0]) } } else { [] }
            }
        }
        // What the backend holds; the rest (not all kept in memory) waits for the commits.
        #expect(events(sink.readAll(from: watched.hub)) == ["put a=1@2"])
        try watched.backend.commit(lagging.flatMap { $0 }, meta: [.revision: watched.store.revision])
        watched.hub.committed(through: watched.store.revision)
        #expect(events(sink.readAll(from: watched.hub)) == ["put a=1@2", "put a=2@3", "put a=3@4", "put a=4@5"])
        // Synced again: the next put comes straight from the hub.
        try watched.put("a", "5")
        #expect(events(sink.readAll(from: watched.hub)).last == "put a=5@6")
    }

    /// A catch-up that reads the backend through its last commit and the newest changes from
    /// memory reports the store's revision, never one below the events it carries (a header
    /// at 12 with an event at 13 was seen in CI).
    @Test func aCatchUpFinishedFromMemoryReportsTheStoresRevision() throws {
        let watched = try WatchedStore()
        try watched.put("a", "1")
        // Applied and announced, its commit not yet done.
        let (_, changes) = watched.store.write(reader: watched.backend) { $0.put(bytes("a"), value: bytes("2"), lease: 0) }
        watched.hub.notify(changes, store: watched.store)
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("a")), startRevision: 1), on: sink)
        #expect(describe(sink.readAll(from: watched.hub)) == ["created 0 @3", "events 0 @3: put a=1@2 put a=2@3"])
    }

    @Test func aTransactionsEventsStayInOneResponseWhenCatchingUpInSmallBatches() throws {
        var limits = WatchHub.Limits()
        limits.catchUpChanges = 2
        limits.recentChanges = 1
        let watched = try WatchedStore(limits: limits)
        try watched.write {
            for key in ["a", "b", "c", "d"] { $0.put(bytes(key), value: bytes("1"), lease: 0) }
        }
        try watched.put("e", "2")
        try watched.put("f", "3")
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: KeyRange(key: [0], end: [0]), startRevision: 1), on: sink)
        #expect(describe(sink.readAll(from: watched.hub)) == [
            "created 0 @4", "events 0 @4: put a=1@2 put b=1@2 put c=1@2 put d=1@2", "events 0 @4: put e=2@3 put f=3@4",
        ])
    }

    @Test func replacingTheBackendSendsWatchersWhatTheyMissed() throws {
        let watched = try WatchedStore()
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("k"))), on: sink)
        try watched.put("k", "1")
        // A snapshot from the leader brings revisions the hub was never told about.
        watched.hub.replacingBackend()
        try watched.write(notify: false) { $0.put(bytes("k"), value: bytes("2"), lease: 0) }
        try watched.write(notify: false) { $0.put(bytes("k"), value: bytes("3"), lease: 0) }
        watched.hub.replacedBackend(store: watched.store)
        try watched.put("k", "4")
        let events = describe(sink.readAll(from: watched.hub)).filter { $0.hasPrefix("events") }
        #expect(events.map { $0.split(separator: ":", maxSplits: 1)[1] }.joined()
            == " put k=1@2 put k=2@3 put k=3@4 put k=4@5")
    }

    @Test func closingAStreamForgetsItsWatchers() throws {
        let watched = try WatchedStore()
        let sink = TestSink()
        watched.hub.watch(WatchRequest(range: .single(bytes("k"))), on: sink)
        watched.hub.close(sink)
        try watched.put("k", "1")
        #expect(describe(sink.readAll(from: watched.hub)) == ["created 0 @1"])
    }
}
