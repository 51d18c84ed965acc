import EtcdMetrics
import EtcdServer
import NIOHTTP1

/// Everything a client listener answers over HTTP/1.1, as etcd's client port: the health and
/// version endpoints, `/metrics`, the `/v3` JSON gateway (`/v3/…` and `/v3beta/…`, given as
/// `gateway`), etcd's CORS headers on every response (`--cors`), 200 to any `OPTIONS`, 404
/// `404 page not found` for other paths; a plain-HTTP request for a host `--host-whitelist`
/// does not list gets 421 before any of that.
package struct ClientEndpoints: HTTPEndpoints {
    let health: HealthEndpoints
    let metrics: EtcdMetrics
    let gateway: (any HTTPEndpoints)?
    let access: HTTPAccessRules

    package init(server: EtcdServer, metrics: EtcdMetrics, gateway: (any HTTPEndpoints)? = nil, access: HTTPAccessRules = HTTPAccessRules()) {
        health = HealthEndpoints(server: server, metrics: metrics)
        self.metrics = metrics
        self.gateway = gateway
        self.access = access
    }

    /// Whether `path` is the gateway's.
    static func isGatewayPath(_ path: String) -> Bool {
        path.hasPrefix("/v3/") || path.hasPrefix("/v3beta/")
    }

    /// Prometheus' text format, as etcd's promhttp handler labels it (any method is answered).
    static func metricsResponse(_ metrics: EtcdMetrics) -> HTTPResponse {
        HTTPResponse(.ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.exposition())
    }

    package func respond(to request: HTTPRequest, completion: @escaping @Sendable (HTTPResponse) -> Void) {
        if let refusal = access.refusal(of: request) { return completion(refusal) }
        let cors = access.corsHeaders(for: request)
        let withCORS: @Sendable (HTTPResponse) -> Void = { response in
            var response = response
            for (name, value) in cors { response.headers.replaceOrAdd(name: name, value: value) }
            completion(response)
        }
        if request.method == .OPTIONS { return withCORS(HTTPResponse(.ok, contentType: "text/plain; charset=utf-8", body: "")) }
        if request.path == "/metrics" { return withCORS(Self.metricsResponse(metrics)) }
        if let gateway, Self.isGatewayPath(request.path) { return gateway.respond(to: request, completion: withCORS) }
        if health.respond(to: request, completion: withCORS) { return }
        withCORS(.error(.notFound, "404 page not found"))
    }

    package var streamingPaths: Set<String> { gateway?.streamingPaths ?? [] }

    package func streamingExchange(for request: HTTPRequest, responses: any HTTPStreamWriter) -> (any HTTPStreamingExchange)? {
        // A refused host is answered (and logged) by `respond`, as a request that streams nothing.
        guard let gateway, Self.isGatewayPath(request.path), access.allows(request) else { return nil }
        return gateway.streamingExchange(for: request, responses: CORSWriter(writer: responses, cors: access.corsHeaders(for: request)))
    }
}

/// Adds etcd's CORS headers to a streamed answer's head.
private struct CORSWriter: HTTPStreamWriter {
    let writer: any HTTPStreamWriter
    let cors: HTTPHeaders

    func head(_ status: HTTPResponseStatus, headers: HTTPHeaders) {
        var headers = headers
        for (name, value) in cors { headers.replaceOrAdd(name: name, value: value) }
        writer.head(status, headers: headers)
    }

    func send(_ piece: String) { writer.send(piece) }
    func finish() { writer.finish() }
    func close() { writer.close() }
}

/// What a `--listen-metrics-urls` listener answers, as etcd's: `/metrics` and the health
/// endpoints only (no `/version`, no CORS), 404 for the rest.
package struct MetricsEndpoints: HTTPEndpoints {
    /// The client port's endpoints, of which this listener serves a part.
    let client: ClientEndpoints

    package init(server: EtcdServer, metrics: EtcdMetrics) {
        client = ClientEndpoints(server: server, metrics: metrics)
    }

    package func respond(to request: HTTPRequest, completion: @escaping @Sendable (HTTPResponse) -> Void) {
        if request.path == "/metrics" { return completion(ClientEndpoints.metricsResponse(client.metrics)) }
        if request.path != "/version", client.health.respond(to: request, completion: completion) { return }
        completion(.error(.notFound, "404 page not found"))
    }
}
