import Foundation
import Logging
import NIOCore
import NIOPosix
import Raft
import Synchronization
import TransportSecurity

/// Sends one snapshot on a new connection, blocking the calling (non-event-loop) thread.
enum SnapshotStreamer {
    static let chunkSize = 1 << 20

    /// Returns the bytes of the file sent.
    static func stream(
        file path: String, with message: Message, hello: PeerHello, urls: [String], group: any EventLoopGroup,
        tls: TLSCredentials?
    ) throws -> UInt64 {
        guard let url = urls.first, let peerURL = PeerURL(url) else {
            throw PeerWire.DecodingError(description: "no usable peer URL in \(urls)")
        }
        guard let file = FileHandle(forReadingAtPath: path) else { throw PeerWire.DecodingError(description: "cannot read \(path)") }
        defer { try? file.close() }
        let channel = try peerURL.connect(group: group, tls: tls, timeout: .seconds(5)).wait()
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
