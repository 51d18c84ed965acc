import Checksum
import Foundation
import Testing

@testable import WAL

@Suite("WAL records")
struct WALRecordTests {
    @Test func crc32cMatchesTheStandardCheckValue() {
        let check = CRC32C.checksum(Array("123456789".utf8))
        #expect(check == 0xE306_9283)
        let empty = CRC32C.checksum([])
        #expect(empty == 0)
        // Chaining equals checksumming the concatenation.
        let whole = CRC32C.checksum(Array("hello, world".utf8))
        let chained = CRC32C.checksum(Array(", world".utf8), continuing: CRC32C.checksum(Array("hello".utf8)))
        #expect(chained == whole)
        // Longer than the eight-byte fast path, unaligned lengths included.
        let long = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var byteByByte: UInt32 = 0
        for byte in long { byteByByte = CRC32C.checksum([byte], continuing: byteByByte) }
        let atOnce = CRC32C.checksum(long)
        #expect(atOnce == byteByByte)
    }

    @Test func theRecordHeaderIsLengthTypeAndChainedCRC() {
        var crc: UInt32 = 0
        var buffer: [UInt8] = []
        let entry = LogEntry(index: 5, term: 2, data: [0xAA, 0xBB, 0xCC])
        let payload = RecordCodec.payload(entry)
        #expect(payload == [5, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0xAA, 0xBB, 0xCC])
        RecordCodec.append(.entry, payload, crc: &crc, to: &buffer)
        let expectedCRC = CRC32C.checksum(payload, continuing: CRC32C.checksum([3]))
        #expect(crc == expectedCRC)
        #expect(buffer.count == 9 + 19)
        #expect(Array(buffer[0..<4]) == [19, 0, 0, 0])
        #expect(buffer[4] == 3)
        let storedCRC = Array(buffer[5..<9])
        let expectedBytes = [UInt8(expectedCRC & 0xFF), UInt8((expectedCRC >> 8) & 0xFF), UInt8((expectedCRC >> 16) & 0xFF), UInt8(expectedCRC >> 24)]
        #expect(storedCRC == expectedBytes)
        #expect(Array(buffer[9...]) == payload)
        // The next record continues from this one's CRC.
        var second: [UInt8] = []
        RecordCodec.append(.snapshot, RecordCodec.payload(WALSnapshot(index: 1, term: 1)), crc: &crc, to: &second)
        let continued = CRC32C.checksum(RecordCodec.payload(WALSnapshot(index: 1, term: 1)), continuing: CRC32C.checksum([5], continuing: expectedCRC))
        #expect(crc == continued)
    }

