import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf

extension EtcdClient {
    /// Watches `key` (or `[key, rangeEnd)`) as clientv3 does: when the stream fails (its member
    /// stopped or lost its leader, the connection dropped), it is reopened on the next endpoint
    /// and the watcher resumes after the last revision it delivered, so no event is lost or
    /// repeated. It asks for a leader (`hasleader`), so a member cut off from the others hands
    /// it on. Ends with an error when the start revision has been compacted or an error is not
    /// one clientv3 retries, and ends when the consuming task is cancelled.
    ///
    /// Elements are the watch responses with events or progress (creations are not repeated).
    public func resumingWatch(_ key: Data, rangeEnd: Data = Data(), startRevision: Int64 = 0, prevKV: Bool = false)
        -> AsyncThrowingStream<Etcdserverpb_WatchResponse, any Error>
    {
        resuming(from: startRevision, firstPause: .milliseconds(50)) { continuation, next, retry in
            let stream = try await self.watchStream(requireLeader: true)
            defer { stream.close() }
            try await stream.create(.with {
                $0.key = key
                $0.rangeEnd = rangeEnd
                $0.startRevision = next
                $0.prevKv = prevKV
            })
            for try await response in stream {
                if response.canceled {
                    throw response.compactRevision > 0
                        ? EtcdClientError(code: .outOfRange, message: "etcdserver: mvcc: required revision has been compacted")
                        : EtcdClientError(code: .cancelled, message: response.cancelReason)
                }
                // "From now" becomes a revision once the watcher exists.
                if next == 0 { next = response.header.revision + 1 }
                if let last = response.events.last { next = last.kv.modRevision + 1 }
                retry.reset()
                if !response.created { continuation.yield(response) }
            }
        }
    }

    /// Keeps lease `id` alive as clientv3's `KeepAlive` does: a renewal every third of its TTL,
    /// on a stream that is reopened (on the next endpoint, after a pause) whatever made it fail.
    /// Yields each renewal's answer; ends with `etcdserver: requested lease not found` once the
    /// lease is gone, and ends when the consuming task is cancelled.
    public func keepingAlive(lease id: Int64) -> AsyncThrowingStream<Etcdserverpb_LeaseKeepAliveResponse, any Error> {
        // clientv3 retries every failure of the stream but its caller's cancel: a refusal
        // that passes (no leader, an expired token, a member stopping) must not end the lease.
        resuming(from: (), firstPause: .milliseconds(500), retrying: { $0.code != .notFound }) { continuation, _, retry in
            let stream = try await self.keepAliveStream()
            defer { stream.close() }
            var responses = stream.responses.makeAsyncIterator()
            while !Task.isCancelled {
                do {
                    try await stream.keepAlive(id)
                } catch {
                    // The stream has ended; how it ended says whether to go on.
                    _ = try await responses.next()
                    throw EtcdClientError(code: .unavailable, message: "the keep-alive stream ended")
                }
                guard let response = try await responses.next() else { return }
                guard response.ttl > 0 else {
                    throw EtcdClientError(code: .notFound, message: "etcdserver: requested lease not found")
                }
                retry.reset()
                continuation.yield(response)
                try await Task.sleep(for: .seconds(max(1, response.ttl / 3)))
            }
        }
    }

    /// Runs `attempt` (one stream's life) again and again, as clientv3 reopens its streams:
    /// after an error `retrying` accepts (by default `Unavailable` or `Internal`: no leader, a
    /// stopped member, a lost connection) or a refused token (logging in again) with a pause,
    /// or when the stream simply ended; any other error ends the sequence with it, and
    /// cancelling the consumer ends it quietly. `state` carries over from one stream to the next.
    private func resuming<Element: Sendable, State: Sendable>(
        from state: State, firstPause: Duration,
        retrying: @escaping @Sendable (EtcdClientError) -> Bool = { $0.code == .unavailable || $0.code == .internal },
        _ attempt: @escaping @Sendable (AsyncThrowingStream<Element, any Error>.Continuation, inout State, inout Backoff) async throws
            -> Void
    ) -> AsyncThrowingStream<Element, any Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                var state = state
                var retry = Backoff(first: firstPause)
                while !Task.isCancelled {
                    let opened = ContinuousClock.now
                    do {
                        try await attempt(continuation, &state, &retry)
                    } catch {
                        let failure = EtcdClientError(error)
                        guard !Task.isCancelled, self.logsInAgain(after: failure, streamOpenedAt: opened) || retrying(failure) else {
                            return continuation.finish(throwing: Task.isCancelled ? nil : failure)
                        }
                        try? await retry.wait()
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

/// Pauses between attempts to reopen a stream: doubling from `first` up to a second.
struct Backoff: Sendable {
    let first: Duration
    private var current: Duration

    init(first: Duration) {
        self.first = first
        current = first
    }

    mutating func reset() { current = first }

    mutating func wait() async throws {
        try await Task.sleep(for: current)
        current = min(current * 2, .seconds(1))
    }
}
