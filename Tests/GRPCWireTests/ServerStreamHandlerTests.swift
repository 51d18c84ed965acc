import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import SwiftProtobuf
import Synchronization
import Testing

@testable import GRPCWire

/// One `ServerStreamHandler` in an `EmbeddedChannel`, as a streaming call's child channel runs
/// it: frames in, frames out, no network and no clock but the embedded loop's.
private struct StreamHarness {
    let channel: EmbeddedChannel
    let observations = Observations()

    init() throws {
        let loop = EmbeddedEventLoop()
        channel = EmbeddedChannel(loop: loop)
        let handler = ServerStreamHandler(
            router: TestService.router(observations), limits: GRPCServer.MessageLimits(),
            connection: ServerConnectionManager(eventLoop: loop, policy: KeepalivePolicy()), batch: EventLoopBatch(eventLoop: loop))
        try channel.pipeline.syncOperations.addHandler(handler)
    }

    func headers(path: String, method: String = "POST", contentType: String = "application/grpc", extra: HPACKHeaders = [:], endStream: Bool = false)
        throws
    {
        var headers: HPACKHeaders = [":method": method, ":scheme": "http", ":path": path, "content-type": contentType]
        headers.add(contentsOf: extra)
        try channel.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: headers, endStream: endStream)))
    }

    func message(_ text: String, endStream: Bool = false) throws {
        let frame = try Bytes(text).grpcFrame()
        try channel.writeInbound(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(frame), endStream: endStream)))
    }

    /// Every frame the handler wrote, described: `headers(...)`, `data(text)`, `trailers(...)`, `rst(code)`.
    func written() throws -> [String] {
        var frames: [String] = []
        while let payload = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) {
            switch payload {
            case .headers(let headers):
                let status = headers.headers.first(name: "grpc-status")
                let http = headers.headers.first(name: ":status")
                if let status {
                    let message = headers.headers.first(name: "grpc-message").map { " \($0)" } ?? ""
                    frames.append("\(http.map { "headers \($0) + " } ?? "")trailers \(status)\(message)\(headers.endStream ? "" : " (no END_STREAM)")")
                } else {
                    frames.append("headers \(http ?? "?")")
                }
            case .data(let data):
                guard case .byteBuffer(var buffer) = data.data else { continue }
                buffer.moveReaderIndex(forwardBy: 5)
                frames.append("data \((try? Bytes(serializedBytes: Array(buffer.readableBytesView)))?.text ?? "?")")
            case .rstStream(let code):
                frames.append("rst \(code == .noError ? "NO_ERROR" : "\(code)")")
            default:
                frames.append("\(payload)")
            }
        }
        return frames
    }
}

@Suite("ServerStreamHandler in an EmbeddedChannel: each transition of a call")
struct ServerStreamHandlerTests {
    @Test func aUnaryCallAnswersWithHeadersMessageAndTrailers() throws {
        let stream = try StreamHarness()
        try stream.headers(path: TestService.echo)
        let frames10 = try stream.written()
        #expect(frames10.isEmpty)
        try stream.message("hello", endStream: true)
        let frames1 = try stream.written()
        #expect(frames1 == ["headers 200", "data hello", "trailers 0"])
    }

    @Test func aUnaryAnswerBeforeTheClientsEndStreamResetsAfterTheTrailers() throws {
        let stream = try StreamHarness()
        try stream.headers(path: TestService.echo)
        try stream.message("early")
        let frames2 = try stream.written()
        #expect(frames2 == ["headers 200", "data early", "trailers 0", "rst NO_ERROR"])
        // The client's late END_STREAM is ignored.
        try stream.message("late", endStream: true)
        let frames11 = try stream.written()
        #expect(frames11.isEmpty)
    }

    /// As in gRPC-Go, a unary call reads one message: a second one (or half of one) is never
    /// read, and the call waits for its handler's answer.
    @Test func aSecondUnaryRequestIsNeverRead() throws {
        let stream = try StreamHarness()
        try stream.headers(path: TestService.stall)
        try stream.message("one")
        try stream.message("two", endStream: true)
        let frames3 = try stream.written()
        #expect(frames3.isEmpty)
    }

