import GRPCWire
import NIOCore
import NIOHTTP1
import SwiftProtobuf

/// The gateway's JSON, as etcd 3.6's grpc-gateway marshals it: proto field names
/// (`create_revision`), 64-bit integers as strings, bytes in base64, enums by name, fields at
/// their default value left out. Requests may use proto or lowerCamel names; unknown fields are
/// ignored. Errors are `{"code":…,"message":…}` (a `google.rpc.Status` without details) with
/// grpc-gateway's HTTP status for the code.
enum GatewayJSON {
    static let encoding: JSONEncodingOptions = {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        return options
    }()

    static let decoding: JSONDecodingOptions = {
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = true
        return options
    }()

    /// `bytes` as a `M`; an empty (or all-blank) body is the empty message, as in grpc-gateway.
    static func decode<M: Message>(_: M.Type, from bytes: some Collection<UInt8>) throws(GRPCStatus) -> M {
        guard bytes.contains(where: { !isBlank($0) }) else { return M() }
        do {
            return try M(jsonUTF8Bytes: Array(bytes), options: decoding)
        } catch {
            throw GRPCStatus(.invalidArgument, describe(error))
        }
    }

    static func encode(_ message: some Message) -> String {
        // Encoding a message with no Any fields cannot fail.
        (try? message.jsonString(options: encoding)) ?? "{}"
    }

    /// One message of a stream: `{"result":…}`.
    static func streamResult(_ message: some Message) -> String {
        #"{"result":\#(encode(message))}"#
    }

    /// grpc-gateway's error body for `status`.
    static func errorBody(_ status: GRPCStatus) -> String {
        #"{"code":\#(status.code.rawValue),"message":\#(quoted(status.message))}"#
    }

    /// An error ending a stream: `{"error":…}`.
    static func streamError(_ status: GRPCStatus) -> String {
        #"{"error":\#(errorBody(status))}"#
    }

    /// `text` as a JSON string literal.
    static func quoted(_ text: String) -> String {
        (try? Google_Protobuf_Value(stringValue: text).jsonString()) ?? "\"\""
    }

    /// The HTTP status grpc-gateway answers a gRPC error with.
    static func httpStatus(_ code: GRPCStatus.Code) -> HTTPResponseStatus {
        switch code {
        case .ok: .ok
        case .cancelled: .custom(code: 499, reasonPhrase: "Client Closed Request")
        case .unknown, .internal, .dataLoss: .internalServerError
        case .invalidArgument, .failedPrecondition, .outOfRange: .badRequest
        case .deadlineExceeded: .gatewayTimeout
        case .notFound: .notFound
        case .alreadyExists, .aborted: .conflict
        case .permissionDenied: .forbidden
        case .unauthenticated: .unauthorized
        case .resourceExhausted: .tooManyRequests
        case .unimplemented: .notImplemented
        case .unavailable: .serviceUnavailable
        }
    }

    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\t")
    }

    /// What was wrong with a request body, in words.
    static func describe(_ error: any Error) -> String {
        switch error as? JSONDecodingError {
        case .malformedString?: "invalid JSON: a quoted string was expected (field names and bytes values are strings)"
        case .malformedNumber?: "invalid number"
        case .numberRange?: "number out of range"
        case .malformedBool?: "invalid boolean"
        case .unrecognizedEnumValue?: "unknown enum value"
        case .leadingZero?: "number with a leading zero"
        case .truncated?: "unexpected end of JSON input"
        case .schemaMismatch?: "value of the wrong type"
        case .malformedMap?: "invalid map"
        case .conflictingOneOf?: "two fields of one oneof"
        case .trailingGarbage?: "text after the JSON object"
        case .failure?: "invalid JSON, or a bytes value that is not base64"
        default: "invalid JSON: \(error)"
        }
    }
}
