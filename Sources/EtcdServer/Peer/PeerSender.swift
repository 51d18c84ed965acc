import Foundation
import Locking
import Logging
import NIOCore
import NIOPosix
import Raft
import Synchronization
import TransportSecurity

/// The outbound connection to one peer: connects on first use, reconnects with backoff, holds
/// a bounded queue while a connection attempt is under way, and drops (reporting the peer
/// unreachable) beyond it and between attempts.
///
/// Nothing waits for a later attempt: Raft resends what still matters, while a message held
/// across a backoff could arrive long after it was sent. A follower sends a peer that is down
/// nothing for as long as it stays down, so a proposal it forwarded to a dying leader would
/// wait for the restarted member and be appended again, long after its client gave up and
/// retried (a write applied twice).
final class PeerSender: Sendable {
    let urls: [String]
    /// Requests forwarded to this peer, on a connection of their own.
    let requests: PeerRequester
    private let hello: PeerHello
    private let group: any EventLoopGroup
    private let tls: TLSCredentials?
    private let unreachable: @Sendable (NodeID) -> Void
    private let traffic: PeerTraffic
    private let state = Locked(State())

    /// Messages held while a connection attempt is under way; more than this and they are dropped.
    private static let maxQueued = 4096
    private static let minBackoff: Duration = .milliseconds(50)
    private static let maxBackoff: Duration = .seconds(1)

    private struct State {
        var channel: (any Channel)?
        var connecting = false
        var queued: [Message] = []
        var nextAttempt = ContinuousClock.now
        var backoff = PeerSender.minBackoff
        var urlIndex = 0
        var closed = false
    }

    init(
        hello: PeerHello, urls: [String], group: any EventLoopGroup, tls: TLSCredentials?, traffic: PeerTraffic,
        unreachable: @escaping @Sendable (NodeID) -> Void
    ) {
        self.traffic = traffic
        self.hello = hello
        self.urls = urls
        var requestHello = hello
        requestHello.stream = .request
        self.requests = PeerRequester(url: urls[0], hello: requestHello, group: group, tls: tls)
        self.group = group
        self.tls = tls
        self.unreachable = unreachable
    }

    var isConnected: Bool { state.withLock { $0.channel != nil } }

    func send(_ messages: [Message]) {
        enum Action { case write(any Channel), connect, drop, none }
        let action = state.withLock { state -> Action in
            if state.closed { return .none }
            if let channel = state.channel { return .write(channel) }
            guard state.connecting || ContinuousClock.now >= state.nextAttempt else { return .drop }
            guard state.queued.count + messages.count <= Self.maxQueued else { return .drop }
            state.queued += messages
            if state.connecting { return .none }
            state.connecting = true
            return .connect
        }
        switch action {
        case .write(let channel): write(messages, on: channel)
        case .connect: connect()
        case .drop: dropped(messages.count)
        case .none: break
        }
    }

    /// Opens the connection if there is none and no attempt is under way or due later, without
    /// sending anything: every member keeps a connection to every peer, as etcd's streams do,
    /// so any member can tell which peers are up (``isConnected``), followers included.
    func connectIfIdle() {
        let start = state.withLock { state -> Bool in
            guard !state.closed, state.channel == nil, !state.connecting, ContinuousClock.now >= state.nextAttempt else { return false }
            state.connecting = true
            return true
        }
        if start { connect() }
    }

    /// `count` messages were not sent: counted, and the peer reported unreachable.
    private func dropped(_ count: Int) {
        traffic.sentFailures.add(UInt64(count), ordering: .relaxed)
        unreachable(hello.to)
    }

    private func write(_ messages: [Message], on channel: any Channel) {
        guard channel.isWritable else {
            // The peer is not keeping up: Raft resends once it hears from it again.
            dropped(messages.count)
            return
        }
        var buffer = channel.allocator.buffer(capacity: 256)
        // Frames stay well under the receiver's limit however many entries a batch carries.
        var start = 0
        var bytes = 0
        for (index, message) in messages.enumerated() {
            bytes += message.entries.reduce(64) { $0 + $1.data.count + 32 }
            if bytes > PeerWire.targetFrameSize || index == messages.count - 1 {
                PeerWire.write(Array(messages[start...index]), to: &buffer)
                start = index + 1
                bytes = 0
            }
        }
        traffic.sentBytes.add(UInt64(buffer.readableBytes), ordering: .relaxed)
        channel.writeAndFlush(buffer, promise: nil)
    }

    private func connect() {
        let url = state.withLock { state in
            defer { state.urlIndex += 1 }
            return urls[state.urlIndex % urls.count]
        }
        guard let peerURL = PeerURL(url) else {
            connectionFailed()
            return
        }
        let hello = hello
        // Peers never answer on this connection; anything they send is ignored.
        peerURL.connect(group: group, tls: tls, timeout: .seconds(1))
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    var buffer = channel.allocator.buffer(capacity: 64)
                    hello.write(to: &buffer)
                    channel.write(buffer, promise: nil)
                    let queued = state.withLock { state -> [Message]? in
                        guard !state.closed else { return nil }
                        state.channel = channel
                        state.connecting = false
                        state.backoff = Self.minBackoff
                        defer { state.queued = [] }
                        return state.queued
                    }
                    guard let queued else {
                        channel.close(promise: nil)
                        return
                    }
                    // Watched only once it is the current channel: one the peer closed before
                    // this point (it accepted and hung up at once) is seen closed here and
                    // dialled again. Watched earlier, its close found no current channel to
                    // clear and it stayed current for ever: every message to the peer went into
                    // a closed socket, counted as sent (a peer transport test caught it in a
                    // full run; a soak run's restarted leader never heard one follower again).
                    channel.closeFuture.whenComplete { [self] _ in disconnected(channel) }
                    if queued.isEmpty {
                        channel.flush()
                    } else {
                        write(queued, on: channel)
                    }
                case .failure:
                    connectionFailed()
                }
            }
    }

    private func connectionFailed() {
        let lost = state.withLock { state in
            defer { state.queued = [] }
            state.connecting = false
            state.nextAttempt = ContinuousClock.now + state.backoff
            state.backoff = min(state.backoff * 2, Self.maxBackoff)
            return state.queued.count
        }
        dropped(lost)
    }

    private func disconnected(_ channel: any Channel) {
        let wasCurrent = state.withLock { state -> Bool in
            guard let current = state.channel, current === channel else { return false }
            state.channel = nil
            state.nextAttempt = ContinuousClock.now + state.backoff
            return true
        }
        if wasCurrent { unreachable(hello.to) }
    }

    func close() {
        requests.close()
        let channel = state.withLock { state -> (any Channel)? in
            state.closed = true
            state.queued = []
            defer { state.channel = nil }
            return state.channel
        }
        channel?.close(promise: nil)
    }
}
