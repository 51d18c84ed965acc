import Foundation
import NIOCore
import NIOPosix
import Raft
import TransportSecurity

/// Requests one member makes of another outside Raft, on a request connection (see
/// ``PeerRequester``): every member probes its peers' round trip; a joining member asks who is in the cluster; a follower forwards to the
/// leader a learner's promotion (only the leader knows whether the learner has caught up), a
/// lease keep-alive and a lease's time to live (only the leader's lessor knows when leases
/// expire), as etcd does over HTTP; the leader asks each member for its keyspace hash
/// (corruption checks).
enum PeerRequest: Codable, Equatable {
    /// Nothing but an answer: the round trip is measured (etcd's prober).
    case probe
    case membership
    case promote(id: UInt64)
    case renewLease(id: Int64)
    case leaseTimeToLive(id: Int64)
    /// The peer's `HashKV` at a revision (corruption checks).
    case hashKV(revision: Int64)
}

struct PeerResponse: Codable {
    var clusterID: UInt64
    var membership: Membership?
    var member: Member?
    var error: EtcdError?
    /// A renewed lease's TTL.
    var leaseTTL: Int64?
    /// A lease's time to live (nil with no error: there is no such lease).
    var timeToLive: LeaseTimeToLive?
    var hashKV: KeyspaceHash?
}

/// `HashKV` as a member answers it: the hash of the records kept at or before `hashRevision`,
/// the member's compaction and current revisions.
package struct KeyspaceHash: Codable, Equatable, Sendable {
    package var hash: UInt32
    package var hashRevision: Int64
    package var compactRevision: Int64
    package var revision: Int64
}

/// `LeaseTimeToLive` as the leader answers it.
package struct LeaseTimeToLive: Codable, Equatable, Sendable {
    package var grantedTTL: Int64
    package var remainingMilliseconds: Int64
    package var keys: [[UInt8]]
}

extension PeerTransport {
    /// Asks the members at `urls` (any one that answers) for the cluster ID and membership.
    /// Blocks: call it off the event loops.
    static func fetchMembership(from urls: [String], group: any EventLoopGroup, tls: TLSCredentials?) throws
        -> (UInt64, Membership)
    {
        var failures: [String] = []
        for url in urls {
            let requester = PeerRequester(
                url: url, hello: PeerHello(clusterID: 0, from: noNode, to: noNode, stream: .request), group: group, tls: tls)
            defer { requester.close() }
            do {
                let response = try requester.send(.membership).wait()
                guard let membership = response.membership else { throw PeerWire.DecodingError(description: "no membership in the answer") }
                return (response.clusterID, membership)
            } catch {
                failures.append("\(url): \(error)")
            }
        }
        throw ConfigurationError("could not get the cluster's membership from any peer (\(failures.joined(separator: "; ")))")
    }
}

/// Requests to one peer (forwarded keep-alives, times to live and promotions) on one connection
/// kept open between the two, which the peer answers in order.
///
/// etcd's followers forward these over pooled HTTP connections; a connection per request cost
/// a TCP handshake, and a blocked thread, for every keep-alive a follower forwards. The
/// connection opens on first use and again after it closes. A request unanswered within 15 s
/// fails and closes the connection, since the answers queued behind it would no longer match.
final class PeerRequester: Sendable {
    private let url: String
    private let hello: PeerHello
    private let eventLoop: any EventLoop
    private let tls: TLSCredentials?
    /// The open (or opening) connection and the handler that pairs answers with requests.
    private let connection: NIOLoopBoundBox<EventLoopFuture<(any Channel, NIOLoopBound<AnswerQueue>)>?>

    init(url: String, hello: PeerHello, group: any EventLoopGroup, tls: TLSCredentials?) {
        self.url = url
        self.hello = hello
        self.eventLoop = group.next()
        self.tls = tls
        self.connection = NIOLoopBoundBox.makeEmptyBox(
            valueType: EventLoopFuture<(any Channel, NIOLoopBound<AnswerQueue>)>.self, eventLoop: eventLoop)
    }

