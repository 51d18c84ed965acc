import Dispatch
import Synchronization

/// A value computed on another thread while the caller goes on with other work, then waits
/// for it: at start the key index is rebuilt from the backend while the log is read.
final class BackgroundResult<Value: Sendable>: Sendable {
    private let finished = DispatchSemaphore(value: 0)
    private let result = Mutex<Result<Value, any Error>?>(nil)

    init(_ work: @escaping @Sendable () throws -> Value) {
        DispatchQueue.global().async { [self] in
            let outcome = Result { try work() }
            result.withLock { $0 = outcome }
            finished.signal()
        }
    }

    /// The value, or the error the work threw; blocks until the work has finished. Call once.
    func wait() throws -> Value {
        finished.wait()
        return try result.withLock { $0! }.get()
    }
}
