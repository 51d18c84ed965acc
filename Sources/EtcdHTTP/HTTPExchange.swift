import Foundation
import NIOCore
import NIOHTTP1

/// One HTTP/1.1 request, read whole (its body bounded).
package struct HTTPRequest: Sendable {
    package var method: HTTPMethod
    /// The path without the query.
    package var path: String
    /// Query parameters in order; a name may repeat.
    package var query: [(name: String, value: String)]
    package var headers: HTTPHeaders
    package var body: ByteBuffer
    /// The common name in the client certificate the connection's TLS verified, if any.
    package var clientCommonName: String?
    /// Whether the request came over TLS.
    package var overTLS = false

    package init(head: HTTPRequestHead, body: ByteBuffer) {
        method = head.method
        headers = head.headers
        self.body = body
        let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = String(parts[0])
        query = parts.count < 2 ? [] : parts[1].split(separator: "&").map { pair in
            let nameValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (Self.unescape(nameValue[0]), nameValue.count > 1 ? Self.unescape(nameValue[1]) : "")
        }
    }

    /// The first value of query parameter `name`.
    package func parameter(_ name: String) -> String? {
        query.first { $0.name == name }?.value
    }

    /// Every value of query parameter `name`, comma-separated lists split too.
    package func parameters(_ name: String) -> [String] {
        query.filter { $0.name == name }.flatMap { $0.value.split(separator: ",").map(String.init) }
    }

    private static func unescape(_ text: Substring) -> String {
        let plus = text.replacingOccurrences(of: "+", with: " ")
        return plus.removingPercentEncoding ?? plus
    }
}

/// What an endpoint answers.
package struct HTTPResponse: Sendable {
    package var status: HTTPResponseStatus
    package var headers: HTTPHeaders
    package var body: String

    package init(_ status: HTTPResponseStatus, contentType: String, body: String, headers: HTTPHeaders = [:]) {
        self.status = status
        self.headers = headers
        self.headers.replaceOrAdd(name: "Content-Type", value: contentType)
        self.body = body
    }

    /// Go's `http.Error`: a plain-text body ending in a newline.
    package static func error(_ status: HTTPResponseStatus, _ message: String, headers: HTTPHeaders = [:]) -> HTTPResponse {
        var headers = headers
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        return HTTPResponse(status, contentType: "text/plain; charset=utf-8", body: message + "\n", headers: headers)
    }

    /// 405 naming the methods the endpoint takes, as Go's handlers answer.
    package static func methodNotAllowed(allow: [HTTPMethod]) -> HTTPResponse {
        error(.methodNotAllowed, "Method Not Allowed", headers: ["Allow": allow.map(\.rawValue).joined(separator: ", ")])
    }

    package static func json(_ body: String, status: HTTPResponseStatus = .ok) -> HTTPResponse {
        HTTPResponse(status, contentType: "application/json", body: body)
    }
}

/// Answers requests; `respond` may complete from any thread.
package protocol HTTPEndpoints: Sendable {
    func respond(to request: HTTPRequest, completion: @escaping @Sendable (HTTPResponse) -> Void)

    /// An exchange for `request` (its head; the body follows) if its path streams, as the
    /// gateway's watch does; nil to read the request whole and ``respond(to:completion:)``.
    /// Called on the connection's event loop; `responses` sends what the exchange answers.
    func streamingExchange(for request: HTTPRequest, responses: any HTTPStreamWriter) -> (any HTTPStreamingExchange)?

    /// The paths ``streamingExchange(for:responses:)`` takes, which a WebSocket may also open.
    var streamingPaths: Set<String> { get }
}

extension HTTPEndpoints {
    package func streamingExchange(for request: HTTPRequest, responses: any HTTPStreamWriter) -> (any HTTPStreamingExchange)? {
        nil
    }

    package var streamingPaths: Set<String> { [] }
}

/// A request whose body arrives, and whose answer leaves, a piece at a time (a watch over the
/// gateway, over chunked HTTP/1.1 or a WebSocket). Its methods run on the connection's event
/// loop, in order.
package protocol HTTPStreamingExchange: AnyObject {
    /// More of the request body (for a WebSocket, one text message and a newline).
    func received(_ body: ByteBuffer)
    /// The client sent its whole body (it keeps reading).
    func receivedEnd()
    /// The connection closed, or the exchange was ended by ``HTTPStreamWriter/close()``:
    /// nothing more is sent or received.
    func closed()
}

/// Sends a streamed answer: a head, then pieces, then the end. Callable from any thread; what
/// comes after the end (or a second head) is ignored.
package protocol HTTPStreamWriter: Sendable {
    /// The status line and headers, before any piece (a WebSocket ignores them).
    func head(_ status: HTTPResponseStatus, headers: HTTPHeaders)
    /// One piece of the body: a chunk, or a WebSocket text message.
    func send(_ piece: String)
    /// Ends the answer and closes the connection.
    func finish()
    /// Closes the connection at once (a client too slow to read what it asked for).
    func close()
}

extension HTTPResponse {
    /// Plain text, as etcd's livez and readyz answer.
    package static func text(_ body: String) -> HTTPResponse {
        HTTPResponse(.ok, contentType: "text/plain; charset=utf-8", body: body, headers: ["X-Content-Type-Options": "nosniff"])
    }
}