    @Test func everyRecordTypeRoundTripsThroughTheReader() throws {
        let seed: UInt32 = 0x1234_5678
        var crc = seed
        var bytes: [UInt8] = []
        let metadata = WALMetadata(memberID: UInt64.max, clusterID: 0x0102_0304_0506_0708)
        let entry = LogEntry(index: 0x1_0000_0001, term: 0xFFFF_FFFF_FFFF_FFFE, data: [1, 2, 3, 0, 5])
        let emptyEntry = LogEntry(index: 0x1_0000_0002, term: 7, data: [])
        let state = WALHardState(term: 9, vote: 0xABCD_EF01_2345_6789, commit: 0x1_0000_0000)
        let snapshot = WALSnapshot(index: 42, term: UInt64.max)
        RecordCodec.append(.crc, RecordCodec.payload(crc: seed), crc: &crc, to: &bytes)
        RecordCodec.append(.metadata, RecordCodec.payload(metadata), crc: &crc, to: &bytes)
        RecordCodec.append(.entry, RecordCodec.payload(entry), crc: &crc, to: &bytes)
        RecordCodec.append(.entry, RecordCodec.payload(emptyEntry), crc: &crc, to: &bytes)
        RecordCodec.append(.hardState, RecordCodec.payload(state), crc: &crc, to: &bytes)
        RecordCodec.append(.snapshot, RecordCodec.payload(snapshot), crc: &crc, to: &bytes)

        let read = try WALTest.records(bytes)
        #expect(read.records.map(\.0) == [
            .crc(seed), .metadata(metadata, version: 2), .entry(entry), .entry(emptyEntry), .hardState(state), .snapshot(snapshot),
        ])
        #expect(read.records.map(\.1) == [0, 13, 46, 46 + 30, 46 + 30 + 25, 46 + 30 + 25 + 33])
        #expect(read.end == bytes.count)
        #expect(bytes.count == 46 + 30 + 25 + 33 + 25)
        #expect(read.crc == crc)
        // The same bytes as the last segment read the same.
        let asLast = try WALTest.records(bytes, isLast: true)
        #expect(asLast.records.map(\.0) == read.records.map(\.0))
        #expect(asLast.end == bytes.count)
    }

    @Test func crcChainsAcrossRecords() throws {
        var crc: UInt32 = 0
        var bytes: [UInt8] = []
        RecordCodec.append(.crc, RecordCodec.payload(crc: 0), crc: &crc, to: &bytes)
        let first = LogEntry(index: 1, term: 1, data: [1, 1, 1])
        let second = LogEntry(index: 2, term: 1, data: [2, 2, 2])
        var firstRecord: [UInt8] = []
        var secondRecord: [UInt8] = []
        let crcBeforeEntries = crc
        RecordCodec.append(.entry, RecordCodec.payload(first), crc: &crc, to: &firstRecord)
        RecordCodec.append(.entry, RecordCodec.payload(second), crc: &crc, to: &secondRecord)

        let inOrder = try WALTest.records(bytes + firstRecord + secondRecord)
        #expect(inOrder.records.map(\.0) == [.crc(0), .entry(first), .entry(second)])
        #expect(inOrder.crc == crc)

        // Swapped, each record is intact but no longer continues the chain.
        let swapped = WALTest.error { _ = try WALTest.records(bytes + secondRecord + firstRecord, name: "swapped") }
        #expect(swapped as? WALError == .corrupt(file: "swapped", offset: 13, reason: "CRC mismatch"))

        // A record encoded from a fresh chain (CRC 0) is rejected where it does not follow.
        var fresh: UInt32 = 0
        var unchained: [UInt8] = []
        RecordCodec.append(.entry, RecordCodec.payload(second), crc: &fresh, to: &unchained)
        let restarted = WALTest.error { _ = try WALTest.records(bytes + firstRecord + unchained, name: "restarted") }
        #expect(restarted as? WALError == .corrupt(file: "restarted", offset: 13 + firstRecord.count, reason: "CRC mismatch"))

        // A CRC record whose own checksum is right but which carries another running CRC.
        var wrongCarry = crcBeforeEntries
        var carried: [UInt8] = []
        RecordCodec.append(.crc, RecordCodec.payload(crc: crcBeforeEntries &+ 1), crc: &wrongCarry, to: &carried)
        let broken = WALTest.error { _ = try WALTest.records(bytes + carried, name: "carry") }
        #expect(broken as? WALError == .corrupt(file: "carry", offset: 13, reason: "CRC record does not continue the chain"))
    }

    @Test func aSegmentsCRCRecordCarriesThePreviousSegmentsRunningCRC() throws {
        var crc: UInt32 = 0
        var segmentA: [UInt8] = []
        RecordCodec.append(.crc, RecordCodec.payload(crc: 0), crc: &crc, to: &segmentA)
        RecordCodec.append(.entry, RecordCodec.payload(LogEntry(index: 1, term: 1, data: [9])), crc: &crc, to: &segmentA)
        let endOfA = crc
        var segmentB: [UInt8] = []
        RecordCodec.append(.crc, RecordCodec.payload(crc: endOfA), crc: &crc, to: &segmentB)
        RecordCodec.append(.entry, RecordCodec.payload(LogEntry(index: 2, term: 1, data: [8])), crc: &crc, to: &segmentB)

        // Read in sequence with one running CRC.
        var running: UInt32?
        _ = try SegmentReader.read(segmentA, name: "a", isLast: false, crc: &running) { _, _ in }
        #expect(running == endOfA)
        var bRecords: [Record] = []
        _ = try SegmentReader.read(segmentB, name: "b", isLast: true, crc: &running) { record, _ in bRecords.append(record) }
        #expect(bRecords.first == .crc(endOfA))
        #expect(running == crc)

        // Read on its own, segment B seeds the chain from its CRC record.
        let alone = try WALTest.records(segmentB)
        #expect(alone.records.first?.0 == .crc(endOfA))
        #expect(alone.crc == crc)

        // Read after a different chain, its CRC record does not match.
        let mismatch = WALTest.error { _ = try WALTest.records(segmentB, name: "b", crc: endOfA &+ 1) }
        #expect(mismatch as? WALError == .corrupt(file: "b", offset: 0, reason: "CRC mismatch"))
    }

    @Test func malformedRecordsAreReportedWithTheirOffset() throws {
        var crc: UInt32 = 0
        var start: [UInt8] = []
        RecordCodec.append(.crc, RecordCodec.payload(crc: 0), crc: &crc, to: &start)

        // An unknown type with a valid CRC.
        var unknownCRC = crc
        var unknown: [UInt8] = []
        let unknownType = RecordType.entry
        RecordCodec.append(unknownType, [1, 2, 3], crc: &unknownCRC, to: &unknown)
        unknown[4] = 9
        let payloadCRC = CRC32C.checksum([1, 2, 3], continuing: CRC32C.checksum([9], continuing: crc))
        unknown.replaceSubrange(5..<9, with: withUnsafeBytes(of: payloadCRC.littleEndian) { Array($0) })
        let unknownError = WALTest.error { _ = try WALTest.records(start + unknown, name: "u") }
        #expect(unknownError as? WALError == .corrupt(file: "u", offset: 13, reason: "unknown record type 9"))

        // An entry too short to hold its index and term.
        var shortCRC = crc
        var short: [UInt8] = []
        RecordCodec.append(.entry, [1, 0, 0, 0, 0, 0, 0, 0], crc: &shortCRC, to: &short)
        let shortError = WALTest.error { _ = try WALTest.records(start + short, name: "s") }
        #expect(shortError as? WALError == .corrupt(file: "s", offset: 13, reason: "short entry record"))

        // A segment that does not start with its CRC record.
        var noCRC: UInt32 = 0
        var headless: [UInt8] = []
        RecordCodec.append(.entry, RecordCodec.payload(LogEntry(index: 1, term: 1, data: [1])), crc: &noCRC, to: &headless)
        let headlessError = WALTest.error { _ = try WALTest.records(headless, name: "h") }
        #expect(headlessError as? WALError == .corrupt(file: "h", offset: 0, reason: "segment does not start with a CRC record"))

        // A partial record: corruption in a closed segment, the torn end of the last one.
        var fullCRC = crc
        var full: [UInt8] = []
        RecordCodec.append(.entry, RecordCodec.payload(LogEntry(index: 1, term: 1, data: [7, 7, 7, 7])), crc: &fullCRC, to: &full)
        let partial = start + full.dropLast(2)
        let partialError = WALTest.error { _ = try WALTest.records(partial, name: "p") }
        #expect(partialError as? WALError == .corrupt(file: "p", offset: 13, reason: "partial record"))
        let partialLast = try WALTest.records(partial, name: "p", isLast: true)
        #expect(partialLast.end == 13)
        #expect(partialLast.records.map(\.0) == [.crc(0)])
        let headerOnly = start + full.prefix(5)
        let headerError = WALTest.error { _ = try WALTest.records(headerOnly, name: "p") }
        #expect(headerError as? WALError == .corrupt(file: "p", offset: 13, reason: "partial record header"))
        let headerLast = try WALTest.records(headerOnly, name: "p", isLast: true)
        #expect(headerLast.end == 13)

        // Preallocated zeros after the records end the last segment.
        let preallocated = start + full + [UInt8](repeating: 0, count: 4096)
        let tail = try WALTest.records(preallocated, isLast: true)
        #expect(tail.end == 13 + full.count)
        #expect(tail.records.count == 2)
        let zerosInClosed = WALTest.error { _ = try WALTest.records(preallocated, name: "z") }
        #expect(zerosInClosed as? WALError == .corrupt(file: "z", offset: 13 + full.count, reason: "CRC mismatch"))
    }
}

