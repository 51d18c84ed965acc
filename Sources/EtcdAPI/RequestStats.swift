import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import Logging
import NIOCore
import SwiftProtobuf
import TransportSecurity

/// etcd's `request stats` log line: a warning for each unary call slower than
/// `--warning-unary-request-duration`, and a debug line for every unary call at `--log-level
/// debug`. It names the method, the caller and the sizes; for the KV methods also the request
/// itself, values by their size only. A class: every KV call's completion holds it, and a
/// reference is one retain where the logger inside would be several.
package final class RequestStats: Sendable {
    /// What a line reports of a call: -1 where etcd does not look inside (every method but
    /// Range, Put, DeleteRange and Txn).
    struct Figures {
        var requestCount: Int64 = -1
        var requestSize = -1
        var responseCount: Int64 = -1
        var responseSize = -1
        var requestContent = ""
    }

    private let warning: Duration
    private let logger = Logger(label: "swift-etcd")
    /// Whether every call gets a line (the level is fixed for the life of the process).
    private let logsEveryCall: Bool

    package init(warning: Duration) {
        self.warning = warning
        logsEveryCall = logger.logLevel <= .debug
    }

    /// Whether a call that took `took` gets a line.
    func logs(after took: Duration) -> Bool {
        took > warning || logsEveryCall
    }

    func log(path: String, remote: SocketAddress?, took: Duration, figures: Figures) {
        let metadata: Logger.Metadata = [
            "start time": "\(GoFormat.time(Date() - TimeInterval(took / .seconds(1))))",
            "time spent": "\(GoFormat.duration(took))",
            "remote": "\(remote?.hostAndPort ?? "No remote client info.")",
            "response type": "\(path)",
            "request count": .stringConvertible(figures.requestCount),
            "request size": .stringConvertible(figures.requestSize),
            "response count": .stringConvertible(figures.responseCount),
            "response size": .stringConvertible(figures.responseSize),
            "request content": "\(figures.requestContent)",
        ]
        // At debug level every call's line is a debug line, a slow one too, as in etcd.
        if logsEveryCall {
            logger.debug("request stats", metadata: metadata)
        } else {
            logger.warning("request stats", metadata: metadata)
        }
    }
}

extension RequestStats {
    /// Logs a KV call that `took` that long, if it gets a line, with what etcd reports of it:
    /// the request's count of operations and its size, the response's count and size.
    func note<Response: SwiftProtobuf.Message>(
        _ request: KVRequest, response: Response?, took: Duration, context: ServerContext
    ) {
        guard logs(after: took) else { return }
        var figures = Figures()
        let responseSize = response.flatMap { try? $0.serializedBytes() as [UInt8] }?.count ?? 0
        switch request {
        case .range(let range, let bytes):
            (figures.requestCount, figures.requestSize, figures.requestContent) = (0, bytes, range.compactText)
            figures.responseCount = (response as? Etcdserverpb_RangeResponse)?.count ?? 0
        case .put(let put, let bytes):
            (figures.requestCount, figures.requestSize, figures.requestContent) = (1, bytes, put.loggableText)
            figures.responseCount = 0
        case .deleteRange(let delete, let bytes):
            (figures.requestCount, figures.requestSize, figures.requestContent) = (0, bytes, delete.compactText)
            figures.responseCount = (response as? Etcdserverpb_DeleteRangeResponse)?.deleted ?? 0
        case .txn(let txn):
            // The branch that ran, as etcd counts it; nothing of a transaction that failed.
            if let succeeded = (response as? Etcdserverpb_TxnResponse)?.succeeded {
                let operations = succeeded ? txn.success : txn.failure
                figures.requestCount = Int64(operations.count)
                figures.requestSize = operations.reduce(0) { $0 + ((try? $1.serializedBytes() as [UInt8])?.count ?? 0) }
                figures.requestContent = txn.loggableText
            } else {
                (figures.requestCount, figures.requestSize) = (0, 0)
            }
            figures.responseCount = 0
        }
        figures.responseSize = responseSize
        log(path: context.path, remote: context.remoteAddress, took: took, figures: figures)
    }

    /// The KV requests whose lines show the request, with their size as received.
    enum KVRequest {
        case range(Etcdserverpb_RangeRequest, bytes: Int)
        case put(Etcdserverpb_PutRequest, bytes: Int)
        case deleteRange(Etcdserverpb_DeleteRangeRequest, bytes: Int)
        case txn(Etcdserverpb_TxnRequest)

        /// The methods ``RequestStatsInterceptor`` leaves to ``note(_:response:took:context:)``.
        static let paths: Set<String> = [
            Etcdserverpb_KVRPCs.range.path, Etcdserverpb_KVRPCs.put.path, Etcdserverpb_KVRPCs.deleteRange.path,
            Etcdserverpb_KVRPCs.txn.path,
        ]
    }
}

/// Writes the `request stats` line of every unary call but the four KV methods whose handlers
/// write their own (they know the request): the line etcd writes for those others, counts and
/// sizes at -1.
package struct RequestStatsInterceptor: ServerInterceptor {
    private let stats: RequestStats

    package init(_ stats: RequestStats) {
        self.stats = stats
    }

    package func callStarted(_ method: ServerMethod, context: inout ServerContext) -> CallAdmission { .proceed }

    package func callEnded(_ method: ServerMethod, status: GRPCStatus, startedAt: NIODeadline, remoteAddress: SocketAddress?) {
        guard method.kind == .unary else { return }
        let took = Duration.nanoseconds((NIODeadline.now() - startedAt).nanoseconds)
        guard stats.logs(after: took), !RequestStats.KVRequest.paths.contains(method.path) else { return }
        stats.log(path: method.path, remote: remoteAddress, took: took, figures: RequestStats.Figures())
    }
}
