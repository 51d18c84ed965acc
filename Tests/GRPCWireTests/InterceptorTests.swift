import Locking
import NIOCore
import NIOHPACK
import Synchronization
import Testing

@testable import GRPCWire

/// Records what an interceptor is told; refuses calls whose `token` metadata is "bad".
private final class RecordingInterceptor: ServerInterceptor {
    let events = Locked<[String]>([])

    func callStarted(_ method: ServerMethod, context: inout ServerContext) -> CallAdmission {
        events.withLock { $0.append("start \(method.service) \(method.name) \(method.kind.rawValue)") }
        return context.metadata("token") == "bad" ? .refuse(GRPCStatus(.unauthenticated, "etcdserver: invalid auth token")) : .proceed
    }

    func receivedMessage(_ method: ServerMethod, bytes: Int) {
        events.withLock { $0.append("received \(bytes)") }
    }

    func sentMessage(_ method: ServerMethod, bytes: Int) {
        events.withLock { $0.append("sent \(bytes)") }
    }

    func callEnded(_ method: ServerMethod, status: GRPCStatus, startedAt: NIODeadline, remoteAddress: SocketAddress?) {
        let elapsed = NIODeadline.now() >= startedAt
        let caller = remoteAddress?.ipAddress == "127.0.0.1" ? "" : " (from \(String(describing: remoteAddress)))"
        events.withLock { $0.append("end \(method.name) \(status.code)\(elapsed ? "" : " (before it started?)")\(caller)") }
    }

    /// Waits (bounded) until `count` events were recorded: `callEnded` may run just after the
    /// client saw the trailers.
    func waitForEvents(_ count: Int) async -> [String] {
        let deadline = ContinuousClock.now + .seconds(10)
        while events.withLock({ $0.count }) < count, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        return events.withLock { $0 }
    }
}

@Suite("Server interceptor: every routed call, start to end")
struct InterceptorTests {
    private func withInterceptedServer(_ body: (GRPCClientConnection, RecordingInterceptor, Observations) async throws -> Void) async throws {
        let interceptor = RecordingInterceptor()
        let observations = Observations()
        var configuration = GRPCServer.Configuration(host: "127.0.0.1", port: 0)
        configuration.interceptor = interceptor
        let server = try await GRPCServer.start(router: TestService.router(observations), configuration: configuration)
        let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.localAddress!.port!))
        do {
            try await body(connection, interceptor, observations)
        } catch {
            await connection.close()
            await server.shutdown(gracePeriod: .seconds(1))
            throw error
        }
        await connection.close()
        await server.shutdown(gracePeriod: .seconds(1))
    }

    @Test func aUnaryCallIsSeenStartedReceivedSentAndEnded() async throws {
        try await withInterceptedServer { connection, interceptor, _ in
            let echoed = try await connection.unary(TestService.echo, Bytes("hello"), responseType: Bytes.self)
            #expect(echoed.text == "hello")
            // "hello" as a BytesValue: field 1, length 5, 5 bytes.
            #expect(await interceptor.waitForEvents(4) == ["start test.Svc Echo unary", "received 7", "sent 7", "end Echo ok"])
        }
    }

    @Test func aRefusedCallNeverReachesItsHandler() async throws {
        try await withInterceptedServer { connection, interceptor, observations in
            let status = await status {
                _ = try await connection.unary(TestService.stall, Bytes("x"), metadata: ["token": "bad"], responseType: Bytes.self)
            }
            #expect(status == GRPCStatus(.unauthenticated, "etcdserver: invalid auth token"))
            #expect(await interceptor.waitForEvents(2) == ["start test.Svc Stall unary", "end Stall unauthenticated"])
            #expect(observations.all.isEmpty)
        }
    }

    @Test func streamingKindsAndCancellationAreReported() async throws {
        try await withInterceptedServer { connection, interceptor, _ in
            let collect = connection.makeStreamingCall(TestService.collect, requestType: Bytes.self, responseType: Bytes.self)
            collect.send(Bytes("a"))
            collect.finishSending()
            _ = try await collect.result.get()
            #expect(await interceptor.waitForEvents(4) == ["start test.Svc Collect client_stream", "received 3", "sent 3", "end Collect ok"])
            interceptor.events.withLock { $0 = [] }
            let chat = connection.makeStreamingCall(TestService.chat, requestType: Bytes.self, responseType: Bytes.self)
            var responses = chat.responses.makeAsyncIterator()
            chat.send(Bytes("b"))
            _ = try await responses.next()
            chat.cancel()
            #expect(await interceptor.waitForEvents(4) == ["start test.Svc Chat bidi_stream", "received 3", "sent 8", "end Chat cancelled"])
        }
    }

    @Test func unknownMethodsAreNotIntercepted() async throws {
        try await withInterceptedServer { connection, interceptor, _ in
            let status = await status { _ = try await connection.unary("/test.Svc/Nope", Bytes("x"), responseType: Bytes.self) }
            #expect(status?.code == .unimplemented)
            #expect(interceptor.events.withLock { $0 }.isEmpty)
        }
    }
}