@Suite("Write-ahead log")
struct WriteAheadLogTests {
    private let options = WriteAheadLog.Options(segmentSize: 64 * 1024)
    private let origin = WALSnapshot(index: 0, term: 0)

    @Test func entriesHardStateAndMetadataSurviveClosing() throws {
        try WALTest.withDirectory { directory in
            let existsBefore = WriteAheadLog.exists(directory: directory)
            #expect(existsBefore == false)
            do {
                let log = try WriteAheadLog.create(directory: directory, metadata: WALTest.metadata, options: options)
                #expect(log.lastIndex == 0)
                try log.save(hardState: WALHardState(term: 1, vote: 3, commit: 0), entries: WALTest.entries(1...3))
                try log.save(hardState: WALHardState(term: 1, vote: 3, commit: 3), entries: [])
                try log.save(entries: WALTest.entries(4...4, size: 0) + WALTest.entries(5...5, size: 1000))
                #expect(log.lastIndex == 5)
                log.close()
                // The prepared next segment is removed on close.
                #expect(WALTest.temporaryFiles(directory) == [])
            }
            let existsAfter = WriteAheadLog.exists(directory: directory)
            #expect(existsAfter)
            #expect(WALTest.segments(directory) == ["0000000000000000-0000000000000000.wal"])

            let (log, contents) = try WriteAheadLog.open(directory: directory, from: origin, options: options)
            let expected = WriteAheadLog.Contents(
                metadata: WALTest.metadata, hardState: WALHardState(term: 1, vote: 3, commit: 3),
                entries: WALTest.entries(1...3) + WALTest.entries(4...4, size: 0) + WALTest.entries(5...5, size: 1000))
            #expect(contents == expected)
            #expect(contents.entries.count == 5)
            #expect(log.lastIndex == 5)
        }
    }

