import EtcdHTTP
import Foundation
import GRPCWire
import NIOCore
import NIOHTTP1
import Testing
import TestSupport

/// The HTTP/1.1 plumbing on its own: a slow client is disconnected, a body over the limit is
/// refused, and neither disturbs the next client.
@Suite("HTTP/1.1 service: slow clients and large bodies")
struct HTTPServiceTests {
    struct Echo: HTTPEndpoints {
        func respond(to request: HTTPRequest, completion: @escaping @Sendable (HTTPResponse) -> Void) {
            completion(.text("\(request.method.rawValue) \(request.path) \(request.body.readableBytes)\n"))
        }
    }

    @Test func slowHeadersAreCutOffAndLargeBodiesRefused() async throws {
        var configuration = GRPCServer.Configuration()
        configuration.http1 = HTTPService(endpoints: Echo(), maximumBodyBytes: 16, headerTimeout: .milliseconds(300))
        let server = try await GRPCServer.start(router: ServerRouter(), configuration: configuration)
        let port = try #require(server.localAddress?.port)

        // Half a request line, then nothing: closed after the header deadline, answered nothing.
        let start = ContinuousClock.now
        let slow = try await HTTPProbe.exchange(Array("GET /sl".utf8), port: port, timeout: .seconds(10))
        let waited = ContinuousClock.now - start
        #expect(slow.raw.isEmpty)
        #expect(waited >= .milliseconds(250) && waited < .seconds(5), "\(waited)")

        let body = String(repeating: "x", count: 17)
        let large = try await HTTPProbe.exchange(
            Array("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n\(body)".utf8), port: port)
        #expect(large.status == 413)
        #expect(large.headers["connection"] == "close")
        let small = try await HTTPProbe.exchange(
            Array("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\nConnection: close\r\n\r\n\(String(body.dropLast()))".utf8),
            port: port)
        #expect(small.status == 200 && small.body == "POST /small 16\n")
        await server.shutdown(gracePeriod: .seconds(1))
    }
}
