import EtcdProto
import GRPCWire
import NIOCore
import Prometheus

/// go-grpc-prometheus's server metrics, as etcd exports them: `grpc_server_started_total`,
/// `grpc_server_handled_total` (one series per code), `grpc_server_msg_received_total`,
/// `grpc_server_msg_sent_total` (labels `grpc_type`, `grpc_service`, `grpc_method`), and
/// etcd's `etcd_network_client_grpc_{received,sent}_bytes_total`.
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
    }

    private let perMethod: [String: Counters]
    private let receivedBytes: Counter
    private let sentBytes: Counter

    package init(metrics: EtcdMetrics) {
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
                }))
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

    package func callEnded(_ method: ServerMethod, status: GRPCStatus, startedAt: NIODeadline) {
        perMethod[method.path]?.handled[status.code]?.increment()
    }
}
