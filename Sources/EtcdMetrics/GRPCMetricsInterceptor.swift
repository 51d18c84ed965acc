import GRPCWire
import NIOCore
import Prometheus
import Synchronization

/// go-grpc-prometheus's server metrics, as etcd exports them: `grpc_server_started_total`,
/// `grpc_server_handled_total`, `grpc_server_msg_received_total`, `grpc_server_msg_sent_total`
/// (labels `grpc_type`, `grpc_service`, `grpc_method`, and `grpc_code` once handled), and etcd's
/// `etcd_network_client_grpc_{received,sent}_bytes_total`. Each method's counters are made once
/// and kept, so a call costs a dictionary lookup under a short lock and a few atomic adds.
package struct GRPCMetricsInterceptor: ServerInterceptor {
    private final class Counters: Sendable {
        let started: Counter
        let received: Counter
        let sent: Counter
        let handled = Mutex<[GRPCStatus.Code: Counter]>([:])

        init(started: Counter, received: Counter, sent: Counter) {
            self.started = started
            self.received = received
            self.sent = sent
        }
    }

    /// Each method's counters, made on its first call.
    private final class Table: Sendable {
        let counters = Mutex<[String: Counters]>([:])
    }

    private let registry: PrometheusCollectorRegistry
    private let perMethod = Table()
    private let receivedBytes: Counter
    private let sentBytes: Counter

    package init(metrics: EtcdMetrics) {
        registry = metrics.registry
        receivedBytes = registry.makeCounter(descriptor: MetricNameDescriptor(
            metricName: "etcd_network_client_grpc_received_bytes_total", unitName: "",
            helpText: "The total number of bytes received from grpc clients."))
        sentBytes = registry.makeCounter(descriptor: MetricNameDescriptor(
            metricName: "etcd_network_client_grpc_sent_bytes_total", unitName: "",
            helpText: "The total number of bytes sent to grpc clients."))
    }

    private static func labels(_ method: ServerMethod) -> [(String, String)] {
        [("grpc_type", method.kind.rawValue), ("grpc_service", method.service), ("grpc_method", method.name)]
    }

    private func counters(_ method: ServerMethod) -> Counters {
        if let known = perMethod.counters.withLock({ $0[method.path] }) { return known }
        let labels = Self.labels(method)
        func counter(_ name: String, _ help: String) -> Counter {
            registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
        }
        let made = Counters(
            started: counter("grpc_server_started_total", "Total number of RPCs started on the server."),
            received: counter("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server."),
            sent: counter("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server."))
        return perMethod.counters.withLock { table in
            if let raced = table[method.path] { return raced }
            table[method.path] = made
            return made
        }
    }

    package func callStarted(_ method: ServerMethod, context: inout ServerContext) -> CallAdmission {
        counters(method).started.increment()
        return .proceed
    }

    package func receivedMessage(_ method: ServerMethod, bytes: Int) {
        counters(method).received.increment()
        receivedBytes.increment(by: Int64(bytes))
    }

    package func sentMessage(_ method: ServerMethod, bytes: Int) {
        counters(method).sent.increment()
        sentBytes.increment(by: Int64(bytes))
    }

    package func callEnded(_ method: ServerMethod, status: GRPCStatus, startedAt: NIODeadline) {
        let counters = counters(method)
        let handled = counters.handled.withLock { table in
            if let counter = table[status.code] { return counter }
            let counter = registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    metricName: "grpc_server_handled_total", unitName: "",
                    helpText: "Total number of RPCs completed on the server, regardless of success or failure."),
                labels: Self.labels(method) + [("grpc_code", status.code.goName)])
            table[status.code] = counter
            return counter
        }
        handled.increment()
    }
}
