import NIOCore

/// gRPC's length-prefixed message framing: one byte compressed flag, four bytes big-endian
/// length, then the message. A message may span any number of HTTP/2 DATA frames and one
/// frame may carry several messages.
struct MessageDeframer {
    /// Why a stream's bytes cannot be turned into messages.
    enum Failure: Error, Equatable {
        /// The message declares more bytes than the receiver accepts.
        case tooLarge(length: Int, limit: Int)
        /// The compressed flag is set but no compression was negotiated.
        case compressedWithoutEncoding

        /// The status a call ends with, worded as gRPC-Go words it.
        var status: GRPCStatus {
            switch self {
            case .tooLarge(let length, let limit):
                GRPCStatus(.resourceExhausted, "grpc: received message larger than max (\(length) vs. \(limit))")
            case .compressedWithoutEncoding:
                GRPCStatus(.internal, "grpc: compressed flag set with identity or empty encoding")
            }
        }
    }

    private var buffer: ByteBuffer?
    let maximumMessageSize: Int

    init(maximumMessageSize: Int) {
        self.maximumMessageSize = maximumMessageSize
    }

    /// Whether bytes of an incomplete message are waiting for more data.
    var hasPartialMessage: Bool {
        (buffer?.readableBytes ?? 0) > 0
    }

    mutating func append(_ data: ByteBuffer) {
        if buffer == nil || buffer!.readableBytes == 0 {
            buffer = data
        } else {
            var incoming = data
            buffer!.writeBuffer(&incoming)
        }
    }

    /// Drops the bytes waiting to be read (a unary call reads none after its one message).
    mutating func discard() {
        buffer = nil
    }

    /// The next complete message, or nil until more bytes arrive.
    mutating func next() throws(Failure) -> ByteBuffer? {
        guard var pending = buffer, pending.readableBytes >= 5,
            let flag = pending.getInteger(at: pending.readerIndex, as: UInt8.self),
            let length32 = pending.getInteger(at: pending.readerIndex + 1, as: UInt32.self)
        else { return nil }
        guard flag == 0 else { throw .compressedWithoutEncoding }
        let length = Int(length32)
        guard length <= maximumMessageSize else { throw .tooLarge(length: length, limit: maximumMessageSize) }
        guard pending.readableBytes >= 5 + length else { return nil }
        pending.moveReaderIndex(forwardBy: 5)
        let message = pending.readSlice(length: length)!
        buffer = pending.readableBytes == 0 ? nil : pending
        return message
    }
}
