import Foundation
import Testing

@testable import WAL

@Suite("Write-ahead log")
struct WriteAheadLogTests {
    private func withDirectory(_ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wal-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try body(directory)
    }

    private func entries(_ range: ClosedRange<UInt64>, size: Int = 40) -> [LogEntry] {
        range.map { index in LogEntry(index: index, data: (0..<size).map { UInt8(truncatingIfNeeded: Int(index) &* 7 &+ $0) }) }
    }

    private func segments(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".wal") }.sorted()
    }

    @Test func crc32cMatchesTheStandardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
        // Chaining equals checksumming the concatenation.
        let whole = CRC32C.checksum(Array("hello, world".utf8))
        #expect(CRC32C.checksum(Array(", world".utf8), continuing: CRC32C.checksum(Array("hello".utf8))) == whole)
    }

    @Test func entriesSurviveReopeningAndAppendsContinue() throws {
        try withDirectory { directory in
            do {
                let (log, existing) = try WriteAheadLog.open(directory: directory)
                #expect(existing.isEmpty)
                try log.append(entries(1...3))
                try log.append(entries(4...4, size: 0))
            }
            do {
                let (log, existing) = try WriteAheadLog.open(directory: directory)
                #expect(existing == entries(1...3) + entries(4...4, size: 0))
                #expect(log.lastIndex == 4)
                try log.append(entries(5...6))
            }
            let (_, all) = try WriteAheadLog.open(directory: directory)
            #expect(all.map(\.index) == Array(1...6))
            #expect(try segments(directory) == ["0000000000000000-0000000000000001.wal"])
        }
    }

    @Test func segmentsRollOverAndChainAcrossFiles() throws {
        try withDirectory { directory in
            do {
                let (log, _) = try WriteAheadLog.open(directory: directory, segmentSize: 300)
                for index in UInt64(1)...20 { try log.append(entries(index...index)) }
            }
            let names = try segments(directory)
            #expect(names.count > 3)
            #expect(names[1].hasPrefix("0000000000000001-"))
            let (_, all) = try WriteAheadLog.open(directory: directory, segmentSize: 300)
            #expect(all == entries(1...20))
        }
    }

    @Test func aTornLastRecordIsDroppedAtEveryCutPoint() throws {
        try withDirectory { directory in
            do {
                let (log, _) = try WriteAheadLog.open(directory: directory)
                try log.append(entries(1...2))
                try log.append(entries(3...3, size: 25))
            }
            let path = "\(directory)/\(try segments(directory)[0])"
            let full = try Data(contentsOf: URL(fileURLWithPath: path))
            let lastRecordSize = WriteAheadLog.headerSize + 8 + 25
            for cut in (full.count - lastRecordSize)..<full.count {
                try full.prefix(cut).write(to: URL(fileURLWithPath: path))
                let (log, found) = try WriteAheadLog.open(directory: directory)
                #expect(found == entries(1...2), "cut at \(cut)")
                #expect(log.lastIndex == 2)
                #expect(try Data(contentsOf: URL(fileURLWithPath: path)).count == full.count - lastRecordSize, "truncated at \(cut)")
            }
            // And the repaired log takes new appends.
            do {
                let (log, _) = try WriteAheadLog.open(directory: directory)
                try log.append(entries(3...3))
            }
            #expect(try WriteAheadLog.open(directory: directory).1 == entries(1...3))
        }
    }

    @Test func zeroFilledTailIsTreatedAsTorn() throws {
        try withDirectory { directory in
            do {
                let (log, _) = try WriteAheadLog.open(directory: directory)
                try log.append(entries(1...2))
            }
            let path = "\(directory)/\(try segments(directory)[0])"
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes.append(Data(repeating: 0, count: 4096))
            try bytes.write(to: URL(fileURLWithPath: path))
            #expect(try WriteAheadLog.open(directory: directory).1 == entries(1...2))
        }
    }

    @Test func aFlippedBitInTheMiddleIsReportedWithFileAndOffset() throws {
        try withDirectory { directory in
            do {
                let (log, _) = try WriteAheadLog.open(directory: directory)
                try log.append(entries(1...5))
            }
            let name = try segments(directory)[0]
            let path = "\(directory)/\(name)"
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            // Record layout: a CRC record (9 + 4 bytes), then entries of 9 + 8 + 40 bytes each.
            let secondEntry = 13 + 57
            bytes[secondEntry + 20] ^= 0x04
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            #expect(throws: WALError.corrupt(file: name, offset: secondEntry, reason: "CRC mismatch")) {
                _ = try WriteAheadLog.open(directory: directory)
            }
        }
    }

    @Test func aMissingSegmentIsAnError() throws {
        try withDirectory { directory in
            do {
                let (log, _) = try WriteAheadLog.open(directory: directory, segmentSize: 200)
                for index in UInt64(1)...12 { try log.append(entries(index...index)) }
            }
            let names = try segments(directory)
            try FileManager.default.removeItem(atPath: "\(directory)/\(names[1])")
            #expect(throws: WALError.missingSegment(expected: 1, found: names[2])) {
                _ = try WriteAheadLog.open(directory: directory, segmentSize: 200)
            }
        }
    }
}

@Suite("Write-ahead log: torn appends")
struct TornAppendTests {
    @Test func aZeroedSectorInsideTheLastAppendIsTornNotCorrupt() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wal-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let (log, _) = try WriteAheadLog.open(directory: directory)
            try log.append([LogEntry(index: 1, data: Array(repeating: 7, count: 100))])
            // One append of a 3 KiB record spanning several sectors.
            try log.append([LogEntry(index: 2, data: Array(repeating: 9, count: 3_000))])
        }
        let name = try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasSuffix(".wal") }!
        let path = "\(directory)/\(name)"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // The second sector of the file never reached the disk; later sectors did.
        for index in 512..<1024 { bytes[index] = 0 }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let (log, found) = try WriteAheadLog.open(directory: directory)
        #expect(found.map(\.index) == [1])
        #expect(log.lastIndex == 1)
    }
}
