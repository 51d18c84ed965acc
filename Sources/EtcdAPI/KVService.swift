import EtcdProto
import EtcdServer
import GRPCWire
import NIOCore

/// `etcdserverpb.KV`. Handlers only translate: checks that need no
/// state run here on the event loop, reads are answered from the member's published snapshot
/// on the event loop (linearizable ones once the member confirms its read index), writes
/// become proposals whose completion hops back.
enum KVService {
    static func register(_ server: EtcdServer, on router: inout ServerRouter) {
        router.unary(Etcdserverpb_KVRPCs.range.path) {
            (request: Etcdserverpb_RangeRequest, responder: UnaryResponder<Etcdserverpb_RangeResponse>) in
            let started = ContinuousClock.now
            guard !request.serializable else { return answer(request, server, responder, startedAt: started) }
            server.linearizableRead { result in
                switch result {
                case .success:
                    // Reads run on the event loop, never on the member's loop thread.
                    responder.context.eventLoop.execute { answer(request, server, responder, startedAt: started) }
                case .failure(let error):
                    server.noteRange(request, startedAt: started, outcome: .failure(error))
                    responder.fail(GRPCStatus(error))
                }
            }
        }
        router.unary(Etcdserverpb_KVRPCs.put.path) {
            (request: Etcdserverpb_PutRequest, responder: UnaryResponder<Etcdserverpb_PutResponse>) in
            if let error = check(request, bytes: responder.requestBytes, server) { return responder.fail(GRPCStatus(error)) }
            server.propose(.put(request), by: responder.context.caller) { result in
                responder.complete(result, as: { if case .put(let response) = $0 { response } else { nil } })
            }
        }
        router.unary(Etcdserverpb_KVRPCs.deleteRange.path) {
            (request: Etcdserverpb_DeleteRangeRequest, responder: UnaryResponder<Etcdserverpb_DeleteRangeResponse>) in
            guard !request.key.isEmpty else { return responder.fail(GRPCStatus(EtcdError.emptyKey)) }
            server.propose(.deleteRange(request), by: responder.context.caller) { result in
                responder.complete(result, as: { if case .deleteRange(let response) = $0 { response } else { nil } })
            }
        }
        router.unary(Etcdserverpb_KVRPCs.txn.path) {
            (request: Etcdserverpb_TxnRequest, responder: UnaryResponder<Etcdserverpb_TxnResponse>) in
            do throws(EtcdError) {
                try server.validate(request)
                try checkSize(responder.requestBytes, server)
            } catch {
                return responder.fail(GRPCStatus(error))
            }
            server.propose(.txn(request), by: responder.context.caller) { result in
                responder.complete(result, as: { if case .txn(let response) = $0 { response } else { nil } })
            }
        }
        router.unary(Etcdserverpb_KVRPCs.compact.path) {
            (request: Etcdserverpb_CompactionRequest, responder: UnaryResponder<Etcdserverpb_CompactionResponse>) in
            server.propose(.compaction(request), by: responder.context.caller) { result in
                responder.complete(result, as: { if case .compaction(let response) = $0 { response } else { nil } })
            }
        }
    }

    private static func answer(
        _ request: Etcdserverpb_RangeRequest, _ server: EtcdServer, _ responder: UnaryResponder<Etcdserverpb_RangeResponse>,
        startedAt started: ContinuousClock.Instant
    ) {
        do throws(EtcdError) {
            let response = try server.range(request, by: responder.context.caller)
            server.noteRange(request, startedAt: started, outcome: .success(response))
            responder.succeed(response)
        } catch {
            server.noteRange(request, startedAt: started, outcome: .failure(error))
            responder.fail(GRPCStatus(error))
        }
    }

    /// etcd's checks on a put (of `bytes` as received) before it is proposed.
    private static func check(_ request: Etcdserverpb_PutRequest, bytes: Int, _ server: EtcdServer) -> EtcdError? {
        do throws(EtcdError) {
            try server.validate(request)
            try checkSize(bytes, server)
        } catch {
            return error
        }
        return nil
    }

    /// Requests above `--max-request-bytes` (`bytes` of protobuf as received) are refused, as
    /// etcd refuses them.
    private static func checkSize(_ bytes: Int, _ server: EtcdServer) throws(EtcdError) {
        if bytes > server.configuration.maxRequestBytes { throw .requestTooLarge }
    }
}

extension UnaryResponder {
    /// Completes with the response `extract` finds in a write's result.
    func complete(_ result: Result<WriteResponse, EtcdError>, as extract: (WriteResponse) -> Response?) {
        switch result {
        case .success(let write):
            guard let response = extract(write) else { return fail(GRPCStatus(.internal, "etcdserver: unexpected response kind")) }
            succeed(response)
        case .failure(let error):
            fail(GRPCStatus(error))
        }
    }
}
