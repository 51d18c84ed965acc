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
        let requestStats = RequestStats(warning: server.configuration.warningUnaryRequestDuration)
        router.unary(Etcdserverpb_KVRPCs.range.path) {
            (request: Etcdserverpb_RangeRequest, responder: UnaryResponder<Etcdserverpb_RangeResponse>) in
            let started = ContinuousClock.now
            let stats = RequestStats.KVRequest.range(request, bytes: responder.requestBytes)
            guard !request.serializable else { return answer(request, server, responder, startedAt: started, noting: stats, to: requestStats) }
            server.linearizableRead { result in
                switch result {
                case .success:
                    // Reads run on the event loop, never on the member's loop thread.
                    responder.context.eventLoop.execute { answer(request, server, responder, startedAt: started, noting: stats, to: requestStats) }
                case .failure(let error):
                    server.noteRange(request, startedAt: started, outcome: .failure(error))
                    responder.fail(GRPCStatus(error), noting: stats, startedAt: started, to: requestStats)
                }
            }
        }
        router.unary(Etcdserverpb_KVRPCs.put.path) {
            (request: Etcdserverpb_PutRequest, responder: UnaryResponder<Etcdserverpb_PutResponse>) in
            let started = ContinuousClock.now
            let stats = RequestStats.KVRequest.put(request, bytes: responder.requestBytes)
            if let error = check(request, bytes: responder.requestBytes, server) {
                return responder.fail(GRPCStatus(error), noting: stats, startedAt: started, to: requestStats)
            }
            server.propose(.put(request), by: responder.context.caller) { result in
                responder.complete(result, noting: stats, startedAt: started, to: requestStats) {
                    if case .put(let response) = $0 { response } else { nil }
                }
            }
        }
        router.unary(Etcdserverpb_KVRPCs.deleteRange.path) {
            (request: Etcdserverpb_DeleteRangeRequest, responder: UnaryResponder<Etcdserverpb_DeleteRangeResponse>) in
            let started = ContinuousClock.now
            let stats = RequestStats.KVRequest.deleteRange(request, bytes: responder.requestBytes)
            guard !request.key.isEmpty else {
                return responder.fail(GRPCStatus(EtcdError.emptyKey), noting: stats, startedAt: started, to: requestStats)
            }
            server.propose(.deleteRange(request), by: responder.context.caller) { result in
                responder.complete(result, noting: stats, startedAt: started, to: requestStats) {
                    if case .deleteRange(let response) = $0 { response } else { nil }
                }
            }
        }
        router.unary(Etcdserverpb_KVRPCs.txn.path) {
            (request: Etcdserverpb_TxnRequest, responder: UnaryResponder<Etcdserverpb_TxnResponse>) in
            let started = ContinuousClock.now
            do throws(EtcdError) {
                try server.validate(request)
                try checkSize(responder.requestBytes, server)
            } catch {
                return responder.fail(GRPCStatus(error), noting: .txn(request), startedAt: started, to: requestStats)
            }
            server.propose(.txn(request), by: responder.context.caller) { result in
                responder.complete(result, noting: .txn(request), startedAt: started, to: requestStats) {
                    if case .txn(let response) = $0 { response } else { nil }
                }
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
        startedAt started: ContinuousClock.Instant, noting stats: RequestStats.KVRequest, to requestStats: RequestStats
    ) {
        do throws(EtcdError) {
            let response = try server.range(request, by: responder.context.caller)
            server.noteRange(request, startedAt: started, outcome: .success(response))
            requestStats.note(stats, response: response, took: .now - started, context: responder.context)
            responder.succeed(response)
        } catch {
            server.noteRange(request, startedAt: started, outcome: .failure(error))
            responder.fail(GRPCStatus(error), noting: stats, startedAt: started, to: requestStats)
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
        complete(Self.outcome(of: result, as: extract))
    }

    /// Completes with the response `extract` finds in a write's result, and writes the call's
    /// `request stats` line if it gets one.
    func complete(
        _ result: Result<WriteResponse, EtcdError>, noting request: RequestStats.KVRequest,
        startedAt started: ContinuousClock.Instant, to stats: RequestStats, as extract: (WriteResponse) -> Response?
    ) {
        let outcome = Self.outcome(of: result, as: extract)
        stats.note(request, response: try? outcome.get(), took: .now - started, context: context)
        complete(outcome)
    }

    /// Fails the call, and writes its `request stats` line if it gets one.
    func fail(
        _ status: GRPCStatus, noting request: RequestStats.KVRequest, startedAt started: ContinuousClock.Instant,
        to stats: RequestStats
    ) {
        stats.note(request, response: nil as Response?, took: .now - started, context: context)
        fail(status)
    }

    private static func outcome(
        of result: Result<WriteResponse, EtcdError>, as extract: (WriteResponse) -> Response?
    ) -> Result<Response, GRPCStatus> {
        switch result {
        case .success(let write):
            guard let response = extract(write) else { return .failure(GRPCStatus(.internal, "etcdserver: unexpected response kind")) }
            return .success(response)
        case .failure(let error):
            return .failure(GRPCStatus(error))
        }
    }
}
