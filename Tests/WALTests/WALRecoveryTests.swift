import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import WAL

@Suite("Write-ahead log recovery")
struct WALRecoveryTests {
    private static let segmentSize = 8192
    private let options = WriteAheadLog.Options(segmentSize: WALRecoveryTests.segmentSize)
    private let origin = WALSnapshot(index: 0, term: 0)
    private let firstSegment = "0000000000000000-0000000000000000.wal"

    /// Entries 1...3 (20 data bytes, 45-byte records at 104, 149, 194), then entry 4 whose
    /// record starts at 239 and ends at 239 + 25 + `lastSize`.
    private func logEndingInALargeRecord(_ directory: String, lastSize: Int) throws -> (bytes: [UInt8], lastRecord: Range<Int>) {
        try WALTest.makeLog(
            directory, entries: WALTest.entries(1...3, size: 20) + WALTest.entries(4...4, size: lastSize),
            segmentSize: Self.segmentSize)
        let bytes = try WALTest.read("\(directory)/\(firstSegment)")
        let read = try WALTest.records(bytes, isLast: true)
        let lastOffset = read.records.last?.1 ?? -1
        #expect(lastOffset == 239)
        #expect(read.end == 239 + 25 + lastSize)
        #expect(bytes.count == Self.segmentSize)
        return (bytes, lastOffset..<read.end)
    }

    /// After a repaired torn tail: the log holds 1...3 and takes a new entry 4.
    private func expectRepairedAndAppendable(_ directory: String, cut: Int, lastRecord: Range<Int>) throws {
        do {
            let (log, contents) = try WriteAheadLog.open(directory: directory, from: origin, options: options)
            #expect(contents.entries == WALTest.entries(1...3, size: 20), "cut at \(cut)")
            #expect(log.lastIndex == 3, "cut at \(cut)")
            // Whatever the torn write left is cleared, and the file is preallocated again.
            let bytes = try WALTest.read("\(directory)/\(firstSegment)")
            #expect(bytes.count == Self.segmentSize, "cut at \(cut)")
            let cleared = bytes[lastRecord.lowerBound...].allSatisfy { $0 == 0 }
            #expect(cleared, "cut at \(cut)")
            try log.save(entries: WALTest.entries(4...4, term: 2, size: 30, salt: cut))
        }
        let contents = try WALTest.contents(directory, segmentSize: Self.segmentSize)
        #expect(contents.entries == WALTest.entries(1...3, size: 20) + WALTest.entries(4...4, term: 2, size: 30, salt: cut), "cut at \(cut)")
    }

    @Test func aTruncatedLastRecordIsDroppedAtEveryByte() throws {
        try WALTest.withDirectory { directory in
            let (original, lastRecord) = try logEndingInALargeRecord(directory, lastSize: 600)
            let path = "\(directory)/\(firstSegment)"
            for cut in lastRecord {
                try WALTest.write(Array(original[..<cut]), to: path)
                try expectRepairedAndAppendable(directory, cut: cut, lastRecord: lastRecord)
            }
            // Cut right after the record: it is whole.
            try WALTest.write(Array(original[..<lastRecord.upperBound]), to: path)
            let whole = try WALTest.contents(directory, segmentSize: Self.segmentSize)
            #expect(whole.entries == WALTest.entries(1...3, size: 20) + WALTest.entries(4...4, size: 600))
        }
    }

    // Zero fill after a cut inside the record's last, partial sector is not accepted as torn: like
    // etcd, the reader assumes a disk writes a 512-byte sector whole or not at all, so a bad record
    // with no zeroed sector may be an acknowledged record gone bad, and opening fails loudly.
    /// Zero fill at the granularity a disk writes: any cut inside the header, a cut at the
    /// sector boundary, and the first sector missing while the second arrived.
    @Test func aZeroFilledLastRecordIsDroppedAtSectorGranularity() throws {
        try WALTest.withDirectory { directory in
            let (original, lastRecord) = try logEndingInALargeRecord(directory, lastSize: 600)
            #expect(lastRecord == 239..<864)
            let path = "\(directory)/\(firstSegment)"
            let zeroFilledCuts = Array(239...(239 + 9)) + [300, 511, 512]
            for cut in zeroFilledCuts {
                try WALTest.write(Array(original[..<cut]) + [UInt8](repeating: 0, count: original.count - cut), to: path)
                try expectRepairedAndAppendable(directory, cut: cut, lastRecord: lastRecord)
            }
            // The record's first sector never arrived, its second did.
            var outOfOrder = original
            for index in 239..<512 { outOfOrder[index] = 0 }
            try WALTest.write(outOfOrder, to: path)
            try expectRepairedAndAppendable(directory, cut: 512, lastRecord: lastRecord)
        }
    }

