import Foundation
import Logging
import NIOCore
import NIOPosix
import Raft
import Synchronization

/// Carries Raft messages between members: one long-lived outbound TCP connection to each peer
/// (messages to it go in order, batched into one frame per send), and a listener on this
/// member's peer URL that accepts connections from members of the same cluster only.
///
/// Delivery is best effort, as Raft expects: a message that cannot be sent soon is dropped and
/// the peer reported unreachable, so the leader probes it instead of streaming into a void.
final class PeerTransport: Sendable {
    struct Callbacks: Sendable {
        /// Messages that arrived from peers, in arrival order per peer. A snapshot message
        /// arrives once its backend file is on disk; its data is that file's path.
        var deliver: @Sendable ([Message]) -> Void
        /// A peer could not be reached: messages to it were dropped.
        var unreachable: @Sendable (NodeID) -> Void
        /// How sending a snapshot to a peer ended.
        var snapshotStatus: @Sendable (NodeID, SnapshotStatus) -> Void
        /// Writes a consistent copy of this member's backend to the given path.
        var copyBackend: @Sendable (String) throws -> Void
        /// The membership as this member has applied it (for a joining member's question).
        var membership: @Sendable () -> Membership
        /// Promotes a learner on behalf of a follower (this member should be the leader).
        var promote: @Sendable (UInt64, @escaping @Sendable (EtcdServer.MembershipResult) -> Void) -> Void
        /// Renews a lease on behalf of a follower (this member should be the leader).
        var renewLease: @Sendable (Int64) -> Result<Int64, EtcdError>
        /// A lease's time to live, for a follower (this member should be the leader).
        var leaseTimeToLive: @Sendable (Int64) -> Result<LeaseTimeToLive?, EtcdError>
    }

    private let localID: NodeID
    private let clusterID: UInt64
    private let group: any EventLoopGroup
    private let callbacks: Callbacks
    private let logger: Logger
    /// Where snapshots being sent or received are staged.
    private let snapshotDirectory: String
    private let senders = Mutex<[NodeID: PeerSender]>([:])
    private let listeners = Mutex<[any Channel]>([])
    private let snapshotQueue = DispatchQueue(label: "swift-etcd snapshot sender", attributes: .concurrent)

    init(
        localID: NodeID, clusterID: UInt64, group: any EventLoopGroup, snapshotDirectory: String, logger: Logger,
        callbacks: Callbacks
    ) {
        self.localID = localID
        self.clusterID = clusterID
        self.group = group
        self.snapshotDirectory = snapshotDirectory
        self.logger = logger
        self.callbacks = callbacks
    }

