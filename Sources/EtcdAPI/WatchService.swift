import Backend
import DequeModule
import Auth
import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import Locking
import MVCC
import NIOCore
import SwiftProtobuf
import Synchronization

/// `etcdserverpb.Watch`: one bidirectional stream carries many watchers. Requests go to the
/// member's ``WatchHub``; what the hub hands the stream is turned into responses and written
/// on the stream's event loop as HTTP/2 flow control allows.
enum WatchService {
    static func register(_ server: EtcdServer, on router: inout ServerRouter) {
        router.streaming(Etcdserverpb_WatchRPCs.watch.path) {
            (call: ServerCall<Etcdserverpb_WatchRequest, Etcdserverpb_WatchResponse>) in
            let requiresLeader = RequireLeader.isRequired(by: call.context)
            if requiresLeader, server.leaderID == nil {
                return call.finish(GRPCStatus(EtcdError.noLeader))
            }
            let stream = WatchStream(call: call, server: server)
            if requiresLeader { stream.endWhenLeaderIsLost() }
            call.onMessage = { stream.receive($0) }
            call.onCancel = { _ in stream.close() }
            call.onWritabilityChanged = { if $0 { stream.writable() } }
            // A client that stops sending keeps receiving, as with etcd.
        }
    }
}

/// One watch stream: the hub's sink, with a bounded backlog of deliveries waiting to be written.
final class WatchStream: WatchSink {
    /// Event bytes a stream may hold waiting for its client; beyond, its watchers fall behind
    /// and catch up from the backend once it reads again.
    static let backlogLimit = 4 << 20

    private struct Backlog {
        var deliveries: Deque<WatchDelivery> = []
        var bytes = 0
        /// A drain is scheduled on the event loop, or waits for the stream to be writable.
        var draining = false
        /// ``offer(_:)`` started draining under the hub's lock; ``deliveriesOffered()`` schedules it.
        var drainToSchedule = false
        var waitingForWritability = false
        /// Events were refused (or the hub was told there is no room) since the backlog was
        /// last at or below half its limit: the hub hears when it is again.
        var refused = false
        var closed = false
        /// When the last drain began: the next waits until ``drainInterval`` after it, unless
        /// something other than events was offered since (a watcher's creation or end, a
        /// progress answer).
        var lastDrain = NIODeadline.uptimeNanoseconds(0)
        var holdsMoreThanEvents = false
    }

    private let backlog = Locked(Backlog())
    private let server: EtcdServer
    private let loop: NIOLoopBound<LoopState>
    private let eventLoop: any EventLoop

    init(call: ServerCall<Etcdserverpb_WatchRequest, Etcdserverpb_WatchResponse>, server: EtcdServer) {
        self.server = server
        eventLoop = call.context.eventLoop
        loop = NIOLoopBound(LoopState(call: call), eventLoop: call.context.eventLoop)
    }

    /// What the stream knows on its event loop: the call and each watcher's response options.
    private final class LoopState {
        let call: ServerCall<Etcdserverpb_WatchRequest, Etcdserverpb_WatchResponse>
        var options: [Int64: (prevKV: Bool, fragment: Bool)] = [:]
        /// Cancelled watchers whose queued events are no longer sent.
        var cancelled: Set<Int64> = []
        /// Checks for a leader, for a stream that requires one.
        var leaderCheck: RepeatedTask?

        init(call: ServerCall<Etcdserverpb_WatchRequest, Etcdserverpb_WatchResponse>) {
            self.call = call
        }
    }

    // MARK: Requests (on the event loop)

    func receive(_ request: Etcdserverpb_WatchRequest) {
        let hub = server.watchHub
        switch request.requestUnion {
        case .createRequest(let create):
            // etcd's conventions: no end is one key, "\0" every key from the key on.
            let key = create.key.isEmpty ? [0] : [UInt8](create.key)
            let end: [UInt8]? = create.rangeEnd.isEmpty ? nil : [UInt8](create.rangeEnd)
            do throws(AuthError) {
                try server.checkRead(key: key, rangeEnd: create.rangeEnd, caller: loop.value.call.context.caller)
            } catch {
                return refuse(error)
            }
            let watch = WatchRequest(
                range: KeyRange(key: key, end: end), startRevision: create.startRevision, watchID: create.watchID,
                skipsPuts: create.filters.contains(.noput), skipsDeletes: create.filters.contains(.nodelete),
                progressNotify: create.progressNotify)
            if let id = hub.watch(watch, on: self) {
                // Nothing drains before this returns: draining runs on this event loop.
                loop.value.options[id] = (create.prevKv, create.fragment)
            }
        case .cancelRequest(let cancel):
            hub.cancel(cancel.watchID, on: self)
        case .progressRequest:
            hub.requestProgress(on: self)
        case nil:
            break
        }
    }

    /// Answers a watch auth refuses as etcd does: created and cancelled at once, with ID -1 and
    /// the status as Go prints it; the stream goes on.
    private func refuse(_ error: AuthError) {
        let status = GRPCStatus(error)
        var response = Etcdserverpb_WatchResponse()
        response.header = server.header(revision: server.currentRevision)
        response.watchID = -1
        response.created = true
        response.canceled = true
        response.cancelReason = "rpc error: code = \(status.code.goName) desc = \(status.message)"
        loop.value.call.send(response, flush: true)
    }

