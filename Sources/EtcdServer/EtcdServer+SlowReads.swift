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
            "took": "\(MemberLoop.goDuration(took))",
            "expected-duration": "\(MemberLoop.goDuration(configuration.warningApplyDuration))",
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

extension Etcdserverpb_RangeRequest {
    /// The request in protobuf's compact text form, as etcd prints it in its logs: the fields
    /// that are set, in field order, each followed by a space.
    var compactText: String {
        var text = ""
        func field(_ name: String, _ value: some CustomStringConvertible) { text += "\(name):\(value) " }
        if !key.isEmpty { field("key", ProtoText.quoted(key)) }
        if !rangeEnd.isEmpty { field("range_end", ProtoText.quoted(rangeEnd)) }
        if limit != 0 { field("limit", limit) }
        if revision != 0 { field("revision", revision) }
        if sortOrder != .none { field("sort_order", ProtoText.name(sortOrder)) }
        if sortTarget != .key { field("sort_target", ProtoText.name(sortTarget)) }
        if serializable { field("serializable", true) }
        if keysOnly { field("keys_only", true) }
        if countOnly { field("count_only", true) }
        if minModRevision != 0 { field("min_mod_revision", minModRevision) }
        if maxModRevision != 0 { field("max_mod_revision", maxModRevision) }
        if minCreateRevision != 0 { field("min_create_revision", minCreateRevision) }
        if maxCreateRevision != 0 { field("max_create_revision", maxCreateRevision) }
        return text
    }
}

/// Bytes as protobuf's text format quotes them (Go's `proto.CompactTextString`): printable
/// ASCII as it is, `"` and `\` escaped, the rest as three octal digits.
enum ProtoText {
    static func quoted(_ bytes: Data) -> String {
        var text = "\""
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""): text += "\\\""
            case UInt8(ascii: "\\"): text += "\\\\"
            case UInt8(ascii: "\n"): text += "\\n"
            case UInt8(ascii: "\r"): text += "\\r"
            case UInt8(ascii: "\t"): text += "\\t"
            case 0x20..<0x7F: text.unicodeScalars.append(Unicode.Scalar(byte))
            default: text += "\\" + String(byte, radix: 8).leftPadded(to: 3)
            }
        }
        return text + "\""
    }

    /// An enum value by its name in the `.proto` file (the number when it has none).
    static func name<Value: SwiftProtobuf.Enum>(_ value: Value) -> String {
        let described = String(describing: value)
        return described.hasPrefix("UNRECOGNIZED") ? "\(value.rawValue)" : described.uppercased()
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