    /// Starts accepting peer connections on `host:port`.
    func listen(host: String, port: Int) throws {
        let (localID, clusterID, callbacks, logger, directory) = (localID, clusterID, callbacks, logger, snapshotDirectory)
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PeerFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(
                        PeerReceiver(
                            localID: localID, clusterID: clusterID, snapshotDirectory: directory, logger: logger,
                            callbacks: callbacks))
                }
            }
            .bind(host: host, port: port).wait()
        listeners.withLock { $0.append(channel) }
    }

    /// Makes `peers` (ID to peer URLs) the members messages can go to.
    func setPeers(_ peers: [NodeID: [String]]) {
        let removed = senders.withLock { senders -> [PeerSender] in
            var removed: [PeerSender] = []
            for (id, sender) in senders where peers[id] == nil || peers[id]! != sender.urls {
                removed.append(sender)
                senders[id] = nil
            }
            for (id, urls) in peers where id != localID && senders[id] == nil {
                senders[id] = PeerSender(
                    hello: PeerHello(clusterID: clusterID, from: localID, to: id), urls: urls, group: group,
                    unreachable: callbacks.unreachable)
            }
            return removed
        }
        for sender in removed { sender.close() }
    }

    /// Sends each message to its addressee; messages to unknown members are dropped. A snapshot
    /// message goes on its own connection, followed by a copy of the backend.
    func send(_ messages: [Message]) {
        guard !messages.isEmpty else { return }
        if messages.contains(where: { $0.type == .snapshot }) {
            for message in messages where message.type == .snapshot { sendSnapshot(message) }
            send(messages.filter { $0.type != .snapshot })
            return
        }
        if messages.count == 1 || messages.allSatisfy({ $0.to == messages[0].to }) {
            sender(for: messages[0].to)?.send(messages)
            return
        }
        var byPeer: [NodeID: [Message]] = [:]
        for message in messages { byPeer[message.to, default: []].append(message) }
        for (peer, batch) in byPeer { sender(for: peer)?.send(batch) }
    }

    private func sender(for peer: NodeID) -> PeerSender? {
        let sender = senders.withLock { $0[peer] }
        if sender == nil { callbacks.unreachable(peer) }
        return sender
    }

    /// Streams a copy of the backend with `message` to its addressee, off the loop thread, and
    /// reports how it went. The leader keeps serving meanwhile: the copy is one read snapshot.
    private func sendSnapshot(_ message: Message) {
        guard let urls = senders.withLock({ $0[message.to]?.urls }) else {
            callbacks.snapshotStatus(message.to, .failure)
            return
        }
        let (group, callbacks, logger, clusterID, localID) = (group, callbacks, logger, clusterID, localID)
        let path = "\(snapshotDirectory)/\(String(message.to, radix: 16))-\(message.snapshot?.metadata.index ?? 0).sending.sqlite"
        snapshotQueue.async {
            defer {
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            }
            do {
                try? FileManager.default.removeItem(atPath: path)
                try callbacks.copyBackend(path)
                let hello = PeerHello(clusterID: clusterID, from: localID, to: message.to, stream: .snapshot)
                let total = try SnapshotStreamer.stream(file: path, with: message, hello: hello, urls: urls, group: group)
                logger.info("sent database snapshot", metadata: [
                    "remote-peer-id": "\(String(message.to, radix: 16))", "bytes": "\(total)",
                    "snapshot-index": "\(message.snapshot?.metadata.index ?? 0)",
                ])
                callbacks.snapshotStatus(message.to, .finished)
            } catch {
                logger.warning("failed to send database snapshot", metadata: [
                    "remote-peer-id": "\(String(message.to, radix: 16))", "error": "\(error)",
                ])
                callbacks.snapshotStatus(message.to, .failure)
            }
        }
    }

    /// Whether a connection to `peer` is up now: etcd's "started member" for reconfiguration checks.
    func isConnected(_ peer: NodeID) -> Bool {
        senders.withLock { $0[peer] }?.isConnected ?? false
    }

    /// Forwards a learner's promotion to the leader and completes with its answer (off the loop thread).
    func forwardPromotion(of id: UInt64, to leader: NodeID, completion: @escaping @Sendable (EtcdServer.MembershipResult) -> Void) {
        forward(.promote(id: id), to: leader) { result in
            completion(result.flatMap { response in
                guard let member = response.member, let membership = response.membership else { return .failure(.timeout) }
                return .success((member, membership.members))
            })
        }
    }

    /// Sends `request` to the leader on the connection kept for such requests and completes
    /// with its answer (an error it answers with, or `request timed out` when it cannot be
    /// reached), on an event loop.
    func forward(_ request: PeerRequest, to leader: NodeID, completion: @escaping @Sendable (Result<PeerResponse, EtcdError>) -> Void) {
        guard let requests = senders.withLock({ $0[leader]?.requests }) else {
            return completion(.failure(.noLeader))
        }
        requests.send(request).whenComplete { result in
            switch result {
            case .success(let response):
                if let error = response.error { return completion(.failure(error)) }
                completion(.success(response))
            case .failure:
                completion(.failure(.timeout))
            }
        }
    }

    /// Closes every connection and stops listening.
    func stop() {
        for channel in listeners.withLock({ $0 }) { try? channel.close().wait() }
        for sender in senders.withLock({ $0.values }) { sender.close() }
    }
}

/// The outbound connection to one peer: connects on first use, reconnects with backoff, holds
/// a bounded queue while connecting, and drops (reporting the peer unreachable) beyond it.
private final class PeerSender: Sendable {
    let urls: [String]
    /// Requests forwarded to this peer, on a connection of their own.
    let requests: PeerRequester
    private let hello: PeerHello
    private let group: any EventLoopGroup
    private let unreachable: @Sendable (NodeID) -> Void
    private let state = Mutex(State())

    /// Messages held while a connection is being made; more than this and they are dropped.
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

    init(hello: PeerHello, urls: [String], group: any EventLoopGroup, unreachable: @escaping @Sendable (NodeID) -> Void) {
        self.hello = hello
        self.urls = urls
        var requestHello = hello
        requestHello.stream = .request
        self.requests = PeerRequester(url: urls[0], hello: requestHello, group: group)
        self.group = group
        self.unreachable = unreachable
    }

    var isConnected: Bool { state.withLock { $0.channel != nil } }

