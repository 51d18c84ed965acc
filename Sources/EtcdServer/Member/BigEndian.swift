/// 64-bit numbers as the 8 big-endian bytes the member's entries and read contexts carry.
enum BigEndian {
    static func bytes(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    /// The number `bytes` holds; nil unless there are exactly 8.
    static func number(_ bytes: some Collection<UInt8>) -> UInt64? {
        guard bytes.count == 8 else { return nil }
        return bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }
}
