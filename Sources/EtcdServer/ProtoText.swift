import EtcdProto
import Foundation
import SwiftProtobuf

/// Requests as etcd prints them in its logs: protobuf's compact text (Go's
/// `proto.CompactTextString`), with every value replaced by its size (`value_size`) so no
/// value reaches a log.
extension Etcdserverpb_RangeRequest {
    /// The set fields in field order, each followed by a space.
    package var compactText: String {
        var text = CompactText()
        text.bytes("key", key)
        text.bytes("range_end", rangeEnd)
        text.number("limit", limit)
        text.number("revision", revision)
        if sortOrder != .none { text.field("sort_order", ProtoText.name(sortOrder)) }
        if sortTarget != .key { text.field("sort_target", ProtoText.name(sortTarget)) }
        text.flag("serializable", serializable)
        text.flag("keys_only", keysOnly)
        text.flag("count_only", countOnly)
        text.number("min_mod_revision", minModRevision)
        text.number("max_mod_revision", maxModRevision)
        text.number("min_create_revision", minCreateRevision)
        text.number("max_create_revision", maxCreateRevision)
        return text.text
    }
}

extension Etcdserverpb_PutRequest {
    /// etcd's loggable put: the key, and the value by its size.
    package var loggableText: String {
        var text = CompactText()
        text.bytes("key", key)
        text.number("value_size", Int64(value.count))
        text.number("lease", lease)
        text.flag("prev_kv", prevKv)
        text.flag("ignore_value", ignoreValue)
        text.flag("ignore_lease", ignoreLease)
        return text.text
    }
}

extension Etcdserverpb_DeleteRangeRequest {
    package var compactText: String {
        var text = CompactText()
        text.bytes("key", key)
        text.bytes("range_end", rangeEnd)
        text.flag("prev_kv", prevKv)
        return text.text
    }
}

extension Etcdserverpb_TxnRequest {
    /// etcd's loggable transaction: its compares, then its operations, values by their size.
    package var loggableText: String {
        let compares = compare.map(\.loggableText).joined(separator: " ")
        let success = success.map(\.loggableText).joined(separator: " ")
        let failure = failure.map(\.loggableText).joined(separator: " ")
        return "compare:<\(compares)> success:<\(success)> failure:<\(failure)>"
    }
}

extension Etcdserverpb_Compare {
    /// A value compare shows the value's size; the others are their compact text (a oneof
    /// target is printed even at zero, as Go prints a set oneof).
    var loggableText: String {
        var text = CompactText()
        if result != .equal { text.field("result", ProtoText.name(result)) }
        if target != .version { text.field("target", ProtoText.name(target)) }
        text.bytes("key", key)
        switch targetUnion {
        case .version(let version): text.field("version", version)
        case .createRevision(let revision): text.field("create_revision", revision)
        case .modRevision(let revision): text.field("mod_revision", revision)
        case .value(let value): text.number("value_size", Int64(value.count))
        case .lease(let lease): text.field("lease", lease)
        case nil: break
        }
        text.bytes("range_end", rangeEnd)
        return text.text
    }
}

extension Etcdserverpb_RequestOp {
    /// As etcd's loggable operation prints it: puts and nested transactions through their
    /// loggable forms (no space after `>`), ranges and deletes as compact text (one after).
    var loggableText: String {
        switch request {
        case .requestRange(let range): "request_range:<\(range.compactText)> "
        case .requestPut(let put): "request_put:<\(put.loggableText)>"
        case .requestDeleteRange(let delete): "request_delete_range:<\(delete.compactText)> "
        case .requestTxn(let txn): "request_txn:<\(txn.loggableText)>"
        case nil: ""
        }
    }
}

/// Protobuf's compact text, built field by field: proto3 zero values are left out.
private struct CompactText {
    private(set) var text = ""

    mutating func field(_ name: String, _ value: some CustomStringConvertible) { text += "\(name):\(value) " }
    mutating func bytes(_ name: String, _ value: Data) { if !value.isEmpty { field(name, ProtoText.quoted(value)) } }
    mutating func number(_ name: String, _ value: Int64) { if value != 0 { field(name, value) } }
    mutating func flag(_ name: String, _ value: Bool) { if value { field(name, true) } }
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

    /// An enum value by its name in the `.proto` file (`NOT_EQUAL` for Swift's `notEqual`),
    /// the number when it has none.
    static func name<Value: SwiftProtobuf.Enum>(_ value: Value) -> String {
        let described = String(describing: value)
        guard !described.hasPrefix("UNRECOGNIZED") else { return "\(value.rawValue)" }
        var name = ""
        for character in described {
            if character.isUppercase { name += "_" }
            name += character.uppercased()
        }
        return name
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
