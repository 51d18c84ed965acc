import NIOCore

/// Cuts a streamed request body into the JSON objects written one after another in it (`{…}{…}`,
/// one per line, or split anywhere across chunks), as the gateway's streaming calls take them.
///
/// It finds where each object ends (braces outside strings); parsing is the decoder's job. An
/// object larger than `maximumObjectBytes`, or anything but an object at the top level, is an
/// error, after which the splitter yields nothing more.
struct JSONObjectSplitter {
    enum Failure: Error, Equatable {
        case notAnObject(UInt8)
        case tooLarge(Int)
    }

    let maximumObjectBytes: Int
    private var pending: [UInt8] = []
    private var depth = 0
    private var inString = false
    private var escaped = false
    private var failed = false

    init(maximumObjectBytes: Int) {
        self.maximumObjectBytes = maximumObjectBytes
    }

    /// The objects that `bytes` completes, in order.
    mutating func append(_ bytes: ByteBuffer) throws(Failure) -> [[UInt8]] {
        guard !failed else { return [] }
        var objects: [[UInt8]] = []
        for byte in bytes.readableBytesView {
            if depth == 0 {
                // Between objects: whitespace, or the next one's opening brace.
                switch byte {
                case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): continue
                case UInt8(ascii: "{"): break
                default:
                    failed = true
                    throw .notAnObject(byte)
                }
            }
            pending.append(byte)
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
            } else {
                switch byte {
                case UInt8(ascii: "\""): inString = true
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
                default: break
                }
            }
            if depth == 0 {
                objects.append(pending)
                pending.removeAll(keepingCapacity: true)
            } else if pending.count > maximumObjectBytes {
                failed = true
                throw .tooLarge(maximumObjectBytes)
            }
        }
        return objects
    }

    /// Whether the body ended in the middle of an object.
    var hasPartialObject: Bool { !pending.isEmpty }
}
