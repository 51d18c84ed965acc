import Synchronization

#if SANITIZE_THREAD
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value guarded by a lock: what every concurrent part of swift-etcd shares between threads.
///
/// Normal builds use the standard library's `Mutex` as it is. ThreadSanitizer cannot see that
/// `Mutex` lock on Linux (it locks with atomics and a futex inside the uninstrumented standard
/// library), so it reports every guarded access as a race; builds made with
/// `-DSANITIZE_THREAD` (`scripts/sanitize.sh thread`) use this `pthread_mutex_t` lock instead,
/// which ThreadSanitizer intercepts. Same interface, so call sites do not change.
public struct Locked<Value: ~Copyable>: ~Copyable {
    private let storage: Storage

    /// A lock guarding `initialValue`.
    public init(_ initialValue: consuming sending Value) {
        storage = Storage(initialValue)
    }

    /// Runs `body` with the value while holding the lock.
    public borrowing func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        pthread_mutex_lock(storage.mutex)
        defer { pthread_mutex_unlock(storage.mutex) }
        return try storage.withValue(body)
    }

    /// The lock and the value it guards, kept at one fixed address as `pthread_mutex_t` needs.
    private final class Storage {
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        nonisolated(unsafe) private var value: Value

        init(_ value: consuming sending Value) {
            self.value = value
            pthread_mutex_init(mutex, nil)
        }

        /// Only called with `mutex` held.
        func withValue<Result: ~Copyable, E: Error>(
            _ body: (inout sending Value) throws(E) -> sending Result
        ) throws(E) -> sending Result {
            try body(&value)
        }

        deinit {
            pthread_mutex_destroy(mutex)
            mutex.deallocate()
        }
    }
}

/// Safe: the value is only reached through `withLock`, which holds the mutex for the whole
/// access, exactly as `Synchronization.Mutex` is `Sendable` for the same reason.
extension Locked: @unchecked Sendable where Value: ~Copyable {}
#else
/// A value guarded by a lock: what every concurrent part of swift-etcd shares between threads.
///
/// This is the standard library's `Mutex`. Builds made for ThreadSanitizer (`-DSANITIZE_THREAD`,
/// `scripts/sanitize.sh thread`) replace it with a `pthread_mutex_t` lock of the same interface,
/// because ThreadSanitizer cannot see `Mutex` lock on Linux and reports every guarded access.
public typealias Locked<Value: ~Copyable> = Mutex<Value>
#endif
