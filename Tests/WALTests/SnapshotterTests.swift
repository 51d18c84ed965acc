import Foundation
import Testing

@testable import WAL

@Suite("Snapshotter")
struct SnapshotterTests {
    private let oldest = SnapshotFile(index: 5, term: 1, confState: [1, 2, 3])
    private let middle = SnapshotFile(index: 12, term: 2, confState: [])
    private let newest = SnapshotFile(index: 20, term: 2, confState: Array(repeating: 0xAB, count: 40))
    private let oldestName = "0000000000000001-0000000000000005.snap"
    private let middleName = "0000000000000002-000000000000000c.snap"
    private let newestName = "0000000000000002-0000000000000014.snap"

    private func saveAll(_ directory: String) throws {
        // Saved out of order: loading sorts them.
        for snapshot in [middle, newest, oldest] { try Snapshotter.save(snapshot, directory: directory) }
    }

    @Test func snapshotsLoadNewestFirst() throws {
        try WALTest.withDirectory { root in
            let directory = "\(root)/member/snap"
            try saveAll(directory)
            #expect(WALTest.files(directory, suffix: "") == [oldestName, middleName, newestName])
            let sizes = try [oldestName, middleName, newestName].map { try WALTest.size("\(directory)/\($0)") }
            #expect(sizes == [4 + 16 + 3, 4 + 16, 4 + 16 + 40])
            var broken: [String] = []
            let loaded = try Snapshotter.loadAll(directory: directory) { name, _ in broken.append(name) }
            #expect(loaded == [newest, middle, oldest])
            #expect(loaded.map(\.marker) == [WALSnapshot(index: 20, term: 2), WALSnapshot(index: 12, term: 2), WALSnapshot(index: 5, term: 1)])
            #expect(broken == [])
            // Saving the same snapshot again replaces the file.
            try Snapshotter.save(newest, directory: directory)
            let reloaded = try Snapshotter.loadAll(directory: directory)
            #expect(reloaded == [newest, middle, oldest])
        }
    }

    @Test func anEmptyOrMissingDirectoryHasNoSnapshots() throws {
        try WALTest.withDirectory { root in
            let directory = "\(root)/snap"
            let loaded = try Snapshotter.loadAll(directory: directory)
            #expect(loaded == [])
            #expect(FileManager.default.fileExists(atPath: directory))
        }
    }

    @Test func aCorruptSnapshotIsRenamedBrokenAndSkipped() throws {
        try WALTest.withDirectory { directory in
            try saveAll(directory)
            var bytes = try WALTest.read("\(directory)/\(newestName)")
            bytes[30] ^= 0x01
            try WALTest.write(bytes, to: "\(directory)/\(newestName)")

            var broken: [(String, WALError)] = []
            let loaded = try Snapshotter.loadAll(directory: directory) { name, error in broken.append((name, error)) }
            #expect(loaded == [middle, oldest])
            #expect(broken.map(\.0) == [newestName])
            #expect(broken.map(\.1) == [.corrupt(file: newestName, offset: 0, reason: "snapshot CRC mismatch")])
            #expect(WALTest.files(directory, suffix: "") == [oldestName, middleName, newestName + ".broken"])
            let kept = try WALTest.read("\(directory)/\(newestName).broken")
            #expect(kept == bytes)

            // Loading again does not see the broken file any more.
            var brokenAgain: [String] = []
            let again = try Snapshotter.loadAll(directory: directory) { name, _ in brokenAgain.append(name) }
            #expect(again == [middle, oldest])
            #expect(brokenAgain == [])
        }
    }

    @Test func aShortSnapshotFileIsBroken() throws {
        try WALTest.withDirectory { directory in
            try saveAll(directory)
            let truncated = Array(try WALTest.read("\(directory)/\(middleName)").prefix(19))
            try WALTest.write(truncated, to: "\(directory)/\(middleName)")
            var broken: [WALError] = []
            let loaded = try Snapshotter.loadAll(directory: directory) { _, error in broken.append(error) }
            #expect(loaded == [newest, oldest])
            #expect(broken == [.corrupt(file: middleName, offset: 0, reason: "short snapshot file")])
            #expect(WALTest.files(directory, suffix: ".broken") == [middleName + ".broken"])
        }
    }

    @Test func leftoverTemporaryFilesAreRemovedOnLoad() throws {
        try WALTest.withDirectory { directory in
            try saveAll(directory)
            // A crash while saving a newer snapshot.
            let leftover = "0000000000000003-0000000000000030.snap.tmp"
            try WALTest.write([1, 2, 3], to: "\(directory)/\(leftover)")
            let loaded = try Snapshotter.loadAll(directory: directory)
            #expect(loaded == [newest, middle, oldest])
            #expect(WALTest.temporaryFiles(directory) == [])
            #expect(WALTest.files(directory, suffix: "") == [oldestName, middleName, newestName])
        }
    }

    @Test func purgeKeepsTheNewestFiles() throws {
        try WALTest.withDirectory { directory in
            try saveAll(directory)
            let keepAll = try Snapshotter.purge(directory: directory, keep: 0)
            #expect(keepAll == [])
            let enough = try Snapshotter.purge(directory: directory, keep: 3)
            #expect(enough == [])
            #expect(WALTest.files(directory, suffix: ".snap") == [oldestName, middleName, newestName])

            let removed = try Snapshotter.purge(directory: directory, keep: 2)
            #expect(removed == [oldestName])
            let loaded = try Snapshotter.loadAll(directory: directory)
            #expect(loaded == [newest, middle])

            let toOne = try Snapshotter.purge(directory: directory, keep: 1)
            #expect(toOne == [middleName])
            #expect(WALTest.files(directory, suffix: ".snap") == [newestName])
            let last = try Snapshotter.loadAll(directory: directory)
            #expect(last == [newest])
        }
    }
}
