import Backend
import Foundation
import Locking
import Synchronization
import Testing
@testable import MVCC

/// A store, its SQLite backend and its watch hub, written as the member loop writes them:
/// apply, commit to the backend, then tell the hub.
final class WatchedStore {
    var store = KeyValueStore()
    let backend: SQLiteBackend
    let hub: WatchHub
    private let directory: URL

    init(limits: WatchHub.Limits = WatchHub.Limits(), timer: any WatchTimer = DispatchWatchTimer()) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("watch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        backend = try SQLiteBackend(path: directory.appendingPathComponent("backend.sqlite").path, synchronousCommits: false)
        hub = WatchHub(backend: backend, store: store, limits: limits, timer: timer)
    }

    deinit {
        hub.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// One write transaction (one revision when it changes anything).
    @discardableResult
    func write(notify: Bool = true, _ body: (inout KeyValueStore.Writer) throws -> Void) throws -> [Change] {
        let (_, changes) = try store.write(reader: backend, body)
        // As a member: the hub hears of the batch, then of its commit (which may lag).
        if notify { hub.notify(changes, store: store) }
        try backend.commit(changes, meta: [.revision: store.revision])
        if notify { hub.committed(through: store.revision) }
        return changes
    }

    @discardableResult
    func put(_ key: String, _ value: String) throws -> [Change] {
        try write { $0.put(Array(key.utf8), value: Array(value.utf8), lease: 0) }
    }

    @discardableResult
    func delete(_ key: String, end: String? = nil) throws -> [Change] {
        try write { _ = try $0.delete(Array(key.utf8), end: end.map { Array($0.utf8) }) }
    }

    func compact(_ main: Int64) throws {
        let kept = try store.compact(atMain: main)
        hub.compacting(atMain: main)
        try backend.commit([], meta: [.compactedRevision: main], removingAtOrBefore: (main, kept))
        hub.notify([], store: store)
        hub.committed(through: store.revision)
    }
}

/// A client of the hub: a backlog of at most `capacity` event deliveries it has not read.
final class TestSink: WatchSink {
    private struct State {
        var unread: [WatchDelivery] = []
        var read: [WatchDelivery] = []
        var capacity: Int
        var refused = false
        var mostUnreadEvents = 0
        /// Calls of ``deliveriesOffered()``.
        var notices = 0
        /// Called from ``deliveriesOffered()`` (with the hub's lock released, as it must be).
        var onNotice: (@Sendable () -> Void)?

        var unreadEvents: Int {
            unread.count { if case .events = $0.kind { true } else { false } }
        }
    }

    private let state: Locked<State>

    init(capacity: Int = .max) {
        state = Locked(State(capacity: capacity))
    }

    func deliveriesOffered() {
        let onNotice = state.withLock { state in
            state.notices += 1
            return state.onNotice
        }
        onNotice?()
    }

    var notices: Int { state.withLock { $0.notices } }

    func onNotice(_ body: @escaping @Sendable () -> Void) {
        state.withLock { $0.onNotice = body }
    }

    func offer(_ deliveries: [WatchDelivery]) -> Int {
        state.withLock { state in
            var taken = 0
            for delivery in deliveries {
                if case .events = delivery.kind {
                    guard state.unreadEvents < state.capacity else {
                        state.refused = true
                        break
                    }
                }
                state.unread.append(delivery)
                taken += 1
            }
            state.mostUnreadEvents = max(state.mostUnreadEvents, state.unreadEvents)
            return taken
        }
    }

    var hasRoom: Bool {
        state.withLock { state in
            let room = state.unreadEvents < state.capacity
            if !room { state.refused = true }
            return room
        }
    }

    /// Reads everything waiting (telling the hub when it had refused some) and returns it.
    @discardableResult
    func read(from hub: WatchHub) -> [WatchDelivery] {
        let (batch, refused) = state.withLock { state in
            defer {
                state.read += state.unread
                state.unread = []
                state.refused = false
            }
            return (state.unread, state.refused)
        }
        if refused { hub.sinkHasRoom(self) }
        return batch
    }

    /// Reads until the hub has nothing more to hand over; returns all read so far.
    func readAll(from hub: WatchHub) -> [WatchDelivery] {
        for _ in 0..<10_000 {
            hub.settle()
            if read(from: hub).isEmpty, !state.withLock({ $0.refused }) {
                hub.settle()
                if state.withLock({ $0.unread.isEmpty }) { break }
            }
        }
        return state.withLock { $0.read }
    }

    var mostUnreadEvents: Int { state.withLock { $0.mostUnreadEvents } }
}


func range(_ key: String, _ end: String? = nil) -> KeyRange {
    KeyRange(key: bytes(key), end: end.map(bytes))
}

/// Deliveries as short strings: `created 0 @1`, `events 0 @3: put a=1@3 del b@3`, ...
func describe(_ deliveries: [WatchDelivery]) -> [String] {
    deliveries.map { delivery in
        let head = "\(delivery.watchID) @\(delivery.revision)"
        switch delivery.kind {
        case .created: return "created \(head)"
        case .refused(let reason): return "refused \(head): \(reason)"
        case .canceled: return "canceled \(head)"
        case .compacted(let revision): return "compacted \(head): \(revision)"
        case .progress: return "progress \(head)"
        case .events(let changes): return "events \(head): " + describe(changes)
        }
    }
}

func describe(_ changes: [Change]) -> String {
    changes.map { change in
        let key = String(decoding: change.kv.key, as: UTF8.self)
        switch change.kind {
        case .put: return "put \(key)=\(String(decoding: change.kv.value, as: UTF8.self))@\(change.revision.main)"
        case .delete: return "del \(key)@\(change.revision.main)"
        }
    }.joined(separator: " ")
}

/// A clock for ``WatchHub`` that moves only when a test advances it: work comes due in order,
/// each run on its queue before `advance` returns.
final class ManualWatchTimer: WatchTimer {
    private struct Scheduled {
        let due: Duration
        let queue: DispatchQueue
        let work: @Sendable () -> Void
    }

    private let state = Locked((now: Duration.zero, scheduled: [Scheduled]()))

    func schedule(after delay: Duration, on queue: DispatchQueue, _ work: @escaping @Sendable () -> Void) {
        state.withLock { $0.scheduled.append(Scheduled(due: $0.now + delay, queue: queue, work: work)) }
    }

    func advance(by duration: Duration) {
        let target = state.withLock { state in
            state.now += duration
            return state.now
        }
        while let next = state.withLock({ state -> Scheduled? in
            guard let index = state.scheduled.indices.min(by: { state.scheduled[$0].due < state.scheduled[$1].due }),
                state.scheduled[index].due <= target
            else { return nil }
            return state.scheduled.remove(at: index)
        }) {
            next.queue.sync(execute: next.work)
        }
    }
}
