import Foundation
import Testing

@testable import WAL

@Suite("Write-ahead log purge")
struct WALPurgeTests {
    private static let segmentSize = 4096
    private let options = WriteAheadLog.Options(segmentSize: WALPurgeTests.segmentSize)
    private let snapshot = WALSnapshot(index: 110, term: 1)
    /// Segments of 32, 33, 33, 33 and 19 entries (see `makeLog`).
    private let names = [
        "0000000000000000-0000000000000000.wal",
        "0000000000000001-0000000000000021.wal",
        "0000000000000002-0000000000000042.wal",
        "0000000000000003-0000000000000063.wal",
        "0000000000000004-0000000000000084.wal",
    ]
    private let hardState = WALHardState(term: 1, vote: 5, commit: 0)

    /// The hard state is saved once, in the first segment; later segments repeat it in their
    /// headers. Entries 1...150, then the marker of a snapshot at 110 (whose reader starts in
    /// segment 3, first index 99).
    private func makeLog(_ directory: String) throws -> WriteAheadLog.Contents {
        do {
            let log = try WriteAheadLog.create(directory: directory, metadata: WALTest.metadata, options: options)
            try log.save(hardState: hardState, entries: [])
            for entry in WALTest.entries(1...150) { try log.save(entries: [entry]) }
            try log.saveSnapshot(snapshot)
        }
        #expect(WALTest.segments(directory) == names)
        let contents = try WALTest.contents(directory, from: snapshot, segmentSize: Self.segmentSize)
        #expect(contents == WriteAheadLog.Contents(metadata: WALTest.metadata, hardState: hardState, entries: WALTest.entries(111...150)))
        return contents
    }

    @Test func purgeRemovesOnlyWholeSegmentsBeforeTheSnapshotsDownToMaxFiles() throws {
        try WALTest.withDirectory { directory in
            let before = try makeLog(directory)

            let keepAll = try WriteAheadLog.purge(directory: directory, snapshotIndex: snapshot.index, maxFiles: 0)
            #expect(keepAll == [])
            let underLimit = try WriteAheadLog.purge(directory: directory, snapshotIndex: snapshot.index, maxFiles: 5)
            #expect(underLimit == [])
            #expect(WALTest.segments(directory) == names)

            let oneOver = try WriteAheadLog.purge(directory: directory, snapshotIndex: snapshot.index, maxFiles: 4)
            #expect(oneOver == [names[0]])
            #expect(WALTest.segments(directory) == Array(names[1...]))

            // Segment 3 holds what a reader from the snapshot needs: it stays although one file is asked for.
            let asFewAsPossible = try WriteAheadLog.purge(directory: directory, snapshotIndex: snapshot.index, maxFiles: 1)
            #expect(asFewAsPossible == [names[1], names[2]])
            #expect(WALTest.segments(directory) == [names[3], names[4]])
            let again = try WriteAheadLog.purge(directory: directory, snapshotIndex: snapshot.index, maxFiles: 1)
            #expect(again == [])

            let after = try WALTest.contents(directory, from: snapshot, segmentSize: Self.segmentSize)
            #expect(after == before)
            #expect(after.hardState == hardState)
            WALTest.expect(.snapshotNotFound(WALSnapshot(index: 0, term: 0))) {
                _ = try WriteAheadLog.open(directory: directory, from: WALSnapshot(index: 0, term: 0), options: options)
            }
        }
    }

    @Test func purgeKeepsTheSegmentAReaderStartsFrom() throws {
        try WALTest.withDirectory { directory in
            _ = try makeLog(directory)
            // A snapshot at 98 is read from segment 2 (first index 66): only 0 and 1 go.
            let atBoundary = try WriteAheadLog.purge(directory: directory, snapshotIndex: 98, maxFiles: 1)
            #expect(atBoundary == [names[0], names[1]])
            // One at 99, the first index of segment 3, is read from there: segment 2 goes too.
            let next = try WriteAheadLog.purge(directory: directory, snapshotIndex: 99, maxFiles: 1)
            #expect(next == [names[2]])
            // A snapshot before every remaining segment removes nothing.
            let early = try WriteAheadLog.purge(directory: directory, snapshotIndex: 20, maxFiles: 1)
            #expect(early == [])
            #expect(WALTest.segments(directory) == [names[3], names[4]])
            let contents = try WALTest.contents(directory, from: snapshot, segmentSize: Self.segmentSize)
            #expect(contents.entries == WALTest.entries(111...150))
        }
    }

    @Test func aCrashInTheMiddleOfAPurgeStillOpens() throws {
        try WALTest.withDirectory { directory in
            let before = try makeLog(directory)
            // A purge removing segments 0...2 got as far as the oldest.
            try FileManager.default.removeItem(atPath: "\(directory)/\(names[0])")
            let afterCrash = try WALTest.contents(directory, from: snapshot, segmentSize: Self.segmentSize)
            #expect(afterCrash == before)
            // The next purge finishes the job.
            let removed = try WriteAheadLog.purge(directory: directory, snapshotIndex: snapshot.index, maxFiles: 1)
            #expect(removed == [names[1], names[2]])
            let after = try WALTest.contents(directory, from: snapshot, segmentSize: Self.segmentSize)
            #expect(after == before)
        }
    }

    @Test func purgeWhileTheLogIsAppendedTo() throws {
        try WALTest.withDirectory { directory in
            _ = try makeLog(directory)
            do {
                let (log, contents) = try WriteAheadLog.open(directory: directory, from: snapshot, options: options)
                #expect(contents.entries == WALTest.entries(111...150))
                try log.save(entries: WALTest.entries(151...160))
                let removed = try WriteAheadLog.purge(directory: directory, snapshotIndex: snapshot.index, maxFiles: 2)
                #expect(removed == [names[0], names[1], names[2]])
                for entry in WALTest.entries(161...200) { try log.save(entries: [entry]) }
                #expect(log.lastIndex == 200)
            }
            let segments = WALTest.segments(directory)
            // Entry 163 filled segment 4, entry 196 segment 5.
            #expect(segments == [names[3], names[4], "0000000000000005-00000000000000a4.wal", "0000000000000006-00000000000000c5.wal"])
            let contents = try WALTest.contents(directory, from: snapshot, segmentSize: Self.segmentSize)
            #expect(contents.entries == WALTest.entries(111...200))
            #expect(contents.hardState == hardState)
        }
    }
}