    /// Ends the stream with `etcdserver: no leader` when the member loses its leader (``RequireLeader``).
    func endWhenLeaderIsLost() {
        let loop = self.loop
        loop.value.leaderCheck = RequireLeader.monitor(server, on: eventLoop) { [self] in
            loop.value.call.finish(GRPCStatus(EtcdError.noLeader))
            close()
        }
    }

    /// The call is over: the hub forgets the stream and queued deliveries are dropped.
    func close() {
        if eventLoop.inEventLoop { loop.value.leaderCheck?.cancel() }
        backlog.withLock {
            $0.closed = true
            $0.deliveries.removeAll()
        }
        server.watchHub.close(self)
    }

    // MARK: WatchSink (any thread, hub lock held)

    func offer(_ deliveries: [WatchDelivery]) -> Int {
        backlog.withLock { backlog -> Int in
            guard !backlog.closed else { return deliveries.count }
            var taken = 0
            for delivery in deliveries {
                let size = delivery.size
                if size > 0, backlog.bytes > 0, backlog.bytes + size > Self.backlogLimit {
                    backlog.refused = true
                    break
                }
                backlog.deliveries.append(delivery)
                backlog.bytes += size
                taken += 1
                if case .events = delivery.kind {} else { backlog.holdsMoreThanEvents = true }
            }
            if taken > 0 && !backlog.draining {
                backlog.draining = true
                backlog.drainToSchedule = true
            }
            return taken
        }
    }

    /// The hub released its lock: schedule the drain ``offer(_:)`` decided on, if any.
    func deliveriesOffered() {
        let due = backlog.withLock { backlog -> NIODeadline? in
            defer { backlog.drainToSchedule = false }
            guard backlog.drainToSchedule else { return nil }
            return backlog.holdsMoreThanEvents ? .now() : backlog.lastDrain + Self.drainInterval
        }
        guard let due else { return }
        if due <= .now() {
            eventLoop.execute { self.drain() }
        } else {
            eventLoop.scheduleTask(deadline: due) { self.drain() }
        }
    }

    /// A stream drains its events at most this often. An event after a quiet spell goes at
    /// once; while events keep coming, those that arrive meanwhile go out joined per watcher, in
    /// fewer and larger responses (a response costs a client more than an event in it). A
    /// watcher's creation or end, or a progress answer, is drained at once, unless a drain is
    /// already waiting for its turn: then it goes with that one, at most this much later.
    /// etcd's lagging watchers get theirs in batches too, 100 ms or more late.
    static let drainInterval = TimeAmount.milliseconds(5)

    var hasRoom: Bool {
        backlog.withLock { backlog in
            let room = backlog.bytes <= Self.backlogLimit / 2
            if !room { backlog.refused = true }
            return room
        }
    }

    // MARK: Writing (on the event loop)

    func writable() {
        let resume = backlog.withLock { backlog -> Bool in
            defer { backlog.waitingForWritability = false }
            return backlog.waitingForWritability
        }
        if resume { drain() }
    }

    /// Deliveries a drain takes from the backlog at once (also bounded by `drainBytes`).
    static let drainCount = 4096
    static let drainBytes = 1 << 20

    /// Writes queued deliveries while HTTP/2 flow control lets the stream write.
    private func drain() {
        backlog.withLock { backlog in
            backlog.lastDrain = .now()
            backlog.holdsMoreThanEvents = false
        }
        let state = loop.value
        var encoder = FanOutEncoder(server: server)
        // Responses are gathered and flushed every 64 KiB: fewer, fuller HTTP/2 frames.
        var unflushed = 0
        defer { state.call.flush() }
        while true {
            if !state.call.isWritable {
                state.call.flush()
                // Stays draining: `writable()` resumes.
                backlog.withLock { $0.waitingForWritability = true }
                // Writability may have come back between the check and the flag.
                guard !state.call.isWritable else { continue }
                return
            }
            let next = backlog.withLock { backlog -> (deliveries: [WatchDelivery], room: Bool)? in
                guard !backlog.deliveries.isEmpty else {
                    backlog.draining = false
                    return nil
                }
                var taken: [WatchDelivery] = []
                var bytes = 0
                while taken.count < Self.drainCount, bytes < Self.drainBytes, let delivery = backlog.deliveries.popFirst() {
                    taken.append(delivery)
                    bytes += delivery.size
                }
                backlog.bytes -= bytes
                let room = backlog.refused && backlog.bytes <= Self.backlogLimit / 2
                if room { backlog.refused = false }
                return (taken, room)
            }
            guard let (deliveries, room) = next else { return }
            for delivery in Self.merged(deliveries) {
                if case .events(let changes) = delivery.kind, !state.cancelled.contains(delivery.watchID),
                    let options = state.options[delivery.watchID], !options.prevKV, !options.fragment
                {
                    // The common case, events as they are: encoded once for every watcher they go to.
                    let parts = encoder.parts(changes, watchID: delivery.watchID, revision: delivery.revision)
                    state.call.send(serializedParts: parts, flush: false)
                    unflushed += parts.reduce(0) { $0 + $1.count }
                } else {
                    for response in responses(for: delivery, state) {
                        state.call.send(response, flush: false)
                        unflushed += response.events.reduce(64) { $0 + $1.kv.key.count + $1.kv.value.count }
                    }
                }
                if unflushed >= 64 << 10 {
                    state.call.flush()
                    unflushed = 0
                }
            }
            if room { server.watchHub.sinkHasRoom(self) }
        }
    }

