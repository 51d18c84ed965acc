import Foundation
import GRPCWire
import Locking
import NIOCore
import NIOHPACK
import NIOPosix
import SwiftProtobuf
import Synchronization

typealias Bytes = Google_Protobuf_BytesValue

extension Bytes {
    init(_ text: String) {
        self.init()
        value = Data(text.utf8)
    }

    var text: String { String(decoding: value, as: UTF8.self) }
}

/// What the test service's handlers observed, for assertions from the test.
final class Observations: Sendable {
    private let events = Locked<[String]>([])

    func record(_ event: String) {
        events.withLock { $0.append(event) }
    }

    var all: [String] { events.withLock { $0 } }

    /// Waits (bounded) until an event satisfying `predicate` was recorded.
    /// Bounded, but generous: the whole suite runs in parallel on two cores.
    func waitFor(timeout: Duration = .seconds(30), _ predicate: (String) -> Bool) async -> String? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let match = all.first(where: predicate) { return match }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }
}

/// A service with one method of each kind plus methods that stall, sleep or echo metadata.
enum TestService {
    static let echo = "/test.Svc/Echo"
    static let expand = "/test.Svc/Expand"
    static let collect = "/test.Svc/Collect"
    static let chat = "/test.Svc/Chat"
    /// Never answers; records how the call was cancelled.
    static let stall = "/test.Svc/Stall"
    /// Answers after sleeping the number of milliseconds in the request (async handler).
    static let sleep = "/test.Svc/Sleep"
    /// Answers with the request's `token` header and sets a custom trailer.
    static let metadata = "/test.Svc/Metadata"
    /// Answers once and finishes with the request's text in an `x-served-by` trailer.
    static let trailers = "/test.Svc/Trailers"
    /// Fails with the request's text as the status message.
    static let fail = "/test.Svc/Fail"
    /// Streams as many 8 KiB responses as the request says, all at once: each holds its index
    /// in its first bytes.
    static let flood = "/test.Svc/Flood"

    static func router(_ observations: Observations) -> ServerRouter {
        var router = ServerRouter()
        router.unary(echo) { (request: Bytes, responder: UnaryResponder<Bytes>) in
            // Short ones only: turning a 4 MiB message into text would take most of a minute.
            if request.value.count <= 64 { observations.record("echo \(request.text)") }
            responder.succeed(request)
        }
        router.serverStreaming(expand) { (request: Bytes, call: ServerCall<Bytes, Bytes>) in
            for index in 1...3 { call.send(Bytes("\(request.text)-\(index)")) }
            call.finish()
        }
        router.streaming(collect, kind: .clientStreaming) { (call: ServerCall<Bytes, Bytes>) in
            var parts: [String] = []
            call.onMessage = { parts.append($0.text) }
            call.onEnd = {
                call.send(Bytes(parts.joined(separator: "+")))
                call.finish()
            }
        }
        router.streaming(chat) { (call: ServerCall<Bytes, Bytes>) in
            call.onMessage = { call.send(Bytes("echo:\($0.text)")) }
            call.onEnd = { call.finish() }
            call.onCancel = { observations.record("chat cancelled: \($0.code)") }
        }
        router.unary(stall) { (request: Bytes, responder: UnaryResponder<Bytes>) in
            observations.record("stall started")
            responder.context.cancellation.onCancel { observations.record("stall cancelled: \($0.code)") }
        }
        router.unary(sleep) { (request: Bytes, context: ServerContext) async throws -> Bytes in
            observations.record("sleep started")
            try await Task.sleep(for: .milliseconds(Int(request.text) ?? 0))
            return Bytes("slept")
        }
        router.unary(metadata) { (request: Bytes, responder: UnaryResponder<Bytes>) in
            responder.succeed(Bytes(responder.context.requestHeaders.first(name: "token") ?? "none"))
        }
        router.serverStreaming(flood) { (request: Bytes, call: ServerCall<Bytes, Bytes>) in
            for index in 0..<(Int(request.text) ?? 0) {
                var response = Bytes()
                response.value = Data("\(index) ".utf8) + Data(repeating: 0x78, count: 8192)
                call.send(response)
            }
            call.finish()
        }
        router.serverStreaming(trailers) { (request: Bytes, call: ServerCall<Bytes, Bytes>) in
            call.send(Bytes("body"))
            call.finish(.ok, trailers: ["x-served-by": request.text])
        }
        router.unary(fail) { (request: Bytes, responder: UnaryResponder<Bytes>) in
            responder.fail(GRPCStatus(.failedPrecondition, request.text))
        }
        return router
    }
}

/// A running test server with one client connection, torn down by `withTestServer`.
struct TestHarness {
    let server: GRPCServer
    let connection: GRPCClientConnection
    let observations: Observations
    var port: Int { server.localAddress!.port! }
}

func withTestServer<T>(
    maximumReceiveMessageSize: Int? = nil,
    streamsEndAtShutdown: GRPCStatus? = nil,
    prefaceTimeout: TimeAmount? = nil,
    _ body: (TestHarness) async throws -> T
) async throws -> T {
    let observations = Observations()
    var configuration = GRPCServer.Configuration(host: "127.0.0.1", port: 0)
    configuration.streamsEndAtShutdown = streamsEndAtShutdown
    if let prefaceTimeout { configuration.prefaceTimeout = prefaceTimeout }
    if let maximumReceiveMessageSize { configuration.limits.maximumReceiveMessageSize = maximumReceiveMessageSize }
    let server = try await GRPCServer.start(router: TestService.router(observations), configuration: configuration)
    let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.localAddress!.port!))
    do {
        let result = try await body(TestHarness(server: server, connection: connection, observations: observations))
        await connection.close()
        await server.shutdown(gracePeriod: .seconds(1))
        return result
    } catch {
        await connection.close()
        await server.shutdown(gracePeriod: .seconds(1))
        throw error
    }
}

/// The status a failing call threw.
func status(of body: () async throws -> Void) async -> GRPCStatus? {
    do {
        try await body()
        return nil
    } catch let status as GRPCStatus {
        return status
    } catch {
        return GRPCStatus(.unknown, "not a GRPCStatus: \(error)")
    }
}