    @Test func appendsContinueAfterReopening() throws {
        try WALTest.withDirectory { directory in
            try WALTest.makeLog(directory, entries: WALTest.entries(1...3), segmentSize: 64 * 1024)
            do {
                let (log, contents) = try WriteAheadLog.open(directory: directory, from: origin, options: options)
                #expect(contents.entries == WALTest.entries(1...3))
                #expect(contents.hardState == WALHardState())
                try log.save(hardState: WALHardState(term: 2, vote: 1, commit: 3), entries: WALTest.entries(4...6, term: 2))
            }
            do {
                let (log, contents) = try WriteAheadLog.open(directory: directory, from: origin, options: options)
                #expect(contents.entries == WALTest.entries(1...3) + WALTest.entries(4...6, term: 2))
                #expect(contents.hardState == WALHardState(term: 2, vote: 1, commit: 3))
                #expect(log.lastIndex == 6)
                try log.save(entries: WALTest.entries(7...7, term: 2))
            }
            let contents = try WALTest.contents(directory)
            #expect(contents.entries.map(\.index) == Array(1...7))
            #expect(contents.entries == WALTest.entries(1...3) + WALTest.entries(4...7, term: 2))
            #expect(contents.hardState == WALHardState(term: 2, vote: 1, commit: 3))
            #expect(contents.metadata == WALTest.metadata)
            #expect(WALTest.segments(directory).count == 1)
        }
    }