    /// Sends `request` and completes with the peer's answer, or fails when the peer cannot be
    /// reached or does not answer in time.
    func send(_ request: PeerRequest) -> EventLoopFuture<PeerResponse> {
        let body: Data
        do { body = try JSONEncoder().encode(request) } catch { return eventLoop.makeFailedFuture(error) }
        return eventLoop.flatSubmit { self.sendOnLoop(body) }.flatMapThrowing { frame in
            try JSONDecoder().decode(PeerResponse.self, from: Data(frame.readableBytesView))
        }
    }

    /// Closes the connection; requests waiting for answers fail.
    func close() {
        eventLoop.execute {
            self.connection.value?.whenSuccess { channel, _ in channel.close(promise: nil) }
            self.connection.value = nil
        }
    }

    private func sendOnLoop(_ body: Data) -> EventLoopFuture<ByteBuffer> {
        let eventLoop = eventLoop
        return open().flatMap { channel, answers in
            let answer = eventLoop.makePromise(of: ByteBuffer.self)
            answers.value.expect(answer)
            var buffer = channel.allocator.buffer(capacity: body.count + 4)
            PeerWire.writeFrame(&buffer) { $0.writeBytes(body) }
            channel.writeAndFlush(buffer, promise: nil)
            let url = self.url
            let timeout = eventLoop.scheduleTask(in: .seconds(15)) {
                answer.fail(PeerWire.DecodingError(description: "no answer from \(url) within 15 s"))
                channel.close(promise: nil)
            }
            answer.futureResult.whenComplete { _ in timeout.cancel() }
            return answer.futureResult
        }
    }

    private func open() -> EventLoopFuture<(any Channel, NIOLoopBound<AnswerQueue>)> {
        if let open = connection.value { return open }
        guard let peerURL = PeerURL(url) else {
            return eventLoop.makeFailedFuture(PeerWire.DecodingError(description: "bad peer URL \(url)"))
        }
        let (eventLoop, hello) = (eventLoop, hello)
        let answers = NIOLoopBound(AnswerQueue(), eventLoop: eventLoop)
        let opening = peerURL.connect(group: eventLoop, tls: tls, timeout: .seconds(2)) { channel in
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PeerFrameDecoder()))
            try channel.pipeline.syncOperations.addHandler(answers.value)
        }
            .map { channel -> (any Channel, NIOLoopBound<AnswerQueue>) in
                var buffer = channel.allocator.buffer(capacity: 64)
                hello.write(to: &buffer)
                channel.write(buffer, promise: nil)
                return (channel, answers)
            }
        connection.value = opening
        opening.whenComplete { result in
            switch result {
            case .success(let (channel, _)):
                channel.closeFuture.whenComplete { _ in
                    if self.connection.value === opening { self.connection.value = nil }
                }
            case .failure:
                if self.connection.value === opening { self.connection.value = nil }
            }
        }
        return opening
    }
}

/// Pairs a peer's answers, in order, with the requests waiting for them.
final class AnswerQueue: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private var waiting: [EventLoopPromise<ByteBuffer>] = []
    private var closed = false

    /// Waits for the next answer; fails at once when the connection has already closed. (A
    /// request can reach a connection between its close and the requester forgetting it: such
    /// a request would otherwise wait for the 15 s timeout, past a forwarded keep-alive's own
    /// deadline, and the keep-alive would fail instead of being asked again of the next leader.)
    func expect(_ answer: EventLoopPromise<ByteBuffer>) {
        guard !closed else {
            return answer.fail(PeerWire.DecodingError(description: "the peer closed the connection without answering"))
        }
        waiting.append(answer)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !waiting.isEmpty else {
            // An answer nobody asked for: the two ends disagree; start over.
            return context.close(promise: nil)
        }
        waiting.removeFirst().succeed(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        let failed = waiting
        waiting = []
        for answer in failed {
            answer.fail(PeerWire.DecodingError(description: "the peer closed the connection without answering"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
