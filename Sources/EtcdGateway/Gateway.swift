import EtcdAPI
import EtcdHTTP
import GRPCWire
import NIOCore
import NIOHPACK
import NIOHTTP1

/// etcd's JSON gateway (`/v3/…`, and `/v3beta/…`): each POST becomes a gRPC call to this
/// member, through ``GatewayChannel``'s private socket, so it meets the same auth, quotas,
/// limits and metrics as any gRPC call. Streaming RPCs (watch, keep-alive, snapshot, observe)
/// stream both ways (see ``GatewayStream``).
///
/// Metadata: the `Authorization` header carries a token, raw, as etcd's gateway takes it;
/// `Grpc-Metadata-<name>` headers become metadata `<name>` (e.g. `hasleader`); `Grpc-Timeout`
/// sets the call's deadline. The verified client certificate's common name is passed on, so
/// `--client-cert-auth` identities work through the gateway too (etcd's gateway presents its
/// own certificate instead).
package struct Gateway: HTTPEndpoints {
    let channel: GatewayChannel
    /// The largest request body, and the largest object in a streamed one.
    let maximumBodyBytes: Int

    package init(channel: GatewayChannel, maximumBodyBytes: Int) {
        self.channel = channel
        self.maximumBodyBytes = maximumBodyBytes
    }

    /// Answers a gateway request read whole.
    package func respond(to request: HTTPRequest, completion: @escaping @Sendable (HTTPResponse) -> Void) {
        // grpc-gateway's routing errors: 404, and 501 for a method a path does not take.
        guard let route = GatewayRoute.table[request.path] else {
            return completion(Self.failure(GRPCStatus(.notFound, "Not Found")))
        }
        guard request.method == .POST, case .unary(let call) = route.call else {
            // A POST to a streaming path was taken as a stream before its body was read.
            return completion(Self.failure(GRPCStatus(.unimplemented, "Method Not Allowed")))
        }
        let metadata: HPACKHeaders
        let timeout: TimeAmount?
        do throws(GRPCStatus) {
            (metadata, timeout) = try Self.metadata(of: request)
        } catch {
            return completion(Self.failure(error))
        }
        call(Array(request.body.readableBytesView), channel, metadata, timeout, channel.eventLoop).whenComplete { result in
            switch result {
            case .success(let answer):
                completion(HTTPResponse(.ok, contentType: "application/json", body: answer, headers: GatewayHTTP.grpcHeaders))
            case .failure(let error):
                completion(Self.failure((error as? GRPCStatus) ?? GRPCStatus(.unavailable, "\(error)")))
            }
        }
    }

    package var streamingPaths: Set<String> { GatewayRoute.streamingPaths }

    /// A streaming route's exchange, when `request` is a POST to one.
    package func streamingExchange(for request: HTTPRequest, responses: any HTTPStreamWriter) -> (any HTTPStreamingExchange)? {
        guard request.method == .POST, let route = GatewayRoute.table[request.path], case .streaming(let open) = route.call else {
            return nil
        }
        do throws(GRPCStatus) {
            let (metadata, timeout) = try Self.metadata(of: request)
            return open(channel.client, metadata, timeout, maximumBodyBytes, responses)
        } catch {
            responses.head(GatewayJSON.httpStatus(error.code), headers: GatewayHTTP.jsonHeaders)
            responses.send(GatewayJSON.errorBody(error))
            responses.finish()
            return RefusedExchange()
        }
    }

    /// The gRPC metadata and deadline `request` asks for.
    static func metadata(of request: HTTPRequest) throws(GRPCStatus) -> (HPACKHeaders, TimeAmount?) {
        var metadata: HPACKHeaders = [:]
        var timeout: TimeAmount?
        for (name, value) in request.headers {
            let lowered = name.lowercased()
            if lowered == "authorization" {
                // Tokens hold no spaces; a "Bearer " some clients put first is dropped.
                metadata.add(name: "authorization", value: value.hasPrefix("Bearer ") ? String(value.dropFirst(7)) : value)
            } else if lowered == "grpc-timeout" {
                guard let parsed = GRPCTimeout.parse(Substring(value)) else {
                    throw GRPCStatus(.invalidArgument, "invalid grpc-timeout value: \(value)")
                }
                timeout = parsed
            } else if lowered.hasPrefix("grpc-metadata-") {
                metadata.add(name: String(lowered.dropFirst("grpc-metadata-".count)), value: value)
            }
        }
        if let name = request.clientCommonName {
            metadata.add(name: AuthInterceptor.forwardedCommonNameKey, value: name)
        }
        return (metadata, timeout)
    }

    static func failure(_ status: GRPCStatus) -> HTTPResponse {
        var response = HTTPResponse.json(GatewayJSON.errorBody(status), status: GatewayJSON.httpStatus(status.code))
        if status.code == .unauthenticated { response.headers.add(name: "WWW-Authenticate", value: status.message) }
        return response
    }
}

/// Headers of the gateway's JSON answers.
enum GatewayHTTP {
    /// The member's gRPC response headers, as grpc-gateway passes them on.
    static let grpcHeaders: HTTPHeaders = ["Grpc-Metadata-Content-Type": "application/grpc"]
    static let jsonHeaders: HTTPHeaders = ["Content-Type": "application/json", "Grpc-Metadata-Content-Type": "application/grpc"]
}

/// What a refused streaming request leaves: its answer is already written.
private final class RefusedExchange: HTTPStreamingExchange {
    func received(_ body: ByteBuffer) {}
    func receivedEnd() {}
    func closed() {}
}