    /// `deliveries` with each watcher's consecutive events joined into one response: a stream
    /// that fell behind its hub (its client reads slower than the puts come) catches up in
    /// fewer, larger responses, as etcd's do, while one that keeps up gets every batch at once.
    /// Each watcher's deliveries keep their order; a stream-wide one (watch ID -1, such as a
    /// progress answer) is a barrier nothing moves across.
    static func merged(_ deliveries: [WatchDelivery]) -> [WatchDelivery] {
        var merged: [WatchDelivery] = []
        merged.reserveCapacity(deliveries.count)
        // Where each watcher's events may still join: its latest delivery, when that is events.
        var joinable: [Int64: Int] = [:]
        joinable.reserveCapacity(deliveries.count)
        for delivery in deliveries {
            guard delivery.watchID >= 0 else {
                joinable.removeAll()
                merged.append(delivery)
                continue
            }
            guard case .events(let changes) = delivery.kind else {
                joinable[delivery.watchID] = nil
                merged.append(delivery)
                continue
            }
            if let index = joinable[delivery.watchID], case .events(let earlier) = merged[index].kind {
                merged[index] = WatchDelivery(watchID: delivery.watchID, kind: .events(earlier + changes), revision: delivery.revision)
            } else {
                joinable[delivery.watchID] = merged.count
                merged.append(delivery)
            }
        }
        return merged
    }

    /// The wire responses for one delivery: one, or several fragments of a large event batch
    /// for a watcher that asked for them.
    private func responses(for delivery: WatchDelivery, _ state: LoopState) -> [Etcdserverpb_WatchResponse] {
        var response = Etcdserverpb_WatchResponse()
        response.header = server.header(revision: delivery.revision)
        response.watchID = delivery.watchID
        switch delivery.kind {
        case .created:
            state.cancelled.remove(delivery.watchID)
            response.created = true
        case .refused(let reason):
            response.created = true
            response.canceled = true
            response.cancelReason = reason
        case .canceled:
            state.cancelled.insert(delivery.watchID)
            state.options[delivery.watchID] = nil
            response.canceled = true
        case .compacted(let revision):
            state.options[delivery.watchID] = nil
            response.compactRevision = revision
            response.canceled = true
        case .progress:
            break
        case .events(let changes):
            guard !state.cancelled.contains(delivery.watchID) else { return [] }
            let options = state.options[delivery.watchID] ?? (false, false)
            response.events = changes.map { event($0, prevKV: options.prevKV) }
            if options.fragment { return fragments(of: response) }
        }
        return [response]
    }

    private func event(_ change: Change, prevKV: Bool) -> Mvccpb_Event {
        var event = Mvccpb_Event(change)
        // A create has nothing before it; etcd does not look.
        let created = change.kind == .put && change.kv.createRevision == change.kv.modRevision
        if prevKV, !created, let previous = server.keyValue(change.kv.key, atRevision: change.kv.modRevision - 1) {
            event.prevKv = Mvccpb_KeyValue(previous)
        }
        return event
    }

    /// etcd's rule: a response of at least `--max-request-bytes` plus gRPC overhead with two or
    /// more events is split so each piece stays under that size (a single event may exceed it);
    /// every piece but the last is marked `fragment`.
    private func fragments(of response: Etcdserverpb_WatchResponse) -> [Etcdserverpb_WatchResponse] {
        let limit = server.configuration.maxRequestBytes + 512 * 1024
        guard response.events.count >= 2, (try? response.serializedBytes() as [UInt8])?.count ?? 0 >= limit else {
            return [response]
        }
        var empty = response
        empty.events = []
        let baseSize = (try? empty.serializedBytes() as [UInt8])?.count ?? 0
        var pieces: [Etcdserverpb_WatchResponse] = []
        var piece = empty
        var size = baseSize
        for event in response.events {
            let eventSize = (try? event.serializedBytes() as [UInt8])?.count ?? 0
            let added = eventSize + 1 + Self.varintLength(eventSize)
            if !piece.events.isEmpty, size + added >= limit {
                piece.fragment = true
                pieces.append(piece)
                piece = empty
                size = baseSize
            }
            piece.events.append(event)
            size += added
        }
        pieces.append(piece)
        return pieces
    }

    private static func varintLength(_ value: Int) -> Int {
        var length = 1
        var rest = value >> 7
        while rest > 0 {
            length += 1
            rest >>= 7
        }
        return length
    }
}
