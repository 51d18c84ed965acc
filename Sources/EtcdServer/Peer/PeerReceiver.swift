import Foundation
import Logging
import NIOCore
import NIOPosix
import Raft
import Synchronization

/// Reads one inbound peer connection: the hello first (refusing other clusters and
/// misaddressed calls), then either batches of messages, delivered once per read burst, or one
/// snapshot: its message, then the backend file, written to disk off the event loop and
/// delivered (with the file's path as its data) once complete.
final class PeerReceiver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let localID: NodeID
    private let clusterID: UInt64
    private let snapshotDirectory: String
    private let logger: Logger
    private let callbacks: PeerTransport.Callbacks
    private let trafficTable: PeerTrafficTable
    /// The peer's counts, once its hello named it.
    private var traffic: PeerTraffic?
    private var deliver: @Sendable ([Message]) -> Void { callbacks.deliver }
    private var hello: PeerHello?
    private var pending: [Message] = []
    private var snapshot: IncomingSnapshot?
    /// Requests answered so far and answers ready out of order: a connection's answers go out
    /// in the order of its requests (a promotion answers later than a keep-alive behind it).
    private var requestsReceived = 0
    private var answersSent = 0
    private var readyAnswers: [Int: ByteBuffer] = [:]

    init(
        localID: NodeID, clusterID: UInt64, snapshotDirectory: String, logger: Logger, callbacks: PeerTransport.Callbacks,
        traffic: PeerTrafficTable
    ) {
        self.trafficTable = traffic
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
                if hello.to == localID { traffic = trafficTable.traffic(of: hello.from) }
                return
            }
            // Raft's traffic, as etcd counts it: messages and snapshots, not probes and requests.
            if hello.stream != .request { traffic?.receivedBytes.add(UInt64(body.readableBytes + 4), ordering: .relaxed) }
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
            traffic?.receivedFailures.add(1, ordering: .relaxed)
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
        case .probe:
            reply(PeerResponse(clusterID: clusterID))
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
            callbacks.renewLease(id) { result in
                switch result {
                case .success(let ttl): reply(PeerResponse(clusterID: clusterID, leaseTTL: ttl))
                case .failure(let error): reply(PeerResponse(clusterID: clusterID, error: error))
                }
            }
        case .hashKV(let revision):
            guard !joining else { throw PeerWire.DecodingError(description: "only members may ask for a keyspace hash") }
            callbacks.hashKV(revision) { result in
                switch result {
                case .success(let hash): reply(PeerResponse(clusterID: clusterID, hashKV: hash))
                case .failure(let error): reply(PeerResponse(clusterID: clusterID, error: error))
                }
            }
        case .leaseTimeToLive(let id):
            guard !joining else { throw PeerWire.DecodingError(description: "only members may ask for a lease's time to live") }
            callbacks.leaseTimeToLive(id) { result in
                switch result {
                case .success(let timeToLive): reply(PeerResponse(clusterID: clusterID, timeToLive: timeToLive))
                case .failure(let error): reply(PeerResponse(clusterID: clusterID, error: error))
                }
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
