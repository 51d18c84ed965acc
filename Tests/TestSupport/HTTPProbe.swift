import Foundation
import Locking
import NIOCore
import NIOPosix
import Synchronization

/// A raw HTTP/1.x exchange over TCP, for testing what a server answers byte for byte: sends
/// `request` as given, reads until the server closes the connection (or `timeout` passes).
public enum HTTPProbe {
    /// An answer split into status code, headers (lowercased names) and body.
    public struct Answer: Sendable {
        public var raw: String
        public var status: Int { Int(raw.split(separator: " ", maxSplits: 2).dropFirst().first ?? "") ?? 0 }
        public var headers: [String: String] {
            let head = raw.components(separatedBy: "\r\n\r\n").first ?? ""
            var headers: [String: String] = [:]
            for line in head.components(separatedBy: "\r\n").dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            return headers
        }
        public var body: String { raw.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n") }
        /// The lines of a chunked body that hold JSON objects (each streamed message).
        public var jsonLines: [String] {
            body.components(separatedBy: "\r\n").flatMap { $0.components(separatedBy: "\n") }.filter { $0.hasPrefix("{") }
        }
    }

    /// `GET path` with `Connection: close`.
    public static func request(_ path: String, port: Int, timeout: TimeAmount = .seconds(15)) async throws -> Answer {
        try await request("GET", path, port: port, timeout: timeout)
    }

    /// `method path` with `Connection: close`.
    public static func request(_ method: String, _ path: String, port: Int, timeout: TimeAmount = .seconds(15)) async throws -> Answer {
        try await exchange(Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8), port: port, timeout: timeout)
    }

    /// `POST path` with `body` (and `headers`, `Name: value` each) and `Connection: close`.
    public static func post(
        _ path: String, _ body: String, headers: [String] = [], port: Int, timeout: TimeAmount = .seconds(15),
        until enough: (@Sendable (Answer) -> Bool)? = nil
    ) async throws -> Answer {
        let head = (["POST \(path) HTTP/1.1", "Host: 127.0.0.1", "Connection: close", "Content-Length: \(body.utf8.count)"] + headers)
            .joined(separator: "\r\n")
        return try await exchange(Array((head + "\r\n\r\n" + body).utf8), port: port, timeout: timeout, until: enough)
    }

    /// Sends `bytes` and returns everything the server sent until it closed the connection,
    /// `timeout` passed, or what arrived so far satisfies `enough` (then the client closes).
    public static func exchange(
        _ bytes: [UInt8], port: Int, timeout: TimeAmount = .seconds(15), until enough: (@Sendable (Answer) -> Bool)? = nil
    ) async throws -> Answer {
        let collector = Collector(enough: enough)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) } }
            .connect(host: "127.0.0.1", port: port).get()
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).get()
        let timer = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        try? await channel.closeFuture.get()
        timer.cancel()
        return Answer(raw: collector.text)
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        private let received = Locked("")
        private let enough: (@Sendable (Answer) -> Bool)?
        var text: String { received.withLock { $0 } }

        init(enough: (@Sendable (Answer) -> Bool)?) {
            self.enough = enough
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let chunk = String(buffer: unwrapInboundIn(data))
            let text = received.withLock { received in
                received += chunk
                return received
            }
            if let enough, enough(Answer(raw: text)) { context.close(promise: nil) }
        }
    }
}
