import EtcdProto
import Foundation
import Logging
import SwiftProtobuf

extension EtcdServer {
    /// Logs a range that took longer than `--warning-apply-duration` from its arrival (the
    /// read index wait included) to its answer, as etcd logs an expensive read-only range
    /// (`apply request took too long`, prefix `read-only range `), and counts it in
    /// `etcd_server_slow_apply_total` as etcd does.
    package func noteRange(
        _ request: Etcdserverpb_RangeRequest, startedAt started: ContinuousClock.Instant,
        outcome: Result<Etcdserverpb_RangeResponse, EtcdError>
    ) {
        let took = ContinuousClock.now - started
        guard took > configuration.warningApplyDuration else { return }
        operations.slowApply()
        var metadata: Logger.Metadata = [
            "took": "\(GoFormat.duration(took))",
            "expected-duration": "\(GoFormat.duration(configuration.warningApplyDuration))",
            "prefix": "read-only range ", "request": "\(request.compactText)",
        ]
        switch outcome {
        case .success(let response):
            let size = (try? response.serializedBytes() as [UInt8])?.count ?? 0
            metadata["response"] = "range_response_count:\(response.kvs.count) size:\(size)"
        case .failure(let error):
            metadata["response"] = ""
            metadata["error"] = "\(error.description)"
        }
        logger.warning("apply request took too long", metadata: metadata)
    }
}