    @Test func aUnaryCallWithoutAMessageIsInternal() throws {
        let stream = try StreamHarness()
        try stream.headers(path: TestService.echo, endStream: true)
        let frames4 = try stream.written()
        #expect(frames4 == ["headers 200 + trailers 13 grpc: no request message for a unary method"])
    }

    @Test(arguments: [
        ("GET", "application/grpc", "headers 405 + trailers 13 grpc: request method must be POST"),
        ("POST", "text/plain", "headers 415 + trailers 13 grpc: invalid gRPC request content-type \"text/plain\""),
    ])
    func nonGRPCRequestsGetAnHTTPStatus(_ method: String, _ contentType: String, _ expected: String) throws {
        let stream = try StreamHarness()
        try stream.headers(path: TestService.echo, method: method, contentType: contentType, endStream: true)
        let frames5 = try stream.written()
        #expect(frames5 == [expected])
    }

    @Test func anUnknownMethodIsTrailersOnlyUnimplementedAndResetsASendingClient() throws {
        let stream = try StreamHarness()
        try stream.headers(path: "/test.Svc/Nope")
        let frames6 = try stream.written()
        #expect(frames6 == ["headers 200 + trailers 12 unknown method Nope for service test.Svc", "rst NO_ERROR"])
    }

    @Test func headersInTheMiddleOfARequestAreInternal() throws {
        let stream = try StreamHarness()
        try stream.headers(path: TestService.chat)
        try stream.channel.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: ["x": "y"], endStream: false)))
        let frames7 = try stream.written()
        #expect(frames7 == ["headers 200 + trailers 13 grpc: unexpected HEADERS frame in the middle of a request", "rst NO_ERROR"])
        #expect(stream.observations.all == ["chat cancelled: internal"])
    }

    @Test func trailingHeadersEndAStreamingCallsRequests() throws {
        let stream = try StreamHarness()
        try stream.headers(path: TestService.chat)
        try stream.message("one")
        try stream.channel.writeInbound(HTTP2Frame.FramePayload.headers(.init(headers: [:], endStream: true)))
        let frames8 = try stream.written()
        #expect(frames8 == ["headers 200", "data echo:one", "trailers 0"])
    }

    @Test func aClientResetCancelsTheHandlerAndNothingMoreIsWritten() throws {
        let stream = try StreamHarness()
        try stream.headers(path: TestService.chat)
        try stream.message("one")
        _ = try stream.written()
        try stream.channel.writeInbound(HTTP2Frame.FramePayload.rstStream(.cancel))
        #expect(stream.observations.all == ["chat cancelled: cancelled"])
        try stream.message("ignored")
        let frames12 = try stream.written()
        #expect(frames12.isEmpty)
    }

    @Test func theDeadlineEndsTheCallAndCancelsTheHandler() throws {
        let stream = try StreamHarness()
        try stream.headers(path: TestService.chat, extra: ["grpc-timeout": "50m"])
        (stream.channel.eventLoop as! EmbeddedEventLoop).advanceTime(by: .milliseconds(49))
        let frames13 = try stream.written()
        #expect(frames13.isEmpty)
        (stream.channel.eventLoop as! EmbeddedEventLoop).advanceTime(by: .milliseconds(1))
        let frames9 = try stream.written()
        #expect(frames9 == ["headers 200 + trailers 4 context deadline exceeded", "rst NO_ERROR"])
        #expect(stream.observations.all == ["chat cancelled: deadlineExceeded"])
    }

    @Test func theStreamClosingCancelsAnOpenCall() throws {
        let stream = try StreamHarness()
        try stream.headers(path: TestService.chat)
        _ = try stream.channel.finish()
        #expect(stream.observations.all == ["chat cancelled: cancelled"])
    }
}
