// wal-bench: write-ahead log append throughput, next to the disk's physical floor.
//
// For batch sizes 1, 16 and 256 entries of 256 bytes, saves batches (one fdatasync each) for
// `--seconds` each and reports records/s and MB/s; then the floor: a plain loop of 4 KiB writes
// each followed by fdatasync, on the same directory. Not a test: figures depend on the disk.
//
//   swift run -c release wal-bench [--dir DIR] [--seconds S]

import Foundation
import WAL

#if canImport(Glibc)
import Glibc
#endif

var directory = FileManager.default.currentDirectoryPath + "/wal-bench.tmp"
var seconds = 3.0
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let flag = arguments.next() {
    guard let value = arguments.next() else { fatalError("usage: wal-bench [--dir DIR] [--seconds S]") }
    switch flag {
    case "--dir": directory = value
    case "--seconds": seconds = Double(value) ?? seconds
    default: fatalError("wal-bench: unknown flag \(flag)")
    }
}

func report(_ label: String, records: Int, bytes: Int, elapsed: Duration) {
    let time = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let perSecond = Int(Double(records) / time)
    let megabytes = (Double(bytes) / time / 1e6 * 10).rounded() / 10
    print("\(label): \(perSecond) records/s, \(megabytes) MB/s")
    print("RESULT op=\(label.replacingOccurrences(of: " ", with: "_")) records_per_s=\(perSecond) mb_per_s=\(megabytes)")
}

let payload = [UInt8](repeating: 0x5A, count: 256)
for batchSize in [1, 16, 256] {
    try? FileManager.default.removeItem(atPath: directory)
    let log = try WriteAheadLog.create(directory: directory, metadata: WALMetadata(memberID: 1, clusterID: 1))
    var index: UInt64 = 0
    var records = 0
    let start = ContinuousClock.now
    let end = start + .milliseconds(Int64(seconds * 1000))
    while ContinuousClock.now < end {
        let batch = (0..<batchSize).map { offset in LogEntry(index: index + 1 + UInt64(offset), term: 1, data: payload) }
        index += UInt64(batchSize)
        try log.save(hardState: WALHardState(term: 1, vote: 1, commit: index), entries: batch)
        records += batchSize
    }
    report("wal batch \(batchSize)", records: records, bytes: records * payload.count, elapsed: ContinuousClock.now - start)
    log.close()
}

// The floor: what one synced 4 KiB write costs on this disk.
try? FileManager.default.removeItem(atPath: directory)
try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
let path = directory + "/floor"
let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
precondition(descriptor >= 0, "cannot create \(path)")
let block = [UInt8](repeating: 0xA5, count: 4096)
var writes = 0
let start = ContinuousClock.now
let end = start + .milliseconds(Int64(seconds * 1000))
while ContinuousClock.now < end {
    let written = block.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, 4096, off_t(writes % 1024) * 4096) }
    precondition(written == 4096 && fdatasync(descriptor) == 0, "write or fdatasync failed: errno \(errno)")
    writes += 1
}
report("fdatasync floor 4KiB", records: writes, bytes: writes * 4096, elapsed: ContinuousClock.now - start)
close(descriptor)
try? FileManager.default.removeItem(atPath: directory)
