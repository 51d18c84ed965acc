/// CRC-32C (Castagnoli), the checksum of every WAL record and every backend record:
/// table-driven, eight bytes per step.
package enum CRC32C {
    /// Extends `crc` (0 to start) over `bytes`.
    package static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var value = ~crc
        var index = 0
        let count = bytes.count
        while count - index >= 8 {
            let low = value ^ UInt32(bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self).littleEndian)
            let high = UInt32(bytes.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self).littleEndian)
            value = tables[7][Int(low & 0xFF)] ^ tables[6][Int((low >> 8) & 0xFF)]
                ^ tables[5][Int((low >> 16) & 0xFF)] ^ tables[4][Int(low >> 24)]
                ^ tables[3][Int(high & 0xFF)] ^ tables[2][Int((high >> 8) & 0xFF)]
                ^ tables[1][Int((high >> 16) & 0xFF)] ^ tables[0][Int(high >> 24)]
            index += 8
        }
        while index < count {
            value = tables[0][Int((value ^ UInt32(bytes[index])) & 0xFF)] ^ (value >> 8)
            index += 1
        }
        return ~value
    }

    package static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// tables[0] is the byte-at-a-time table of the reflected polynomial 0x82F63B78; table k
    /// advances a byte's contribution by k more bytes.
    private static let tables: [[UInt32]] = {
        var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            tables[0][byte] = crc
        }
        for byte in 0..<256 {
            for k in 1..<8 {
                let previous = tables[k - 1][byte]
                tables[k][byte] = tables[0][Int(previous & 0xFF)] ^ (previous >> 8)
            }
        }
        return tables
    }()
}