    @Test func aZeroedSectorInsideTheLastRecordIsTorn() throws {
        try WALTest.withDirectory { directory in
            let (original, lastRecord) = try logEndingInALargeRecord(directory, lastSize: 3000)
            #expect(lastRecord == 239..<3264)
            var bytes = original
            for index in 1024..<1536 { bytes[index] = 0 }
            try WALTest.write(bytes, to: "\(directory)/\(firstSegment)")
            try expectRepairedAndAppendable(directory, cut: 1024, lastRecord: lastRecord)
        }
    }

    @Test func aFlippedBitBeforeTheLastRecordOfTheLastSegmentIsCorruption() throws {
        try WALTest.withDirectory { directory in
            try WALTest.makeLog(directory, entries: WALTest.entries(1...5, size: 40), segmentSize: Self.segmentSize)
            let path = "\(directory)/\(firstSegment)"
            let original = try WALTest.read(path)
            // CRC, metadata, hard state, snapshot marker, then 65-byte entry records; entry 5 at 364 is the last.
            let records = [(0, 13), (13, 33), (46, 33), (79, 25), (104, 65), (169, 65), (234, 65), (299, 65)]
            let read = try WALTest.records(original, isLast: true)
            #expect(read.records.map(\.1) == records.map(\.0) + [364])
            for (offset, size) in records {
                var bytes = original
                bytes[offset + size - 1] ^= 0x10
                try WALTest.write(bytes, to: path)
                WALTest.expect(.corrupt(file: firstSegment, offset: offset, reason: "CRC mismatch")) {
                    _ = try WriteAheadLog.open(directory: directory, from: origin, options: options)
                }
                // Nothing was repaired away.
                let after = try WALTest.read(path)
                #expect(after == bytes, "flip in the record at \(offset)")
            }
            try WALTest.write(original, to: path)
            let contents = try WALTest.contents(directory, segmentSize: Self.segmentSize)
            #expect(contents.entries == WALTest.entries(1...5, size: 40))
        }
    }

    @Test func aFlippedBitInAnEarlierSegmentIsCorruption() throws {
        try WALTest.withDirectory { directory in
            try WALTest.makeLog(directory, entries: WALTest.entries(1...80), segmentSize: 4096)
            let names = WALTest.segments(directory)
            #expect(names.count == 3)
            guard names.count == 3 else { return }
            // Entry 10 in segment 0, entry 32 (the last record of segment 0), entry 40 in segment 1.
            for (name, offset) in [(names[0], 104 + 9 * 125), (names[0], 104 + 31 * 125), (names[1], 79 + 7 * 125)] {
                let path = "\(directory)/\(name)"
                let original = try WALTest.read(path)
                var bytes = original
                bytes[offset + 60] ^= 0x01
                try WALTest.write(bytes, to: path)
                WALTest.expect(.corrupt(file: name, offset: offset, reason: "CRC mismatch")) {
                    _ = try WriteAheadLog.open(directory: directory, from: origin, options: WriteAheadLog.Options(segmentSize: 4096))
                }
                try WALTest.write(original, to: path)
            }
            let contents = try WALTest.contents(directory, segmentSize: 4096)
            #expect(contents.entries == WALTest.entries(1...80))
        }
    }

    @Test func aMissingSegmentIsAnError() throws {
        try WALTest.withDirectory { directory in
            try WALTest.makeLog(directory, entries: WALTest.entries(1...80), segmentSize: 4096)
            let names = WALTest.segments(directory)
            #expect(names.count == 3)
            guard names.count == 3 else { return }
            try FileManager.default.removeItem(atPath: "\(directory)/\(names[1])")
            WALTest.expect(.missingSegment(expected: 1, found: "0000000000000002-0000000000000042.wal")) {
                _ = try WriteAheadLog.open(directory: directory, from: origin, options: WriteAheadLog.Options(segmentSize: 4096))
            }
            // Purging behind a snapshot in the last segment tolerates the gap before it: that is
            // what a purge interrupted on a file system without ordered unlinks leaves.
            let removed = try WriteAheadLog.purge(directory: directory, snapshotIndex: 70, maxFiles: 1)
            #expect(removed == [names[0]])
            #expect(WALTest.segments(directory) == [names[2]])
        }
    }

