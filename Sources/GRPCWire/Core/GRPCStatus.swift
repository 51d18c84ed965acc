/// The outcome of an RPC: a gRPC status code and a human-readable message.
///
/// A status with a code other than ``Code/ok`` is also the error that failed calls throw, so
/// clients can match on both the code and the exact message (etcd clients match on messages
/// such as `etcdserver: request is too large`).
public struct GRPCStatus: Error, Hashable, Sendable, CustomStringConvertible {
    /// The canonical gRPC status codes.
    public enum Code: Int, Hashable, Sendable, CaseIterable {
        case ok = 0
        case cancelled = 1
        case unknown = 2
        case invalidArgument = 3
        case deadlineExceeded = 4
        case notFound = 5
        case alreadyExists = 6
        case permissionDenied = 7
        case resourceExhausted = 8
        case failedPrecondition = 9
        case aborted = 10
        case outOfRange = 11
        case unimplemented = 12
        case `internal` = 13
        case unavailable = 14
        case dataLoss = 15
        case unauthenticated = 16

        /// The code's name as gRPC-Go prints it (`rpc error: code = PermissionDenied desc = …`).
        public var goName: String {
            switch self {
            case .ok: "OK"
            case .cancelled: "Canceled"
            case .unknown: "Unknown"
            case .invalidArgument: "InvalidArgument"
            case .deadlineExceeded: "DeadlineExceeded"
            case .notFound: "NotFound"
            case .alreadyExists: "AlreadyExists"
            case .permissionDenied: "PermissionDenied"
            case .resourceExhausted: "ResourceExhausted"
            case .failedPrecondition: "FailedPrecondition"
            case .aborted: "Aborted"
            case .outOfRange: "OutOfRange"
            case .unimplemented: "Unimplemented"
            case .internal: "Internal"
            case .unavailable: "Unavailable"
            case .dataLoss: "DataLoss"
            case .unauthenticated: "Unauthenticated"
            }
        }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String = "") {
        self.code = code
        self.message = message
    }

    public static let ok = GRPCStatus(.ok)

    public var description: String {
        message.isEmpty ? "\(code)" : "\(code): \(message)"
    }

    /// Builds a status from the `grpc-status` and `grpc-message` trailer values.
    ///
    /// An unknown or missing code is ``Code/unknown`` (gRPC's rule for unparsable statuses).
    init(statusField: String?, messageField: String?) {
        let code = statusField.flatMap(Int.init).flatMap(Code.init(rawValue:)) ?? .unknown
        self.init(code, messageField.map(GRPCStatus.percentDecoded) ?? "")
    }
}

extension GRPCStatus {
    /// Percent-encodes a status message for the `grpc-message` trailer, as the gRPC spec asks:
    /// bytes outside printable ASCII and `%` itself become `%XX`.
    static func percentEncoded(_ message: String) -> String {
        let utf8 = message.utf8
        guard utf8.contains(where: { $0 < 0x20 || $0 > 0x7E || $0 == UInt8(ascii: "%") }) else {
            return message
        }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count * 3)
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in utf8 {
            if byte < 0x20 || byte > 0x7E || byte == UInt8(ascii: "%") {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Reverses ``percentEncoded(_:)``; malformed escapes are kept as they are.
    static func percentDecoded(_ field: String) -> String {
        let utf8 = Array(field.utf8)
        guard utf8.contains(UInt8(ascii: "%")) else { return field }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "%"), index + 2 < utf8.count,
                let high = hexValue(utf8[index + 1]), let low = hexValue(utf8[index + 2])
            {
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