    func send(_ messages: [Message]) {
        enum Action { case write(any Channel), connect, drop, none }
        let action = state.withLock { state -> Action in
            if state.closed { return .none }
            if let channel = state.channel { return .write(channel) }
            guard state.queued.count + messages.count <= Self.maxQueued else { return .drop }
            state.queued += messages
            guard !state.connecting, ContinuousClock.now >= state.nextAttempt else { return .none }
            state.connecting = true
            return .connect
        }
        switch action {
        case .write(let channel): write(messages, on: channel)
        case .connect: connect()
        case .drop: unreachable(hello.to)
        case .none: break
        }
    }

    private func write(_ messages: [Message], on channel: any Channel) {
        guard channel.isWritable else {
            // The peer is not keeping up: Raft resends once it hears from it again.
            unreachable(hello.to)
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
        channel.writeAndFlush(buffer, promise: nil)
    }

    private func connect() {
        let url = state.withLock { state in
            defer { state.urlIndex += 1 }
            return urls[state.urlIndex % urls.count]
        }
        guard let (host, port) = PeerURL.hostAndPort(url) else {
            connectionFailed()
            return
        }
        let hello = hello
        ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.writeBufferWaterMark, value: .init(low: 1 << 20, high: 8 << 20))
            .connectTimeout(.seconds(1))
            .channelInitializer { channel in
                // Peers never answer on this connection; anything they send is ignored.
                channel.eventLoop.makeSucceededVoidFuture()
            }
            .connect(host: host, port: port)
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    var buffer = channel.allocator.buffer(capacity: 64)
                    hello.write(to: &buffer)
                    channel.write(buffer, promise: nil)
                    channel.closeFuture.whenComplete { [self] _ in disconnected(channel) }
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
        state.withLock { state in
            state.connecting = false
            state.queued = []
            state.nextAttempt = ContinuousClock.now + state.backoff
            state.backoff = min(state.backoff * 2, Self.maxBackoff)
        }
        unreachable(hello.to)
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

/// Splits the inbound byte stream into frame bodies. The first frame (a hello, or an answer)
/// is small: a stranger cannot make a member buffer a large frame before saying who it is.
struct PeerFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    private var firstFrame = true

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard Int(length) <= (firstFrame ? PeerWire.maxFirstFrameSize : PeerWire.maxFrameSize) else {
            throw PeerWire.DecodingError(description: "frame of \(length) bytes exceeds the limit")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        firstFrame = false
        buffer.moveReaderIndex(forwardBy: 4)
        context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: Int(length))!))
        return .continue
    }
}

