import NIOCore
import SwiftProtobuf

/// A `ByteBuffer` that SwiftProtobuf reads from or serializes into directly.
///
/// When SwiftProtobuf allocates one to serialize a message, the buffer starts with room for
/// the five-byte gRPC prefix, so a response becomes a complete frame with no extra copy.
struct ProtobufByteBuffer: SwiftProtobufContiguousBytes {
    var buffer: ByteBuffer
    /// Bytes in front of the message (the gRPC prefix when serializing, zero when decoding).
    let payloadOffset: Int

    init(wrapping buffer: ByteBuffer) {
        self.buffer = buffer
        self.payloadOffset = 0
    }

    init(repeating: UInt8, count: Int) {
        buffer = ByteBufferAllocator().buffer(capacity: 5 + count)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(truncatingIfNeeded: count))
        buffer.writeRepeatingByte(repeating, count: count)
        payloadOffset = 5
    }

    init<S: Sequence>(_ sequence: S) where S.Element == UInt8 {
        let bytes = Array(sequence)
        self.init(repeating: 0, count: bytes.count)
        buffer.setBytes(bytes, at: buffer.readerIndex + payloadOffset)
    }

    var count: Int { buffer.readableBytes - payloadOffset }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeReadableBytes { try body(UnsafeRawBufferPointer(rebasing: $0.dropFirst(payloadOffset))) }
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        let offset = payloadOffset
        return try buffer.withUnsafeMutableReadableBytes {
            try body(UnsafeMutableRawBufferPointer(rebasing: $0.dropFirst(offset)))
        }
    }
}

extension SwiftProtobuf.Message {
    /// Decodes a message from the payload of one gRPC frame.
    init(grpcPayload: ByteBuffer) throws {
        try self.init(serializedBytes: ProtobufByteBuffer(wrapping: grpcPayload))
    }

    /// Encodes the message as one complete gRPC frame (prefix included); a message that
    /// cannot be encoded is the INTERNAL status the call then ends with.
    func grpcFrame() throws(GRPCStatus) -> ByteBuffer {
        do {
            let framed: ProtobufByteBuffer = try serializedBytes()
            return framed.buffer
        } catch {
            throw GRPCStatus(.internal, "grpc: error marshalling \(Self.protoMessageName): \(error)")
        }
    }
}
