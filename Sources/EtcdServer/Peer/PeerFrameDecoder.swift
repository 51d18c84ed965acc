import Foundation
import Logging
import NIOCore
import NIOPosix
import Raft
import Synchronization

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
