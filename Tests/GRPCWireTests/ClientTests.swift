import NIOCore
import NIOHPACK
import NIOPosix
import Testing

@testable import GRPCWire

@Suite("Client: metadata out, several endpoints")
struct ClientTests {
    @Test func customTrailersReachTheClient() async throws {
        try await withTestServer { harness in
            let call = harness.connection.makeStreamingCall(TestService.trailers, requestType: Bytes.self, responseType: Bytes.self)
            call.send(Bytes("member-1"))
            call.finishSending()
            var bodies: [String] = []
            for try await message in call.responses { bodies.append(message.text) }
            let result = try await call.result.get()
            #expect(bodies == ["body"])
            #expect(result.status == .ok)
            #expect(result.trailers.first(name: "x-served-by") == "member-1")
        }
    }

    @Test func endpointsParseLikeEtcdctlFlags() {
        #expect(GRPCClient.Endpoint("127.0.0.1:2379") == .init(host: "127.0.0.1", port: 2379))
        #expect(GRPCClient.Endpoint("http://localhost:2379/") == .init(host: "localhost", port: 2379))
        #expect(GRPCClient.Endpoint("https://[::1]:2379") == .init(host: "::1", port: 2379))
        #expect(GRPCClient.Endpoint("localhost") == nil)
        #expect(GRPCClient.Endpoint("host:port") == nil)
    }

    @Test func callsRotateOverEndpointsAndSkipDeadOnes() async throws {
        let first = Observations()
        let second = Observations()
        let serverA = try await GRPCServer.start(router: TestService.router(first), configuration: .init())
        let serverB = try await GRPCServer.start(router: TestService.router(second), configuration: .init())
        // A port nothing listens on: bind one, note it, close it.
        let placeholder = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let deadPort = placeholder.localAddress!.port!
        try await placeholder.close()

        let client = GRPCClient(endpoints: [
            .init(host: "127.0.0.1", port: serverA.localAddress!.port!),
            .init(host: "127.0.0.1", port: deadPort),
            .init(host: "127.0.0.1", port: serverB.localAddress!.port!),
        ])
        for index in 0..<6 {
            let response = try await client.unary(TestService.sleep, Bytes("0"), responseType: Bytes.self)
            #expect(response.text == "slept", "call \(index)")
        }
        #expect(first.all.count >= 2)
        #expect(second.all.count >= 2)
        #expect(first.all.count + second.all.count == 6)

        await serverA.shutdown(gracePeriod: .seconds(1))
        // With one server gone, calls still succeed on the other.
        for _ in 0..<3 {
            let response = try await client.unary(TestService.sleep, Bytes("0"), responseType: Bytes.self)
            #expect(response.text == "slept")
        }
        await client.close()
        await serverB.shutdown(gracePeriod: .seconds(1))
    }
}
