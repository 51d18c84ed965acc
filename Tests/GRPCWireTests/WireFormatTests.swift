import Foundation
import NIOCore
import NIOHPACK
import SwiftProtobuf
import Testing

@testable import GRPCWire

extension ByteBuffer {
    /// Writes one uncompressed gRPC frame holding `message`.
    fileprivate mutating func writeGRPCFrame(_ message: ByteBuffer) {
        writeInteger(UInt8(0))
        writeInteger(UInt32(message.readableBytes))
        writeImmutableBuffer(message)
    }
}

@Suite("Wire format pieces")
struct WireFormatTests {
    @Test(arguments: [
        ("1S", TimeAmount.seconds(1)), ("200m", .milliseconds(200)), ("5u", .microseconds(5)),
        ("7n", .nanoseconds(7)), ("2M", .minutes(2)), ("3H", .hours(3)), ("99999999S", .seconds(99_999_999)),
    ])
    func timeoutParses(_ text: String, _ amount: TimeAmount) {
        #expect(GRPCTimeout.parse(text[...]) == amount)
    }

    @Test(arguments: ["", "S", "10", "-1S", "1x", "123456789S", "1.5S"])
    func malformedTimeoutIsRejected(_ text: String) {
        #expect(GRPCTimeout.parse(text[...]) == nil)
    }

    @Test func timeoutFormatsWithTheFinestUnitThatFits() {
        #expect(GRPCTimeout.format(.milliseconds(250)) == "250000u")
        #expect(GRPCTimeout.format(.seconds(5)) == "5000000u")
        #expect(GRPCTimeout.format(.seconds(500)) == "500000m")
        #expect(GRPCTimeout.format(.nanoseconds(1500)) == "1500n")
        #expect(GRPCTimeout.parse(GRPCTimeout.format(.seconds(3600))[...]) == .seconds(3600))
    }

    @Test func statusMessagesArePercentEncodedOnlyWhereNeeded() {
        #expect(GRPCStatus.percentEncoded("plain message") == "plain message")
        #expect(GRPCStatus.percentEncoded("100%") == "100%25")
        #expect(GRPCStatus.percentEncoded("é\n") == "%C3%A9%0A")
        #expect(GRPCStatus.percentDecoded("%C3%A9%0A100%25") == "é\n100%")
        #expect(GRPCStatus.percentDecoded("bad %Z1 escape %") == "bad %Z1 escape %")
    }

    @Test func unknownStatusCodesBecomeUnknown() {
        #expect(GRPCStatus(statusField: "99", messageField: nil).code == .unknown)
        #expect(GRPCStatus(statusField: nil, messageField: "x") == GRPCStatus(.unknown, "x"))
        #expect(GRPCStatus(statusField: "5", messageField: "a%20b") == GRPCStatus(.notFound, "a b"))
    }

    @Test func deframerReassemblesMessagesSplitAnywhere() throws {
        var wire = ByteBuffer()
        for text in ["first", "", "third message"] {
            wire.writeGRPCFrame(ByteBuffer(string: text))
        }
        let bytes = Array(wire.readableBytesView)
        for cut in 0...bytes.count {
            var deframer = MessageDeframer(maximumMessageSize: 100)
            var messages: [String] = []
            for piece in [bytes[..<cut], bytes[cut...]] {
                deframer.append(ByteBuffer(bytes: piece))
                while let message = try deframer.next() { messages.append(String(buffer: message)) }
            }
            #expect(messages == ["first", "", "third message"], "cut at \(cut)")
            #expect(!deframer.hasPartialMessage)
        }
    }

    @Test func deframerRejectsOversizedAndCompressedMessages() {
        var tooLarge = MessageDeframer(maximumMessageSize: 4)
        var wire = ByteBuffer()
        wire.writeGRPCFrame(ByteBuffer(string: "12345"))
        tooLarge.append(wire)
        #expect(throws: MessageDeframer.Failure.tooLarge(length: 5, limit: 4)) { try tooLarge.next() }

        var compressed = MessageDeframer(maximumMessageSize: 100)
        compressed.append(ByteBuffer(bytes: [1, 0, 0, 0, 1, 0x41]))
        #expect(throws: MessageDeframer.Failure.compressedWithoutEncoding) { try compressed.next() }
    }

    @Test func protobufFramesCarryTheirLengthPrefix() throws {
        let message = Google_Protobuf_BytesValue.with { $0.value = Data("abc".utf8) }
        var frame = try message.grpcFrame()
        #expect(frame.readInteger(as: UInt8.self) == 0)
        #expect(frame.readInteger(as: UInt32.self) == 5)
        #expect(try Google_Protobuf_BytesValue(grpcPayload: frame) == message)
    }
}
