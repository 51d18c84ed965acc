import EtcdHTTP
import EtcdProto
import GRPCWire
import NIOCore
import NIOHPACK
import NIOHTTP1
import SwiftProtobuf

/// One streaming call relayed over HTTP: the request body's JSON objects become the call's
/// requests (its end ends them), and each response goes back as a line `{"result":…}`; an
/// error ends the answer with a line `{"error":…}`. The HTTP status is sent with the first
/// line: 200, or the error's status when the call fails before answering anything.
///
/// grpc-gateway half-closes the call at the first request it cannot decode and says nothing;
/// here that request's error ends the exchange, so the client learns what was wrong.
final class GatewayStream<Request: Message, Response: Message>: HTTPStreamingExchange {
    private var splitter: JSONObjectSplitter
    private let requests: AsyncStream<Request>.Continuation
    private let relay: Task<Void, Never>
    private let responses: any HTTPStreamWriter

    init(
        rpc: RPC<Request, Response>, client: GRPCClient, metadata: HPACKHeaders, timeout: TimeAmount?, maximumObjectBytes: Int,
        responses: any HTTPStreamWriter
    ) {
        splitter = JSONObjectSplitter(maximumObjectBytes: maximumObjectBytes)
        self.responses = responses
        let (stream, continuation) = AsyncStream<Request>.makeStream()
        requests = continuation
        relay = Task {
            // The first head sent stands: 200 once a response went out, else the error's status.
            func send(_ line: String, status: HTTPResponseStatus = .ok) {
                responses.head(status, headers: GatewayHTTP.jsonHeaders)
                responses.send(line + "\n")
            }
            do {
                let call = try await client.makeStreamingCall(
                    rpc.path, metadata: metadata, timeout: timeout, requestType: Request.self, responseType: Response.self)
                let sender = Task {
                    for await request in stream { call.send(request) }
                    call.finishSending()
                }
                defer { sender.cancel() }
                for try await response in call.responses { send(GatewayJSON.streamResult(response)) }
            } catch {
                let status = (error as? GRPCStatus) ?? GRPCStatus(.unavailable, "\(error)")
                if !Task.isCancelled { send(GatewayJSON.streamError(status), status: GatewayJSON.httpStatus(status.code)) }
            }
            responses.finish()
        }
    }

    func received(_ body: ByteBuffer) {
        do {
            for object in try splitter.append(body) {
                requests.yield(try GatewayJSON.decode(Request.self, from: object))
            }
        } catch let failure as JSONObjectSplitter.Failure {
            refuse(GRPCStatus(.invalidArgument, GatewayJSON.describe(failure)))
        } catch {
            refuse((error as? GRPCStatus) ?? GRPCStatus(.invalidArgument, "\(error)"))
        }
    }

    func receivedEnd() {
        if splitter.hasPartialObject { return refuse(GRPCStatus(.invalidArgument, "unexpected end of JSON input")) }
        requests.finish()
    }

    func closed() {
        requests.finish()
        relay.cancel()
    }

    /// Ends the exchange over a request that cannot be sent.
    private func refuse(_ status: GRPCStatus) {
        requests.finish()
        relay.cancel()
        responses.head(GatewayJSON.httpStatus(status.code), headers: GatewayHTTP.jsonHeaders)
        responses.send(GatewayJSON.streamError(status) + "\n")
        responses.finish()
    }
}