    @Test func openingFromAnUnsavedSnapshotIsAnError() throws {
        try WALTest.withDirectory { directory in
            do {
                let log = try WriteAheadLog.create(directory: directory, metadata: WALTest.metadata, options: options)
                try log.save(entries: WALTest.entries(1...5))
                try log.saveSnapshot(WALSnapshot(index: 3, term: 1))
            }
            let path = "\(directory)/\(firstSegment)"
            let before = try WALTest.read(path)
            for missing in [WALSnapshot(index: 4, term: 1), WALSnapshot(index: 3, term: 2), WALSnapshot(index: 99, term: 1)] {
                WALTest.expect(.snapshotNotFound(missing)) {
                    _ = try WriteAheadLog.open(directory: directory, from: missing, options: options)
                }
            }
            let after = try WALTest.read(path)
            #expect(after == before)
            let contents = try WALTest.contents(directory, from: WALSnapshot(index: 3, term: 1), segmentSize: Self.segmentSize)
            #expect(contents.entries == WALTest.entries(4...5))
        }
    }

    /// A hand-built first segment: CRC record, a metadata record of `version`, hard state, marker (0, 0).
    private func writeSegment(_ directory: String, name: String, version: UInt64?, extra: [(RecordType, [UInt8])] = [], crc: inout UInt32) throws {
        var bytes: [UInt8] = []
        RecordCodec.append(.crc, RecordCodec.payload(crc: crc), crc: &crc, to: &bytes)
        if let version {
            var payload: [UInt8] = []
            RecordCodec.appendLittleEndian(version, to: &payload)
            RecordCodec.appendLittleEndian(WALTest.metadata.memberID, to: &payload)
            RecordCodec.appendLittleEndian(WALTest.metadata.clusterID, to: &payload)
            RecordCodec.append(.metadata, payload, crc: &crc, to: &bytes)
        }
        RecordCodec.append(.hardState, RecordCodec.payload(WALHardState()), crc: &crc, to: &bytes)
        for (type, payload) in extra { RecordCodec.append(type, payload, crc: &crc, to: &bytes) }
        try WALTest.write(bytes, to: "\(directory)/\(name)")
    }

    @Test func aLogOfAnotherFormatVersionIsRejected() throws {
        for version: UInt64 in [1, 3] {
            try WALTest.withDirectory { directory in
                var crc: UInt32 = 0
                try writeSegment(
                    directory, name: firstSegment, version: version,
                    extra: [(.snapshot, RecordCodec.payload(origin)), (.entry, RecordCodec.payload(WALTest.entries(1...1)[0]))], crc: &crc)
                WALTest.expect(.corrupt(file: firstSegment, offset: 13, reason: "unsupported log format version \(version)")) {
                    _ = try WriteAheadLog.open(directory: directory, from: origin, options: options)
                }
            }
        }
        // The current version written by hand opens.
        try WALTest.withDirectory { directory in
            var crc: UInt32 = 0
            try writeSegment(
                directory, name: firstSegment, version: RecordCodec.formatVersion,
                extra: [(.snapshot, RecordCodec.payload(origin)), (.entry, RecordCodec.payload(WALTest.entries(1...1)[0]))], crc: &crc)
            let contents = try WALTest.contents(directory, segmentSize: Self.segmentSize)
            #expect(contents == WriteAheadLog.Contents(metadata: WALTest.metadata, hardState: WALHardState(), entries: WALTest.entries(1...1)))
        }
        // No metadata record at all.
        try WALTest.withDirectory { directory in
            var crc: UInt32 = 0
            try writeSegment(directory, name: firstSegment, version: nil, extra: [(.snapshot, RecordCodec.payload(origin))], crc: &crc)
            WALTest.expect(.corrupt(file: firstSegment, offset: 0, reason: "no metadata record (a log of an older format?)")) {
                _ = try WriteAheadLog.open(directory: directory, from: origin, options: options)
            }
        }
    }

