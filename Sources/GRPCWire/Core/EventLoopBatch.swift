import Locking
import NIOCore
import Synchronization

/// Carries work that other threads hand to one event loop, in bursts.
///
/// A server that answers requests from another thread (swift-etcd's apply loop answers a whole
/// batch of writes at once) would otherwise cost the loop one task per call, and each call's
/// response one flush, one `writev` and one TCP segment; so would a client whose many tasks
/// start calls at once. Here a burst costs one task, and each connection one flush at its end:
/// the connection's ``FlushCoalescer`` holds back the flushes asked for while the burst runs.
final class EventLoopBatch: Sendable {
    private struct Drain {
        var running = false
        var heldBack: [FlushCoalescer] = []
    }

    let eventLoop: any EventLoop
    private let queued = Locked<[@Sendable () -> Void]>([])
    private let drain: NIOLoopBoundBox<Drain>

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.drain = NIOLoopBoundBox.makeBoxSendingValue(Drain(), eventLoop: eventLoop)
    }

    /// Runs `body` on the event loop: at once when called there, otherwise with the other
    /// completions queued before the loop gets to them, in the order they were submitted.
    func submit(_ body: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop { return body() }
        enqueue(body)
    }

    /// Runs `body` on the event loop after everything enqueued or submitted before it, even
    /// when called there: the order of a call's operations is kept whatever thread each
    /// comes from.
    func enqueue(_ body: @escaping @Sendable () -> Void) {
        let first = queued.withLock { queued in
            queued.append(body)
            return queued.count == 1
        }
        if first { eventLoop.execute { self.run() } }
    }

    private func run() {
        var bodies: [@Sendable () -> Void] = []
        queued.withLock { swap(&bodies, &$0) }
        drain.value.running = true
        for body in bodies { body() }
        drain.value.running = false
        let heldBack = drain.value.heldBack
        drain.value.heldBack = []
        for coalescer in heldBack { coalescer.flushHeldBack() }
    }

    /// Whether a flush asked for now waits for the end of the burst (which then flushes
    /// `coalescer` once).
    fileprivate func holdBack(_ coalescer: FlushCoalescer) -> Bool {
        guard drain.value.running else { return false }
        drain.value.heldBack.append(coalescer)
        return true
    }
}

/// The connection's place in its event loop's ``EventLoopBatch``: sits below HTTP/2 in the
/// connection pipeline and turns the flushes of a burst of responses into one.
final class FlushCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer

    private let batch: EventLoopBatch
    private var context: ChannelHandlerContext?
    private var isHeldBack = false

    init(batch: EventLoopBatch) {
        self.batch = batch
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func flush(context: ChannelHandlerContext) {
        if isHeldBack { return }
        if batch.holdBack(self) {
            isHeldBack = true
        } else {
            context.flush()
        }
    }

    fileprivate func flushHeldBack() {
        isHeldBack = false
        context?.flush()
    }
}

/// The ``EventLoopBatch`` of each event loop a server's connections live on.
final class EventLoopBatches: Sendable {
    private let batches = Locked<[ObjectIdentifier: EventLoopBatch]>([:])

    func batch(for eventLoop: any EventLoop) -> EventLoopBatch {
        batches.withLock { batches in
            if let batch = batches[ObjectIdentifier(eventLoop)] { return batch }
            let batch = EventLoopBatch(eventLoop: eventLoop)
            batches[ObjectIdentifier(eventLoop)] = batch
            return batch
        }
    }
}
