import Dispatch
import Locking
import Synchronization
import SystemPackage

/// Keeps the next segment file ready: created and preallocated in the background, so cutting
/// to a new segment is a rename and never waits for the file system to find 64 MiB.
final class SegmentPipeline: Sendable {
    private let directory: String
    private let size: Int
    private let state = Locked(State())
    private let readySignal = DispatchSemaphore(value: 0)
    /// Distinguishes this pipeline's files from another's on the same directory.
    private let instance = String(UInt64.random(in: 0...UInt64.max), radix: 16)

    private struct State {
        var ready: Result<ReadyFile, WALError>?
        var counter = 0
        var closed = false
    }

    struct ReadyFile: Sendable {
        let path: String
        let descriptor: FileDescriptor
    }

    /// Temporary files end in this; any left by a crash are removed when the log opens.
    static let suffix = ".tmp"

    init(directory: String, size: Int) {
        self.directory = directory
        self.size = size
        prepareNext()
    }

    /// The next preallocated file, waiting for it if the background work has not finished.
    func take() throws(WALError) -> ReadyFile {
        readySignal.wait()
        let taken = state.withLock { state in
            defer { state.ready = nil }
            return state.ready!
        }
        prepareNext()
        return try taken.get()
    }

    /// Removes the file prepared but never taken.
    func close() {
        readySignal.wait()
        let leftover = state.withLock { state in
            state.closed = true
            return state.ready
        }
        if case .success(let file)? = leftover {
            FileSystem.close(file.descriptor)
            try? FileSystem.remove(file.path)
        }
    }

    private func prepareNext() {
        let counter = state.withLock { state in
            defer { state.counter += 1 }
            return state.counter
        }
        let path = "\(directory)/\(instance)-\(counter % 2)\(Self.suffix)"
        DispatchQueue.global(qos: .utility).async { [self] in
            let result = Result { () throws(WALError) -> ReadyFile in
                try? FileSystem.remove(path)
                let descriptor = try FileSystem.openForWriting(path, create: true)
                do throws(WALError) {
                    try FileSystem.preallocate(descriptor, path, size: size)
                } catch {
                    FileSystem.close(descriptor)
                    throw error
                }
                return ReadyFile(path: path, descriptor: descriptor)
            }
            state.withLock { $0.ready = result }
            readySignal.signal()
        }
    }
}