    @Test func aSegmentOfAnotherMemberIsRejected() throws {
        try WALTest.withDirectory { directory in
            var crc: UInt32 = 0
            try writeSegment(
                directory, name: firstSegment, version: RecordCodec.formatVersion,
                extra: [(.snapshot, RecordCodec.payload(origin)), (.entry, RecordCodec.payload(WALTest.entries(1...1)[0]))], crc: &crc)
            var bytes: [UInt8] = []
            RecordCodec.append(.crc, RecordCodec.payload(crc: crc), crc: &crc, to: &bytes)
            RecordCodec.append(.metadata, RecordCodec.payload(WALMetadata(memberID: 1, clusterID: WALTest.metadata.clusterID)), crc: &crc, to: &bytes)
            let second = "0000000000000001-0000000000000002.wal"
            try WALTest.write(bytes, to: "\(directory)/\(second)")
            WALTest.expect(.corrupt(file: second, offset: 13, reason: "metadata of another member")) {
                _ = try WriteAheadLog.open(directory: directory, from: origin, options: options)
            }
        }
    }

    @Test func savedSnapshotMarkersAreWhereALogIsReadFrom() throws {
        try WALTest.withDirectory { directory in
            do {
                let log = try WriteAheadLog.create(directory: directory, metadata: WALTest.metadata, options: options)
                for index in UInt64(1)...10 {
                    try log.save(hardState: WALHardState(term: 1, vote: 1, commit: index - 1), entries: WALTest.entries(index...index))
                }
                try log.saveSnapshot(WALSnapshot(index: 6, term: 1))
                try log.save(hardState: WALHardState(term: 2, vote: 2, commit: 10), entries: WALTest.entries(11...13, term: 2))
                try log.saveSnapshot(WALSnapshot(index: 12, term: 2))
            }
            let fromSix = try WALTest.contents(directory, from: WALSnapshot(index: 6, term: 1), segmentSize: Self.segmentSize)
            #expect(fromSix.entries == WALTest.entries(7...10) + WALTest.entries(11...13, term: 2))
            #expect(fromSix.hardState == WALHardState(term: 2, vote: 2, commit: 10))
            #expect(fromSix.metadata == WALTest.metadata)
            let fromTwelve = try WALTest.contents(directory, from: WALSnapshot(index: 12, term: 2), segmentSize: Self.segmentSize)
            #expect(fromTwelve.entries == WALTest.entries(13...13, term: 2))
            let fromStart = try WALTest.contents(directory, segmentSize: Self.segmentSize)
            #expect(fromStart.entries == WALTest.entries(1...10) + WALTest.entries(11...13, term: 2))
            // Appends after opening from a marker continue the log.
            do {
                let (log, _) = try WriteAheadLog.open(directory: directory, from: WALSnapshot(index: 12, term: 2), options: options)
                #expect(log.lastIndex == 13)
                try log.save(entries: WALTest.entries(14...14, term: 2))
            }
            let later = try WALTest.contents(directory, from: WALSnapshot(index: 12, term: 2), segmentSize: Self.segmentSize)
            #expect(later.entries == WALTest.entries(13...14, term: 2))
        }
    }

    @Test func leftoverTemporaryFilesAreRemovedOnOpen() throws {
        try WALTest.withDirectory { directory in
            try WALTest.makeLog(directory, entries: WALTest.entries(1...3), segmentSize: 4096)
            // A crash while preparing a segment or creating the log.
            let garbage = [UInt8](repeating: 0xFF, count: 3000)
            for name in ["0.tmp", "1.tmp", "create.tmp"] { try WALTest.write(garbage, to: "\(directory)/\(name)") }
            do {
                let (log, contents) = try WriteAheadLog.open(directory: directory, from: origin, options: WriteAheadLog.Options(segmentSize: 4096))
                #expect(contents.entries == WALTest.entries(1...3))
                // Only the pipeline's own freshly prepared file may exist now.
                let leftovers = WALTest.temporaryFiles(directory)
                #expect(!leftovers.contains("0.tmp") && !leftovers.contains("1.tmp") && !leftovers.contains("create.tmp"))
                #expect(leftovers.count <= 1)
                // Segments cut from the pipeline's files work.
                for index in UInt64(4)...70 { try log.save(entries: WALTest.entries(index...index)) }
            }
            #expect(WALTest.temporaryFiles(directory) == [])
            #expect(WALTest.segments(directory).count == 3)
            let contents = try WALTest.contents(directory, segmentSize: 4096)
            #expect(contents.entries == WALTest.entries(1...70))
        }
    }

