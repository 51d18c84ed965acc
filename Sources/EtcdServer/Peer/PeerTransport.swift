import Backend
import BoundSockets
import Foundation
import Locking
import Logging
import NIOCore
import NIOPosix
import Raft
import Synchronization
import TransportSecurity

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
        var renewLease: @Sendable (Int64, @escaping @Sendable (Result<Int64, EtcdError>) -> Void) -> Void
        /// A lease's time to live, for a follower (this member should be the leader).
        var leaseTimeToLive: @Sendable (Int64, @escaping @Sendable (Result<LeaseTimeToLive?, EtcdError>) -> Void) -> Void
        /// This member's keyspace hash at a revision, computed off the event loops.
        var hashKV: @Sendable (Int64, @escaping @Sendable (Result<KeyspaceHash, EtcdError>) -> Void) -> Void
    }

    private let localID: NodeID
    private let clusterID: UInt64
    private let group: any EventLoopGroup
    private let callbacks: Callbacks
    private let logger: Logger
    /// Where snapshots being sent or received are staged.
    private let snapshotDirectory: String
    /// Peer TLS, for `https` peer URLs.
    private let tls: TLSCredentials?
    private let handshakeTimeout: Duration
    private let senders = Locked<[NodeID: PeerSender]>([:])
    /// Bytes and failures to and from each peer (etcd's `etcd_network_peer_*` metrics).
    let traffic = PeerTrafficTable()
    private let listeners = Locked<[any Channel]>([])
    private let probing = Locked<RepeatedTask?>(nil)
    private let snapshotQueue = DispatchQueue(label: "swift-etcd snapshot sender", attributes: .concurrent)

    init(
        localID: NodeID, clusterID: UInt64, group: any EventLoopGroup, snapshotDirectory: String, tls: TLSCredentials?,
        handshakeTimeout: Duration, logger: Logger, callbacks: Callbacks
    ) {
        self.tls = tls
        self.handshakeTimeout = handshakeTimeout
        self.localID = localID
        self.clusterID = clusterID
        self.group = group
        self.snapshotDirectory = snapshotDirectory
        self.logger = logger
        self.callbacks = callbacks
    }

    /// Starts accepting peer connections on `address`, over TLS for an `https` URL.
    func listen(on address: PeerListenAddress) throws {
        let (localID, clusterID, callbacks, logger, directory, traffic) = (localID, clusterID, callbacks, logger, snapshotDirectory, traffic)
        let tls = address.peerURL.isSecure ? tls : nil
        let handshakeTimeout = TimeAmount.nanoseconds(Int64(handshakeTimeout / .nanoseconds(1)))
        let bootstrap = ServerBootstrap(group: group)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try tls?.secureAccepted(channel, handshakeTimeout: handshakeTimeout)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PeerFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(
                        PeerReceiver(
                            localID: localID, clusterID: clusterID, snapshotDirectory: directory, logger: logger,
                            callbacks: callbacks, traffic: traffic))
                }
            }
        let channel = try address.socket.listen(with: bootstrap, backlog: 64).wait()
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
                    hello: PeerHello(clusterID: clusterID, from: localID, to: id), urls: urls, group: group, tls: tls,
                    traffic: traffic.traffic(of: id), unreachable: callbacks.unreachable)
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
        let (group, callbacks, logger, clusterID, localID, tls) = (group, callbacks, logger, clusterID, localID, tls)
        let traffic = traffic.traffic(of: message.to)
        let path = "\(snapshotDirectory)/\(String(message.to, radix: 16))-\(message.snapshot?.metadata.index ?? 0).sending.sqlite"
        snapshotQueue.async {
            defer {
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            }
            do {
                try? FileManager.default.removeItem(atPath: path)
                try callbacks.copyBackend(path)
                let sent = try Self.describing(message, withBackendAt: path)
                let hello = PeerHello(clusterID: clusterID, from: localID, to: message.to, stream: .snapshot)
                let total = try SnapshotStreamer.stream(
                    file: path, with: sent, hello: hello, urls: urls, group: group, tls: tls)
                traffic.sentBytes.add(UInt64(total), ordering: .relaxed)
                logger.info("sent database snapshot", metadata: [
                    "remote-peer-id": "\(String(message.to, radix: 16))", "bytes": "\(total)",
                    "snapshot-index": "\(sent.snapshot?.metadata.index ?? 0)",
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

    /// The snapshot message as the backend copy at `path` describes it (etcd's merged
    /// snapshot): the index, term and configuration the copy was applied up to, which may be
    /// past Raft's stored snapshot. A member added after that stored snapshot must find itself
    /// in the configuration it receives, or Raft refuses the snapshot (and the leader sends it
    /// again, for ever); and the follower's log continues where the copy ends.
    static func describing(_ message: Message, withBackendAt path: String) throws -> Message {
        let (index, term, stored) = try SQLiteBackend.appliedState(ofDatabaseAt: path, document: .confState)
        guard var snapshot = message.snapshot, UInt64(index) >= snapshot.metadata.index, let stored else { return message }
        snapshot.metadata = SnapshotMetadata(index: UInt64(index), term: UInt64(term), confState: try PeerWire.decodeConfState(stored))
        var described = message
        described.snapshot = snapshot
        return described
    }

    /// Connects to every peer not connected yet (see ``PeerSender/connectIfIdle()``).
    func connectToIdlePeers() {
        for sender in senders.withLock({ $0.values }) { sender.connectIfIdle() }
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

    /// Sends `request` to `peer` (the leader, for forwarded requests) on the connection kept for
    /// such requests and completes with its answer (an error it answers with, or `request timed
    /// out` when it cannot be reached), on an event loop.
    func forward(_ request: PeerRequest, to peer: NodeID, completion: @escaping @Sendable (Result<PeerResponse, EtcdError>) -> Void) {
        guard let requests = senders.withLock({ $0[peer]?.requests }) else {
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

    /// Every `interval`, asks each peer for an empty answer on the request connection and
    /// reports how long it took (etcd's prober, for `etcd_network_peer_round_trip_time_seconds`).
    func startProbing(every interval: TimeAmount, report: @escaping @Sendable (NodeID, Duration) -> Void) {
        let prober = group.next().scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            for (peer, sender) in senders.withLock({ $0 }) {
                let start = ContinuousClock.now
                sender.requests.send(.probe).whenSuccess { _ in report(peer, .now - start) }
            }
        }
        probing.withLock { $0 = prober }
    }

    /// Closes every connection and stops listening.
    func stop() {
        probing.withLock { $0?.cancel() }
        for channel in listeners.withLock({ $0 }) { try? channel.close().wait() }
        for sender in senders.withLock({ $0.values }) { sender.close() }
    }
}
