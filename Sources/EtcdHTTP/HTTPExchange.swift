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

    init(head: HTTPRequestHead, body: ByteBuffer) {
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
}

extension HTTPResponse {
    /// Plain text, as etcd's livez and readyz answer.
    package static func text(_ body: String) -> HTTPResponse {
        HTTPResponse(.ok, contentType: "text/plain; charset=utf-8", body: body, headers: ["X-Content-Type-Options": "nosniff"])
    }
}
