import Dispatch
import EtcdServer
import Foundation
import Synchronization
import TestSupport
import Testing

@Suite struct DataDirectoryLockTests {
    private func withDirectory(_ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("data-dir-lock-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try body(directory)
    }

    private func permissions(_ path: String) throws -> Int? {
        try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
    }

    @Test func newDirectoriesArePrivate() throws {
        try withDirectory { directory in
            let wal = directory + "/elsewhere/wal"
            let lock = try DataDirectoryLock.acquire(dataDirectory: directory + "/data", walDirectory: wal, logger: RecordingLog().logger)
            defer { lock.release() }
            for path in ["/data", "/data/member", "/data/member/snap", "/elsewhere/wal"] {
                #expect(try permissions(directory + path) == 0o700, "\(path)")
            }
        }
    }

    /// A data directory the user made open to others is only warned about (etcd's words); the
    /// member's own directories, which earlier versions made 0755, are made private again.
    @Test func anOpenDataDirectoryIsWarnedAboutAndTheMembersOwnAreClosed() throws {
        try withDirectory { directory in
            for path in ["", "/member", "/member/snap", "/member/wal"] {
                try FileManager.default.createDirectory(
                    atPath: directory + path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            }
            let log = RecordingLog()
            let lock = try DataDirectoryLock.acquire(dataDirectory: directory, walDirectory: directory + "/member/wal", logger: log.logger)
            defer { lock.release() }
            #expect(try permissions(directory) == 0o755)
            for path in ["/member", "/member/snap", "/member/wal"] {
                #expect(try permissions(directory + path) == 0o700, "\(path)")
            }
            #expect(log.entries == [
                "check file permission error=directory \"\(directory)\" exist, but the permission is \"drwxr-xr-x\". The recommended permission is \"-rwx------\" to prevent possible unprivileged access to the data.",
            ])
        }
    }

    /// Held, the directory refuses an offline tool and makes a second holder wait; released,
    /// the waiting holder gets it. A log directory elsewhere is locked too.
    @Test func aHeldDirectoryRefusesToolsAndKeepsASecondHolderWaiting() throws {
        try withDirectory { directory in
            let data = directory + "/data"
            let wal = directory + "/wal"
            let first = try DataDirectoryLock.acquire(dataDirectory: data, walDirectory: wal, logger: RecordingLog().logger)
            #expect(try DataDirectoryLock.acquireIfFree(dataDirectory: data) == nil)
            #expect(try DataDirectoryLock.acquireIfFree(dataDirectory: wal) == nil)

            let log = RecordingLog()
            let acquired = DispatchSemaphore(value: 0)
            let second = Mutex<DataDirectoryLock?>(nil)
            Thread.detachNewThread {
                let lock = try? DataDirectoryLock.acquire(dataDirectory: data, walDirectory: wal, logger: log.logger)
                second.withLock { $0 = lock }
                acquired.signal()
            }
            // The waiting holder says so before it blocks; it must not get the lock meanwhile.
            for _ in 0..<600 where log.entries.isEmpty { Thread.sleep(forTimeInterval: 0.05) }
            #expect(log.entries == ["another etcd process is using the data directory and holds its lock; waiting for it to exit before starting path=\(data)"])
            #expect(acquired.wait(timeout: .now() + .milliseconds(200)) == .timedOut)

            first.release()
            #expect(acquired.wait(timeout: .now() + .seconds(30)) == .success)
            let held = try #require(second.withLock { $0 })
            #expect(try DataDirectoryLock.acquireIfFree(dataDirectory: data) == nil)
            held.release()
            let tool = try #require(try DataDirectoryLock.acquireIfFree(dataDirectory: data))
            tool.release()
        }
    }
}
