import Dispatch
import Foundation
import Synchronization

/// A value computed on a thread of its own while the caller goes on with other work, then
/// waits for it: at start the key index is rebuilt while the log is read, and the rebuild
/// reads and sorts half of the backend on a second thread.
///
/// A thread of its own, not a dispatch queue's: `DispatchQueue.concurrentPerform`, called
/// from a dispatch queue's thread, ran its iterations one after the other on a 2-core machine.
public final class BackgroundResult<Value: Sendable>: Sendable {
    private let finished = DispatchSemaphore(value: 0)
    private let result = Locked<Result<Value, any Error>?>(nil)

    /// Starts `work` on a new thread.
    public init(_ work: @escaping @Sendable () throws -> Value) {
        Thread.detachNewThread { [self] in
            let outcome = Result { try work() }
            result.withLock { $0 = outcome }
            finished.signal()
        }
    }

    /// The value, or the error the work threw; blocks until the work has finished. Call once.
    public func wait() throws -> Value {
        finished.wait()
        return try result.withLock { $0.take()! }.get()
    }
}
