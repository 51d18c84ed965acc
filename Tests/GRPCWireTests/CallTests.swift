import Foundation
import NIOCore
import NIOHPACK
import NIOPosix
import SwiftProtobuf
import Testing

@testable import GRPCWire

@Suite("Calls of every kind over a real loopback connection")
struct CallTests {
    @Test func unaryEchoesTheRequest() async throws {
        try await withTestServer { harness in
            let response = try await harness.connection.unary(TestService.echo, Bytes("hello"), responseType: Bytes.self)
            #expect(response.text == "hello")
        }
    }

    @Test func serverStreamingSendsEveryMessageInOrder() async throws {
        try await withTestServer { harness in
            let call = harness.connection.makeStreamingCall(TestService.expand, requestType: Bytes.self, responseType: Bytes.self)
            call.send(Bytes("x"))
            call.finishSending()
            var received: [String] = []
            for try await message in call.responses { received.append(message.text) }
            #expect(received == ["x-1", "x-2", "x-3"])
            #expect(try await call.result.get().status == .ok)
        }
    }

    /// A consumer that does not read holds a bounded number of responses: past the buffer's
    /// mark the call stops reading and returning the stream's window, so the server waits.
    /// Once the consumer reads, every response comes, in order.
    @Test func aConsumerThatFallsBehindHoldsABoundedNumberAndLosesNone() async throws {
        try await withTestServer { harness in
            let total = 3000
            let call = harness.connection.makeStreamingCall(TestService.flood, requestType: Bytes.self, responseType: Bytes.self)
            call.send(Bytes("\(total)"))
            call.finishSending()
            // Wait (bounded) until the buffer stops growing.
            var last = -1
            var steady = 0
            for _ in 0..<400 where steady < 10 {
                try await Task.sleep(for: .milliseconds(25))
                let now = call.bufferedResponses
                steady = now == last && now > 0 ? steady + 1 : 0
                last = now
            }
            // 8 KiB each: the buffer's 4 MiB, and at most the stream's 4 MiB window read with them.
            let bound = (ResponseBuffer<Bytes>.highWaterBytes + 4 * 1024 * 1024) / 8192 + 1
            #expect(steady >= 10)
            #expect(last >= ResponseBuffer<Bytes>.highWater && last <= bound, "\(last) buffered")
            var next = 0
            for try await message in call.responses {
                #expect(message.text.hasPrefix("\(next) "), "response \(next)")
                next += 1
            }
            #expect(next == total)
            #expect(try await call.result.get().status == .ok)
        }
    }

    @Test func clientStreamingReceivesAllMessagesBeforeAnswering() async throws {
        try await withTestServer { harness in
            let call = harness.connection.makeStreamingCall(TestService.collect, requestType: Bytes.self, responseType: Bytes.self)
            for part in ["a", "b", "c"] { call.send(Bytes(part)) }
            call.finishSending()
            var received: [String] = []
            for try await message in call.responses { received.append(message.text) }
            #expect(received == ["a+b+c"])
        }
    }

    @Test func bidirectionalStreamingInterleavesRequestsAndResponses() async throws {
        try await withTestServer { harness in
            let call = harness.connection.makeStreamingCall(TestService.chat, requestType: Bytes.self, responseType: Bytes.self)
            var responses = call.responses.makeAsyncIterator()
            for word in ["one", "two", "three"] {
                call.send(Bytes(word))
                let echoed = try await responses.next()
                #expect(echoed?.text == "echo:\(word)")
            }
            call.finishSending()
            let end = try await responses.next()
            #expect(end == nil)
            let result = try await call.result.get()
            #expect(result.status == .ok)
        }
    }

