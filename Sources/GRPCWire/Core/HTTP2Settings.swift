import NIOCore
import NIOHTTP2

/// The HTTP/2 connection and stream settings both ends of a gRPC connection use.
struct GRPCHTTP2Configuration {
    var connection = NIOHTTP2Handler.ConnectionConfiguration()
    var stream = NIOHTTP2Handler.StreamConfiguration()

    /// - Parameters:
    ///   - streamWindowSize: flow-control window per stream (advertised and maintained).
    ///   - connectionWindowSize: flow-control window for the whole connection.
    ///   - extraSettings: settings particular to one side (push off, concurrent streams).
    init(streamWindowSize: Int, connectionWindowSize: Int, extraSettings: [HTTP2Setting]) {
        connection.initialSettings = extraSettings + [HTTP2Setting(parameter: .initialWindowSize, value: streamWindowSize)]
        connection.targetWindowSize = connectionWindowSize
        // gRPC-Go peers send a BDP-estimation PING about once per round trip; swift-nio-http2's
        // default (200 control frames per 30 s) would answer them with GOAWAY. On the server,
        // ping floods are bounded by ServerConnectionManager's strike policy instead.
        connection.controlFrameRateLimit.maximumCount = 1_000_000
        connection.controlFrameRateLimit.windowLength = .seconds(1)
        stream.targetWindowSize = streamWindowSize
    }
}