/// Reads one inbound peer connection: the hello first (refusing other clusters and
/// misaddressed calls), then either batches of messages, delivered once per read burst, or one
/// snapshot: its message, then the backend file, written to disk off the event loop and
/// delivered (with the file's path as its data) once complete.
private final class PeerReceiver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let localID: NodeID
    private let clusterID: UInt64
    private let snapshotDirectory: String
    private let logger: Logger
    private let callbacks: PeerTransport.Callbacks
    private var deliver: @Sendable ([Message]) -> Void { callbacks.deliver }
    private var hello: PeerHello?
    private var pending: [Message] = []
    private var snapshot: IncomingSnapshot?
    /// Requests answered so far and answers ready out of order: a connection's answers go out
    /// in the order of its requests (a promotion answers later than a keep-alive behind it).
    private var requestsReceived = 0
    private var answersSent = 0
    private var readyAnswers: [Int: ByteBuffer] = [:]

    init(localID: NodeID, clusterID: UInt64, snapshotDirectory: String, logger: Logger, callbacks: PeerTransport.Callbacks) {
        self.localID = localID
        self.clusterID = clusterID
        self.snapshotDirectory = snapshotDirectory
        self.logger = logger
        self.callbacks = callbacks
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var body = unwrapInboundIn(data)
        do {
            guard let hello else {
                let hello = try PeerHello(&body)
                // A member that is joining does not know the cluster's ID yet and may only ask who is in it.
                let askingToJoin = hello.stream == .request && hello.clusterID == 0 && hello.to == noNode
                guard askingToJoin || (hello.clusterID == clusterID && hello.to == localID) else {
                    logger.warning("rejected a peer connection from another cluster or for another member", metadata: [
                        "remote-peer-id": "\(String(hello.from, radix: 16))",
                        "remote-cluster-id": "\(String(hello.clusterID, radix: 16))",
                        "local-cluster-id": "\(String(clusterID, radix: 16))",
                    ])
                    context.close(promise: nil)
                    return
                }
                self.hello = hello
                return
            }
            switch hello.stream {
            case .messages:
                let messages = try PeerWire.readMessages(&body)
                // A peer speaks only for itself, except when it passes on a request another member
                // forwarded to it (a proposal reaching an old leader goes on to the new one).
                pending += messages.filter { message in
                    guard message.to == localID else { return false }
                    switch message.type {
                    case .propose, .readIndex, .transferLeader: return true
                    // A snapshot only ever comes on its own stream, with the file it names.
                    case .snapshot: return false
                    default: return message.from == hello.from
                    }
                }
            case .snapshot:
                try receiveSnapshot(&body, from: hello.from, context: context)
            case .request:
                try answer(&body, joining: hello.clusterID == 0, context: context)
            }
        } catch {
            logger.warning("closing a peer connection that sent malformed data", metadata: ["error": "\(error)"])
            snapshot?.abandon()
            snapshot = nil
            context.close(promise: nil)
        }
    }

    private func receiveSnapshot(_ body: inout ByteBuffer, from peer: NodeID, context: ChannelHandlerContext) throws {
        guard let incoming = snapshot else {
            let messages = try PeerWire.readMessages(&body)
            guard messages.count == 1, let message = messages.first, message.type == .snapshot, message.from == peer,
                message.to == localID, let metadata = message.snapshot?.metadata, !metadata.confState.voters.isEmpty
            else { throw PeerWire.DecodingError(description: "a snapshot stream must start with one snapshot message") }
            let path = "\(snapshotDirectory)/\(String(peer, radix: 16))-\(metadata.index).receiving.sqlite"
            snapshot = try IncomingSnapshot(message: message, path: path)
            return
        }
        switch try SnapshotFrame(&body) {
        case .chunk(let bytes):
            incoming.append(bytes)
        case .end(let total):
            snapshot = nil
            let (deliver, logger) = (deliver, logger)
            incoming.finish(expectedBytes: total) { result in
                switch result {
                case .success(let message):
                    logger.info("received database snapshot", metadata: [
                        "remote-peer-id": "\(String(peer, radix: 16))", "bytes": "\(total)",
                        "snapshot-index": "\(message.snapshot?.metadata.index ?? 0)",
                    ])
                    deliver([message])
                case .failure(let error):
                    logger.warning("failed to receive database snapshot", metadata: ["error": "\(error)"])
                }
            }
            context.close(promise: nil)
        }
    }

    private func answer(_ body: inout ByteBuffer, joining: Bool, context: ChannelHandlerContext) throws {
        let request = try JSONDecoder().decode(PeerRequest.self, from: Data(body.readableBytesView))
        let channel = context.channel
        let clusterID = clusterID
        let membership = callbacks.membership
        let slot = requestsReceived
        requestsReceived += 1
        let receiver = NIOLoopBound(self, eventLoop: context.eventLoop)
        @Sendable func reply(_ response: PeerResponse) {
            var buffer = channel.allocator.buffer(capacity: 256)
            let bytes = try! JSONEncoder().encode(response)
            PeerWire.writeFrame(&buffer) { $0.writeBytes(bytes) }
            let answer = buffer
            channel.eventLoop.execute { receiver.value.sendAnswer(answer, slot: slot, on: channel) }
        }
        switch request {
        case .membership:
            reply(PeerResponse(clusterID: clusterID, membership: membership()))
        case .promote(let id):
            guard !joining else { throw PeerWire.DecodingError(description: "only members may forward promotions") }
            callbacks.promote(id) { result in
                switch result {
                case .success(let (member, members)):
                    reply(PeerResponse(clusterID: clusterID, membership: Membership(members: members), member: member))
                case .failure(let error):
                    reply(PeerResponse(clusterID: clusterID, error: error))
                }
            }
        case .renewLease(let id):
            guard !joining else { throw PeerWire.DecodingError(description: "only members may forward keep-alives") }
            switch callbacks.renewLease(id) {
            case .success(let ttl): reply(PeerResponse(clusterID: clusterID, leaseTTL: ttl))
            case .failure(let error): reply(PeerResponse(clusterID: clusterID, error: error))
            }
        case .leaseTimeToLive(let id):
            guard !joining else { throw PeerWire.DecodingError(description: "only members may ask for a lease's time to live") }
            switch callbacks.leaseTimeToLive(id) {
            case .success(let timeToLive): reply(PeerResponse(clusterID: clusterID, timeToLive: timeToLive))
            case .failure(let error): reply(PeerResponse(clusterID: clusterID, error: error))
            }
        }
    }

    /// Writes the answers that are next in line; the connection stays open for more requests.
    private func sendAnswer(_ answer: ByteBuffer, slot: Int, on channel: any Channel) {
        readyAnswers[slot] = answer
        while let next = readyAnswers.removeValue(forKey: answersSent) {
            channel.write(next, promise: nil)
            answersSent += 1
        }
        channel.flush()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard !pending.isEmpty else { return }
        deliver(pending)
        pending = []
    }

    func channelInactive(context: ChannelHandlerContext) {
        snapshot?.abandon()
        snapshot = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// A backend file arriving from the leader: written in order on its own queue (never on the
/// event loop), synced when complete, removed when abandoned.
private final class IncomingSnapshot: Sendable {
    private let message: Message
    private let path: String
    private let file: FileHandle
    private let queue = DispatchQueue(label: "swift-etcd snapshot receiver")
    private let written = Mutex<(bytes: UInt64, error: (any Error)?)>((0, nil))

    init(message: Message, path: String) throws {
        self.message = message
        self.path = path
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        guard FileManager.default.createFile(atPath: path, contents: nil), let file = FileHandle(forWritingAtPath: path) else {
            throw PeerWire.DecodingError(description: "cannot create \(path)")
        }
        self.file = file
    }

    func append(_ bytes: ByteBuffer) {
        queue.async { [self] in
            do {
                try file.write(contentsOf: Data(bytes.readableBytesView))
                written.withLock { $0.bytes += UInt64(bytes.readableBytes) }
            } catch {
                written.withLock { $0.error = error }
            }
        }
    }

    /// Once every chunk is written: syncs and closes the file, checks its length, and hands
    /// over the snapshot message whose data is the file's path.
    func finish(expectedBytes: UInt64, then deliver: @escaping @Sendable (Result<Message, any Error>) -> Void) {
        queue.async { [self] in
            do {
                let (bytes, error) = written.withLock { $0 }
                if let error { throw error }
                guard bytes == expectedBytes else {
                    throw PeerWire.DecodingError(description: "snapshot has \(bytes) bytes, the leader sent \(expectedBytes)")
                }
                try file.synchronize()
                try file.close()
                var complete = message
                complete.snapshot!.data = Array(path.utf8)
                deliver(.success(complete))
            } catch {
                try? file.close()
                try? FileManager.default.removeItem(atPath: path)
                deliver(.failure(error))
            }
        }
    }

    func abandon() {
        let (file, path) = (file, path)
        queue.async {
            try? file.close()
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}

/// Sends one snapshot on a new connection, blocking the calling (non-event-loop) thread.
enum SnapshotStreamer {
    static let chunkSize = 1 << 20

    /// Returns the bytes of the file sent.
    static func stream(file path: String, with message: Message, hello: PeerHello, urls: [String], group: any EventLoopGroup)
        throws -> UInt64
    {
        guard let url = urls.first, let (host, port) = PeerURL.hostAndPort(url) else {
            throw PeerWire.DecodingError(description: "no usable peer URL in \(urls)")
        }
        guard let file = FileHandle(forReadingAtPath: path) else { throw PeerWire.DecodingError(description: "cannot read \(path)") }
        defer { try? file.close() }
        let channel = try ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .connect(host: host, port: port).wait()
        defer { channel.close(promise: nil) }
        var head = channel.allocator.buffer(capacity: 256)
        hello.write(to: &head)
        PeerWire.write([message], to: &head)
        try channel.writeAndFlush(head).wait()
        var total: UInt64 = 0
        while let data = try file.read(upToCount: chunkSize), !data.isEmpty {
            var frame = channel.allocator.buffer(capacity: data.count + 8)
            SnapshotFrame.chunk(ByteBuffer(bytes: data)).write(to: &frame)
            // Waiting for each chunk to reach the socket keeps at most one chunk in memory; a
            // follower that stops reading for 30 s fails the transfer (Raft then tries again).
            let stalled = channel.eventLoop.scheduleTask(in: .seconds(30)) { channel.close(promise: nil) }
            try channel.writeAndFlush(frame).wait()
            stalled.cancel()
            total += UInt64(data.count)
        }
        var end = channel.allocator.buffer(capacity: 16)
        SnapshotFrame.end(totalBytes: total).write(to: &end)
        try channel.writeAndFlush(end).wait()
        // The receiver closes once it has the whole file; a receiver that never does is given up on.
        let giveUp = channel.eventLoop.scheduleTask(in: .seconds(30)) { channel.close(promise: nil) }
        try channel.closeFuture.wait()
        giveUp.cancel()
        return total
    }
}

/// `http://host:port` peer URLs.
enum PeerURL {
    static func hostAndPort(_ url: String) -> (String, Int)? {
        guard let components = URLComponents(string: url), components.scheme == "http", let host = components.host,
            let port = components.port, !host.isEmpty
        else { return nil }
        return (host == "localhost" ? "127.0.0.1" : host, port)
    }
}