    @Test func aLowerIndexReplacesTheTail() throws {
        try WALTest.withDirectory { directory in
            do {
                let log = try WriteAheadLog.create(directory: directory, metadata: WALTest.metadata, options: options)
                try log.save(entries: WALTest.entries(1...5, term: 1))
                // A new leader overwrites 3...
                try log.save(hardState: WALHardState(term: 2, vote: 2, commit: 2), entries: WALTest.entries(3...4, term: 2, salt: 1))
                #expect(log.lastIndex == 4)
            }
            let afterFirst = try WALTest.contents(directory)
            #expect(afterFirst.entries == WALTest.entries(1...2, term: 1) + WALTest.entries(3...4, term: 2, salt: 1))
            do {
                let (log, _) = try WriteAheadLog.open(directory: directory, from: origin, options: options)
                #expect(log.lastIndex == 4)
                // ... and after reopening another one overwrites 4, then the log grows again.
                try log.save(entries: WALTest.entries(4...4, term: 3, salt: 2))
                try log.save(entries: WALTest.entries(5...6, term: 3))
                #expect(log.lastIndex == 6)
            }
            let contents = try WALTest.contents(directory)
            #expect(contents.entries == WALTest.entries(1...2, term: 1) + WALTest.entries(3...3, term: 2, salt: 1)
                + WALTest.entries(4...4, term: 3, salt: 2) + WALTest.entries(5...6, term: 3))
            #expect(contents.entries.map(\.term) == [1, 1, 2, 3, 3, 3])
            #expect(contents.hardState == WALHardState(term: 2, vote: 2, commit: 2))
        }
    }

    @Test func aLogCreatedFromASnapshotStartsAfterIt() throws {
        try WALTest.withDirectory { directory in
            let snapshot = WALSnapshot(index: 10, term: 3)
            do {
                let log = try WriteAheadLog.create(directory: directory, metadata: WALTest.metadata, snapshot: snapshot, options: options)
                #expect(log.lastIndex == 10)
                try log.save(entries: WALTest.entries(11...12, term: 3))
            }
            #expect(WALTest.segments(directory) == ["0000000000000000-000000000000000a.wal"])
            let contents = try WALTest.contents(directory, from: snapshot)
            #expect(contents.entries == WALTest.entries(11...12, term: 3))
            WALTest.expect(.snapshotNotFound(origin)) { _ = try WriteAheadLog.open(directory: directory, from: origin, options: options) }
        }
    }

    @Test func createRefusesAnExistingLogAndOpenNeedsOne() throws {
        try WALTest.withDirectory { directory in
            WALTest.expect(.io("no log in \(directory)")) { _ = try WriteAheadLog.open(directory: directory, from: origin, options: options) }
            try WALTest.makeLog(directory, entries: WALTest.entries(1...1))
            WALTest.expect(.io("cannot create a log in \(directory): one exists already")) {
                _ = try WriteAheadLog.create(directory: directory, metadata: WALTest.metadata, options: options)
            }
            let contents = try WALTest.contents(directory)
            #expect(contents.entries == WALTest.entries(1...1))
        }
    }

    @Test func segmentsRollOverAndChainTheirCRCs() throws {
        try WALTest.withDirectory { directory in
            let segmentSize = 4096
            // Entry records are 125 bytes: the first segment (104-byte header) closes after 32
            // entries at 4104 bytes, the next (79-byte header) after 33 more at 4204 bytes.
            try WALTest.makeLog(directory, entries: WALTest.entries(1...80), segmentSize: segmentSize)
            let names = WALTest.segments(directory)
            #expect(names == [
                "0000000000000000-0000000000000000.wal",
                "0000000000000001-0000000000000021.wal",
                "0000000000000002-0000000000000042.wal",
            ])
            #expect(WALTest.temporaryFiles(directory) == [])
            guard names.count == 3 else { return }
            let sizes = try names.map { try WALTest.size("\(directory)/\($0)") }
            #expect(sizes == [4104, 4204, 4096])

            // Closed segments end exactly at their last record; the last one is preallocated.
            var previousCRC: UInt32 = 0
            var entryIndexes: [[UInt64]] = []
            for (position, name) in names.enumerated() {
                let bytes = try WALTest.read("\(directory)/\(name)")
                let isLast = position == names.count - 1
                let read = try WALTest.records(bytes, name: name, isLast: isLast)
                if isLast {
                    #expect(read.end == WALTest.segmentHeader + 15 * 125)
                    #expect(bytes.count == segmentSize)
                } else {
                    #expect(read.end == bytes.count)
                    #expect(bytes.count >= segmentSize)
                }
                // Each segment starts with the CRC, metadata and hard state records, the CRC
                // record carrying the running CRC of everything before the segment.
                #expect(read.records.first?.0 == .crc(previousCRC))
                #expect(read.records.dropFirst().first?.0 == .metadata(WALTest.metadata, version: RecordCodec.formatVersion))
                #expect(read.records.dropFirst(2).first?.0 == .hardState(WALHardState()))
                previousCRC = read.crc ?? 0
                entryIndexes.append(read.records.compactMap { if case .entry(let entry) = $0.0 { entry.index } else { nil } })
            }
            #expect(entryIndexes == [Array(1...32), Array(33...65), Array(66...80)])

            let (log, contents) = try WriteAheadLog.open(
                directory: directory, from: origin, options: WriteAheadLog.Options(segmentSize: segmentSize))
            #expect(contents.entries == WALTest.entries(1...80))
            #expect(log.lastIndex == 80)
        }
    }

    /// `--unsafe-no-fsync`: nothing waits for the disk, and what was written reads back (the
    /// page cache holds it for the next process, as after a kill -9).
    @Test func aLogThatSkipsSyncsNeverSyncsAndReadsBack() throws {
        try WALTest.withDirectory { directory in
            let counter = CallCounter()
            var options = WriteAheadLog.Options(segmentSize: 4096, fsyncObserver: { _ in counter.increment() })
            options.skipsSync = true
            do {
                let log = try WriteAheadLog.create(directory: directory, metadata: WALTest.metadata, options: options)
                try log.save(hardState: WALHardState(term: 1, vote: 1, commit: 3), entries: WALTest.entries(1...3))
                try log.save(entries: WALTest.entries(4...9, size: 1000))
                #expect(WALTest.segments(directory).count == 2)
            }
            #expect(counter.value == 0)
            let (_, contents) = try WriteAheadLog.open(directory: directory, from: WALSnapshot(index: 0, term: 0), options: options)
            #expect(contents.entries == WALTest.entries(1...3) + WALTest.entries(4...9, size: 1000))
            #expect(contents.hardState == WALHardState(term: 1, vote: 1, commit: 3))
            #expect(counter.value == 0)
        }
    }

    @Test func theFsyncObserverHearsOfEveryFdatasync() throws {
        try WALTest.withDirectory { directory in
            let counter = CallCounter()
            let observed = WriteAheadLog.Options(segmentSize: 4096, fsyncObserver: { _ in counter.increment() })
            do {
                let log = try WriteAheadLog.create(directory: directory, metadata: WALTest.metadata, options: observed)
                #expect(counter.value == 1)
                try log.save(entries: WALTest.entries(1...3))
                #expect(counter.value == 2)
                try log.save(hardState: WALHardState(term: 1, vote: 1, commit: 1), entries: [])
                #expect(counter.value == 3)
                try log.save(hardState: WALHardState(term: 1, vote: 1, commit: 2), entries: WALTest.entries(4...4))
                #expect(counter.value == 4)
                try log.save(entries: [])
                #expect(counter.value == 4)
                try log.saveSnapshot(WALSnapshot(index: 4, term: 1))
                #expect(counter.value == 5)
                // A save that fills the segment also syncs the next segment's header.
                try log.save(entries: WALTest.entries(5...5, size: 4000))
                #expect(counter.value == 7)
                #expect(WALTest.segments(directory).count == 2)
            }
            let (log, contents) = try WriteAheadLog.open(directory: directory, from: WALSnapshot(index: 4, term: 1), options: observed)
            #expect(counter.value == 8)
            #expect(contents.entries == WALTest.entries(5...5, size: 4000))
            try log.save(entries: WALTest.entries(6...6))
            #expect(counter.value == 9)
        }
    }
}
