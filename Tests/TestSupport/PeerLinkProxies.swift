import Foundation
import EtcdServer
import Locking
import NIOCore
import NIOPosix
import Synchronization

/// Network partitions between real member processes: each member advertises a proxy's port as
/// its peer URL, and the proxy relays to the member's real peer port. A proxy reads the
/// dialling member's ID from the first frame of the peer protocol (length, magic, version,
/// cluster ID, from, to), so it can refuse and cut links that cross a partition. Peer HTTP
/// requests (a joining member asking for the membership) and members added later, whose IDs the
/// proxies do not know, count as coming from outside every partition: they reach only members
/// that are not isolated.
public final class PeerLinkProxies: Sendable {
    /// The port members dial to reach member `i` (advertise `http://127.0.0.1:<port>`).
    public let advertisedPorts: [Int]
    private let table: LinkTable
    private let listeners: [any Channel]

    /// Proxies on `ports` in front of members whose real peer ports are `targets`; `ids` are their
    /// member IDs (as the members compute them from the advertised URLs), in the same order.
    public init(targets: [Int], ids: [UInt64], listeningOn ports: [Int]) async throws {
        let table = LinkTable(ids: ids)
        var listeners: [any Channel] = []
        for (index, target) in targets.enumerated() {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelInitializer { child in
                    child.eventLoop.makeCompletedFuture {
                        try child.pipeline.syncOperations.addHandler(InboundRelay(to: index, targetPort: target, table: table))
                    }
                }
                .bind(host: "127.0.0.1", port: ports[index]).get()
            listeners.append(channel)
        }
        self.table = table
        self.listeners = listeners
        advertisedPorts = listeners.map { $0.localAddress!.port! }
    }

    /// Cuts every link between `members` and the rest, now and until ``heal()``.
    public func isolate(_ members: Set<Int>) {
        for channel in table.isolate(members) { channel.close(promise: nil) }
    }

    /// Lets every link be made again.
    public func heal() {
        _ = table.isolate([])
    }

    public func close() {
        for channel in listeners { channel.close(promise: nil) }
        for channel in table.isolate(Set(0..<advertisedPorts.count)) { channel.close(promise: nil) }
    }

    deinit { close() }
}

/// Which links exist and which may: shared by the proxies' connections.
final class LinkTable: Sendable {
    private struct Link {
        var from: Int
        var to: Int
        var channels: [any Channel]
    }

    private struct State {
        var indexByID: [UInt64: Int]
        var isolated: Set<Int> = []
        var links: [Link] = []
    }

    private let state: Locked<State>

    init(ids: [UInt64]) {
        state = Locked(State(indexByID: Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })))
    }

    /// The index standing for a dialler from outside every partition.
    static let outsider = -1

    /// The index of member `id` (``outsider`` for nil or an unknown ID) if a link from it to
    /// member `to` may exist now.
    func admit(from id: UInt64?, to: Int) -> Int? {
        state.withLock { state in
            let from = id.flatMap { state.indexByID[$0] } ?? Self.outsider
            guard state.isolated.contains(from) == state.isolated.contains(to) else { return nil }
            return from
        }
    }

    /// Records a link, unless a partition began while it was being made (then it is returned to be closed).
    func add(from: Int, to: Int, channels: [any Channel]) -> Bool {
        state.withLock { state in
            guard state.isolated.contains(from) == state.isolated.contains(to) else { return false }
            state.links.append(Link(from: from, to: to, channels: channels))
            return true
        }
    }

    /// Sets the isolated side; returns the channels of links that now cross it.
    func isolate(_ members: Set<Int>) -> [any Channel] {
        state.withLock { state in
            state.isolated = members
            var cut: [any Channel] = []
            state.links.removeAll { link in
                let crosses = members.contains(link.from) != members.contains(link.to)
                if crosses { cut += link.channels }
                return crosses
            }
            return cut
        }
    }
}

/// One proxied connection: waits for the hello frame (or the first bytes of anything else),
/// asks whether the link is allowed, then relays bytes both ways until either side closes.
private final class InboundRelay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let to: Int
    private let targetPort: Int
    private let table: LinkTable
    private var buffered: ByteBuffer?
    private var outbound: (any Channel)?
    private var decided = false

    init(to: Int, targetPort: Int, table: LinkTable) {
        self.to = to
        self.targetPort = targetPort
        self.table = table
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if let outbound {
            outbound.writeAndFlush(bytes, promise: nil)
            return
        }
        if buffered == nil { buffered = bytes } else { buffered!.writeBuffer(&bytes) }
        // length(4) magic(8) version(1) cluster(8) from(8)
        guard !decided, let buffer = buffered, buffer.readableBytes >= 4 + 8 else { return }
        let isHello = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt64.self) == PeerWire.magic
        guard !isHello || buffer.readableBytes >= 4 + 8 + 1 + 8 + 8 else { return }
        decided = true
        let from = isHello ? buffer.getInteger(at: buffer.readerIndex + 21, as: UInt64.self) : nil
        guard let fromIndex = table.admit(from: from, to: to) else {
            context.close(promise: nil)
            return
        }
        let inbound = context.channel
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let (to, table) = (to, table)
        ClientBootstrap(group: context.eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(BackRelay(inbound: inbound))
                }
            }
            .connect(host: "127.0.0.1", port: targetPort)
            .hop(to: context.eventLoop)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    let relay = loopBound.value
                    relay.outbound = channel
                    if let pending = relay.buffered { channel.writeAndFlush(pending, promise: nil) }
                    relay.buffered = nil
                    channel.closeFuture.whenComplete { _ in inbound.close(promise: nil) }
                    if !table.add(from: fromIndex, to: to, channels: [inbound, channel]) {
                        channel.close(promise: nil)
                    }
                case .failure:
                    inbound.close(promise: nil)
                }
            }
    }

    func channelInactive(context: ChannelHandlerContext) {
        outbound?.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Relays the member's bytes back to the dialler.
private final class BackRelay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let inbound: any Channel

    init(inbound: any Channel) { self.inbound = inbound }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inbound.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