    @Test func aCrashWhileCuttingLeavesAnEmptySegmentThatOpens() throws {
        try WALTest.withDirectory { directory in
            try WALTest.makeLog(directory, entries: WALTest.entries(1...40), segmentSize: 4096)
            let names = WALTest.segments(directory)
            #expect(names == ["0000000000000000-0000000000000000.wal", "0000000000000001-0000000000000021.wal"])
            guard names.count == 2 else { return }
            // cut() truncates the full segment, then renames the prepared (all-zero) file into place.
            let fullPath = "\(directory)/\(names[1])"
            let full = try WALTest.read(fullPath)
            let end = try WALTest.records(full, isLast: true).end
            #expect(end == 79 + 8 * 125)
            try WALTest.write(Array(full[..<end]), to: fullPath)
            let empty = "0000000000000002-0000000000000029.wal"
            try WALTest.write([UInt8](repeating: 0, count: 4096), to: "\(directory)/\(empty)")

            do {
                let (log, contents) = try WriteAheadLog.open(directory: directory, from: origin, options: WriteAheadLog.Options(segmentSize: 4096))
                #expect(contents.entries == WALTest.entries(1...40))
                #expect(log.lastIndex == 40)
                try log.save(entries: WALTest.entries(41...45))
            }
            #expect(WALTest.segments(directory) == names + [empty])
            // The empty segment got its header, continuing the CRC chain.
            let previous = try WALTest.records(Array(full[..<end]))
            let repaired = try WALTest.records(try WALTest.read("\(directory)/\(empty)"), isLast: true)
            #expect(repaired.records.first?.0 == .crc(previous.crc ?? 0))
            #expect(repaired.records.count == 3 + 5)
            let contents = try WALTest.contents(directory, segmentSize: 4096)
            #expect(contents.entries == WALTest.entries(1...45))
        }
    }

    /// etcd's `SaveSnapshot` raises the log's last index to the snapshot's; here a marker beyond
    /// the log leaves `lastIndex` behind, so the next entry (snapshot + 1) trips `save`'s
    /// precondition, and a reader from an older marker rejects it as not following.
    @Test
    func aSnapshotBeyondTheLogMovesItsEnd() throws {
        try WALTest.withDirectory { directory in
            let log = try WriteAheadLog.create(directory: directory, metadata: WALTest.metadata, options: options)
            try log.save(entries: WALTest.entries(1...3))
            try log.saveSnapshot(WALSnapshot(index: 10, term: 2))
            #expect(log.lastIndex == 10)
            guard log.lastIndex == 10 else { return }
            try log.save(entries: WALTest.entries(11...11, term: 2))
            let contents = try WALTest.contents(directory, from: WALSnapshot(index: 10, term: 2), segmentSize: Self.segmentSize)
            #expect(contents.entries == WALTest.entries(11...11, term: 2))
        }
    }

    /// `close()` closes the segment's descriptor, and `deinit` calls `close()` again: the second
    /// close hits whatever file has been given the same descriptor number since.
    @Test
    func closingTwiceDoesNotCloseAnotherFile() throws {
        try WALTest.withDirectory { directory in
            var log: WriteAheadLog? = try WriteAheadLog.create(directory: directory, metadata: WALTest.metadata, options: options)
            let segmentPath = "\(directory)/\(firstSegment)"
            // Find the log's descriptor number.
            let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
            let number = descriptors.compactMap(Int32.init).first { fd in
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) == segmentPath
            }
            #expect(number != nil)
            guard let number else { return }
            log?.close()
            // Take the freed number for a file of our own (if no other thread got it first).
            let other = open("\(directory)/other", O_CREAT | O_RDWR, 0o600)
            let mine = other == number ? other : fcntl(other, F_DUPFD, number)
            if other >= 0 && other != number { Glibc.close(other) }
            guard mine == number else {
                if mine >= 0 { Glibc.close(mine) }
                return
            }
            log = nil
            let stillOpen = fcntl(mine, F_GETFD) != -1
            #expect(stillOpen)
            if stillOpen { Glibc.close(mine) }
        }
    }
}
