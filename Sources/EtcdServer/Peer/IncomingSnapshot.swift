import Foundation
import Locking
import Logging
import NIOCore
import NIOPosix
import Raft
import Synchronization

/// A backend file arriving from the leader: written in order on its own queue (never on the
/// event loop), synced when complete, removed when abandoned.
final class IncomingSnapshot: Sendable {
    private let message: Message
    private let path: String
    private let file: FileHandle
    private let queue = DispatchQueue(label: "swift-etcd snapshot receiver")
    private let written = Locked<(bytes: UInt64, error: (any Error)?)>((0, nil))

    init(message: Message, path: String) throws {
        self.message = message
        self.path = path
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        guard FileManager.default.createFile(atPath: path, contents: nil), let file = FileHandle(forWritingAtPath: path) else {
            throw PeerWire.DecodingError(description: "cannot create \(path)")
        }
        self.file = file
    }

    func append(_ bytes: ByteBuffer) {
        queue.async { [self] in
            do {
                try file.write(contentsOf: Data(bytes.readableBytesView))
                written.withLock { $0.bytes += UInt64(bytes.readableBytes) }
            } catch {
                written.withLock { $0.error = error }
            }
        }
    }

    /// Once every chunk is written: syncs and closes the file, checks its length, and hands
    /// over the snapshot message whose data is the file's path.
    func finish(expectedBytes: UInt64, then deliver: @escaping @Sendable (Result<Message, any Error>) -> Void) {
        queue.async { [self] in
            do {
                let (bytes, error) = written.withLock { $0 }
                if let error { throw error }
                guard bytes == expectedBytes else {
                    throw PeerWire.DecodingError(description: "snapshot has \(bytes) bytes, the leader sent \(expectedBytes)")
                }
                try file.synchronize()
                try file.close()
                var complete = message
                complete.snapshot!.data = Array(path.utf8)
                deliver(.success(complete))
            } catch {
                try? file.close()
                try? FileManager.default.removeItem(atPath: path)
                deliver(.failure(error))
            }
        }
    }

    func abandon() {
        let (file, path) = (file, path)
        queue.async {
            try? file.close()
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}
