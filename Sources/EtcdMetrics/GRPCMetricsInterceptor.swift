import EtcdProto
import GRPCWire
import NIOCore
import Prometheus

/// go-grpc-prometheus's server metrics, as etcd exports them: `grpc_server_started_total`,
/// `grpc_server_handled_total` (one series per code), `grpc_server_msg_received_total`,
/// `grpc_server_msg_sent_total` (labels `grpc_type`, `grpc_service`, `grpc_method`), and
/// etcd's `etcd_network_client_grpc_{received,sent}_bytes_total`; with `extensive` (etcd's
/// `--metrics extensive`) also `grpc_server_handling_seconds`, each call's duration.
///
/// Every series of every method of etcd's API is made up front, at zero, as etcd's
/// go-grpc-prometheus registration makes them: a call then costs dictionary lookups in tables
/// that never change (no lock) and a few atomic adds.
package struct GRPCMetricsInterceptor: ServerInterceptor {
    private struct Counters: Sendable {
        let started: Counter
        let received: Counter
        let sent: Counter
        let handled: [GRPCStatus.Code: Counter]
        let handling: ValueHistogram?
    }

    /// go-grpc-prometheus's default buckets (Prometheus' `DefBuckets`), in seconds.
    static let handlingBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    private let perMethod: [String: Counters]
    private let receivedBytes: Counter
    private let sentBytes: Counter

    package init(metrics: EtcdMetrics, extensive: Bool = false) {
        let registry = metrics.registry
        func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        }
        receivedBytes = registry.makeCounter(
            descriptor: descriptor("etcd_network_client_grpc_received_bytes_total", "The total number of bytes received from grpc clients."))
        sentBytes = registry.makeCounter(
            descriptor: descriptor("etcd_network_client_grpc_sent_bytes_total", "The total number of bytes sent to grpc clients."))
        var table: [String: Counters] = [:]
        for (path, kind) in RPCCatalog.all {
            let parts = path.dropFirst().split(separator: "/")
            let labels = [("grpc_type", Self.typeName(kind)), ("grpc_service", String(parts[0])), ("grpc_method", String(parts[1]))]
            func counter(_ name: String, _ help: String) -> Counter {
                registry.makeCounter(descriptor: descriptor(name, help), labels: labels)
            }
            table[path] = Counters(
                started: counter("grpc_server_started_total", "Total number of RPCs started on the server."),
                received: counter("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server."),
                sent: counter("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server."),
                handled: Dictionary(uniqueKeysWithValues: GRPCStatus.Code.allCases.map { code in
                    (code, registry.makeCounter(
                        descriptor: descriptor(
                            "grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure."),
                        labels: labels + [("grpc_code", code.goName)]))
                }),
                handling: !extensive ? nil : registry.makeValueHistogram(
                    descriptor: descriptor(
                        "grpc_server_handling_seconds",
                        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server."),
                    labels: labels, buckets: Self.handlingBuckets))
        }
        perMethod = table
    }

    /// go-grpc-prometheus's names for the call kinds.
    private static func typeName(_ kind: RPCKind) -> String {
        switch kind {
        case .unary: ServerMethod.Kind.unary.rawValue
        case .clientStreaming: ServerMethod.Kind.clientStreaming.rawValue
        case .serverStreaming: ServerMethod.Kind.serverStreaming.rawValue
        case .bidirectionalStreaming: ServerMethod.Kind.bidirectionalStreaming.rawValue
        }
    }

    package func callStarted(_ method: ServerMethod, context: inout ServerContext) -> CallAdmission {
        perMethod[method.path]?.started.increment()
        return .proceed
    }

    package func receivedMessage(_ method: ServerMethod, bytes: Int) {
        perMethod[method.path]?.received.increment()
        receivedBytes.increment(by: Int64(bytes))
    }

    package func sentMessage(_ method: ServerMethod, bytes: Int) {
        perMethod[method.path]?.sent.increment()
        sentBytes.increment(by: Int64(bytes))
    }

    package func callEnded(_ method: ServerMethod, status: GRPCStatus, startedAt: NIODeadline, remoteAddress: SocketAddress?) {
        guard let counters = perMethod[method.path] else { return }
        counters.handled[status.code]?.increment()
        if let handling = counters.handling {
            handling.record(Double((NIODeadline.now() - startedAt).nanoseconds) / 1e9)
        }
    }
}
