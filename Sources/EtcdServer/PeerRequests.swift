import Foundation
import NIOCore
import NIOPosix
import Raft

/// Requests one member makes of another outside Raft, on a short connection of their own: a
/// joining member asks who is in the cluster; a follower forwards to the leader a learner's
/// promotion (only the leader knows whether the learner has caught up), a lease keep-alive
/// and a lease's time to live (only the leader's lessor knows when leases expire), as etcd
/// does over HTTP.
enum PeerRequest: Codable, Equatable {
    case membership
    case promote(id: UInt64)
    case renewLease(id: Int64)
    case leaseTimeToLive(id: Int64)
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
}

/// `LeaseTimeToLive` as the leader answers it.
public struct LeaseTimeToLive: Codable, Equatable, Sendable {
    public var grantedTTL: Int64
    public var remainingMilliseconds: Int64
    public var keys: [[UInt8]]
}

extension PeerTransport {
    /// Asks the members at `urls` (any one that answers) for the cluster ID and membership.
    static func fetchMembership(from urls: [String], group: any EventLoopGroup) throws -> (UInt64, Membership) {
        var failures: [String] = []
        for url in urls {
            do {
                let response = try ask(url: url, PeerRequest.membership, hello: PeerHello(clusterID: 0, from: noNode, to: noNode, stream: .request), group: group)
                guard let membership = response.membership else { throw PeerWire.DecodingError(description: "no membership in the answer") }
                return (response.clusterID, membership)
            } catch {
                failures.append("\(url): \(error)")
            }
        }
        throw ConfigurationError("could not get the cluster's membership from any peer (\(failures.joined(separator: "; ")))")
    }

    /// Sends `request` on a new connection and waits (bounded) for the answer. Blocks: call it
    /// off the event loops.
    static func ask(url: String, _ request: PeerRequest, hello: PeerHello, group: any EventLoopGroup) throws -> PeerResponse {
        guard let (host, port) = PeerURL.hostAndPort(url) else { throw PeerWire.DecodingError(description: "bad peer URL \(url)") }
        let answer = group.next().makePromise(of: ByteBuffer.self)
        let channel: any Channel
        do {
            channel = try ClientBootstrap(group: group)
                .connectTimeout(.seconds(2))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PeerFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(AnswerReader(answer: answer))
                    }
                }
                .connect(host: host, port: port).wait()
        } catch {
            // A peer that cannot be reached (it may have just died) answers nothing.
            answer.fail(error)
            throw error
        }
        defer { channel.close(promise: nil) }
        var buffer = channel.allocator.buffer(capacity: 128)
        hello.write(to: &buffer)
        let body = try JSONEncoder().encode(request)
        PeerWire.writeFrame(&buffer) { $0.writeBytes(body) }
        try channel.writeAndFlush(buffer).wait()
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(15)) {
            answer.fail(PeerWire.DecodingError(description: "no answer from \(url) within 15 s"))
        }
        defer { timeout.cancel() }
        let frame = try answer.futureResult.wait()
        return try JSONDecoder().decode(PeerResponse.self, from: Data(frame.readableBytesView))
    }
}

/// Takes the first frame a peer answers with.
private final class AnswerReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let answer: EventLoopPromise<ByteBuffer>

    init(answer: EventLoopPromise<ByteBuffer>) { self.answer = answer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        answer.succeed(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        answer.fail(PeerWire.DecodingError(description: "the peer closed the connection without answering"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        answer.fail(error)
        context.close(promise: nil)
    }
}