    @Test func manyConcurrentCallsShareOneConnection() async throws {
        try await withTestServer { harness in
            let texts = try await withThrowingTaskGroup(of: String.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        try await harness.connection.unary(TestService.echo, Bytes("m\(index)"), responseType: Bytes.self).text
                    }
                }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
            #expect(texts == Set((0..<200).map { "m\($0)" }))
        }
    }

    @Test func metadataReachesTheHandler() async throws {
        try await withTestServer { harness in
            let response = try await harness.connection.unary(
                TestService.metadata, Bytes(""), metadata: ["token": "secret-token"], responseType: Bytes.self)
            #expect(response.text == "secret-token")
        }
    }

    @Test func statusMessagesSurvivePercentEncoding() async throws {
        try await withTestServer { harness in
            let message = "etcdserver: 100% ünïcode\nline two"
            let status = await status {
                _ = try await harness.connection.unary(TestService.fail, Bytes(message), responseType: Bytes.self)
            }
            #expect(status == GRPCStatus(.failedPrecondition, message))
        }
    }

    @Test func fourMebibyteMessagesCrossManyFrames() async throws {
        try await withTestServer(maximumReceiveMessageSize: 5 * 1024 * 1024) { harness in
            var request = Bytes()
            request.value = Data((0..<(4 * 1024 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            let response = try await harness.connection.unary(TestService.echo, request, responseType: Bytes.self)
            #expect(response.value.count == 4 * 1024 * 1024)
            #expect(response.value == request.value)
        }
    }

    @Test func oversizedMessageIsResourceExhaustedAndTheConnectionKeepsServing() async throws {
        try await withTestServer(maximumReceiveMessageSize: 1024 * 1024) { harness in
            var request = Bytes()
            request.value = Data(repeating: 7, count: 2 * 1024 * 1024)
            let encodedSize = (try request.serializedBytes() as [UInt8]).count
            let status = await status {
                _ = try await harness.connection.unary(TestService.echo, request, responseType: Bytes.self)
            }
            #expect(status == GRPCStatus(.resourceExhausted, "grpc: received message larger than max (\(encodedSize) vs. 1048576)"))
            #expect(try await harness.connection.unary(TestService.echo, Bytes("still here"), responseType: Bytes.self).text == "still here")
        }
    }

    @Test func unknownMethodsAndServicesAreUnimplemented() async throws {
        try await withTestServer { harness in
            let unknownMethod = await status {
                _ = try await harness.connection.unary("/test.Svc/Nope", Bytes(""), responseType: Bytes.self)
            }
            #expect(unknownMethod == GRPCStatus(.unimplemented, "unknown method Nope for service test.Svc"))
            let unknownService = await status {
                _ = try await harness.connection.unary("/other.Svc/Echo", Bytes(""), responseType: Bytes.self)
            }
            #expect(unknownService == GRPCStatus(.unimplemented, "unknown service other.Svc"))
        }
    }
}

@Suite("Deadlines and cancellation")
struct DeadlineTests {
    @Test func serverEnforcesTheClientsGRPCTimeout() async throws {
        try await withTestServer { harness in
            // The timeout travels only as a header, so the status can only come from the server.
            let status = await status {
                _ = try await harness.connection.unary(
                    TestService.stall, Bytes(""), metadata: ["grpc-timeout": "200m"], responseType: Bytes.self)
            }
            #expect(status == GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
            let cancelled = await harness.observations.waitFor { $0.hasPrefix("stall cancelled") }
            #expect(cancelled == "stall cancelled: deadlineExceeded")
        }
    }

    @Test func clientDeadlineFiresWhenTheServerNeverAnswers() async throws {
        // A TCP peer that accepts and never speaks HTTP/2 back.
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { $0.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: silent.localAddress!.port!))
        let started = ContinuousClock.now
        let status = await status {
            _ = try await connection.unary(TestService.echo, Bytes(""), timeout: .milliseconds(300), responseType: Bytes.self)
        }
        #expect(status == GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
        #expect(started.duration(to: .now) < .seconds(30))  // bounded, not timed: it must not hang
        await connection.close()
        try await silent.close()
    }

    @Test func clientCancellationReachesAStreamingHandler() async throws {
        try await withTestServer { harness in
            let call = harness.connection.makeStreamingCall(TestService.chat, requestType: Bytes.self, responseType: Bytes.self)
            var responses = call.responses.makeAsyncIterator()
            call.send(Bytes("ping"))
            let echoed = try await responses.next()
            #expect(echoed?.text == "echo:ping")
            call.cancel()
            let seen = await harness.observations.waitFor { $0.hasPrefix("chat cancelled") }
            #expect(seen == "chat cancelled: cancelled")
            let result = try await call.result.get()
            #expect(result.status == GRPCStatus(.cancelled, "context canceled"))
        }
    }

    /// A client that half-closes and cancels at once (grpcio when its caller stops reading)
    /// resets a stream the server may already have closed; nio-http2 reports that stream's
    /// error unwrapped, and the connection, with every other call on it, must go on.
    @Test func cancellingRightAfterHalfClosingKeepsTheConnection() async throws {
        try await withTestServer { harness in
            for round in 0..<20 {
                let call = harness.connection.makeStreamingCall(TestService.chat, requestType: Bytes.self, responseType: Bytes.self)
                var responses = call.responses.makeAsyncIterator()
                call.send(Bytes("round \(round)"))
                #expect(try await responses.next()?.text == "echo:round \(round)")
                call.finishSending()
                call.cancel()
                let echoed = try await harness.connection.unary(TestService.echo, Bytes("after \(round)"), responseType: Bytes.self)
                #expect(echoed.text == "after \(round)")
            }
            #expect(harness.connection.isUsable)
        }
    }

    /// A graceful shutdown ends open streams at once with the configured status (their
    /// handlers hear it as a cancellation), instead of keeping them for the grace period.
    @Test func shutdownEndsOpenStreamsAtOnce() async throws {
        let stopped = GRPCStatus(.unavailable, "server stopped")
        try await withTestServer(streamsEndAtShutdown: stopped) { harness in
            let call = harness.connection.makeStreamingCall(TestService.chat, requestType: Bytes.self, responseType: Bytes.self)
            var responses = call.responses.makeAsyncIterator()
            call.send(Bytes("hi"))
            #expect(try await responses.next()?.text == "echo:hi")
            let began = ContinuousClock.now
            let shutdown = Task { await harness.server.shutdown(gracePeriod: .seconds(30)) }
            let result = try await call.result.get()
            #expect(result.status == stopped)
            #expect(ContinuousClock.now - began < .seconds(10))
            #expect(await harness.observations.waitFor { $0.hasPrefix("chat cancelled") } == "chat cancelled: unavailable")
            await shutdown.value
        }
    }

    @Test func disconnectCancelsAUnaryHandler() async throws {
        try await withTestServer { harness in
            let pending = harness.connection.startUnary(TestService.stall, Bytes(""), responseType: Bytes.self)
            let started = await harness.observations.waitFor { $0 == "stall started" }
            #expect(started == "stall started")
            await harness.connection.close()
            let seen = await harness.observations.waitFor { $0.hasPrefix("stall cancelled") }
            #expect(seen == "stall cancelled: cancelled")
            #expect(throws: GRPCStatus.self) { try pending.wait() }
        }
    }
}

@Suite("Graceful shutdown")
struct ShutdownTests {
    @Test func callsInFlightFinishAndNewConnectionsAreRefused() async throws {
        let observations = Observations()
        let server = try await GRPCServer.start(router: TestService.router(observations), configuration: .init())
        let port = server.localAddress!.port!
        let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: port))
        let inFlight = connection.startUnary(TestService.sleep, Bytes("700"), responseType: Bytes.self)
        let started = await observations.waitFor { $0 == "sleep started" }
        #expect(started == "sleep started")
        let shutdownStarted = ContinuousClock.now
        await server.shutdown(gracePeriod: .seconds(60))
        #expect(try await inFlight.get().text == "slept")
        // Shutdown ends when the call does, long before the grace period would.
        #expect(shutdownStarted.duration(to: .now) < .seconds(30))
        // The client learns of the GOAWAY and the close on its own event loop: give it a moment.
        let deadline = ContinuousClock.now + .seconds(5)
        while connection.isUsable, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(!connection.isUsable)
        await #expect(throws: (any Error).self) {
            _ = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: port))
        }
        await connection.close()
    }
}
