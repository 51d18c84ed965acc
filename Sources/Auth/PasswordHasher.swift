import Dispatch
import Foundation
import HummingbirdBcrypt
import Locking
import Synchronization

/// Hashes and checks passwords with bcrypt, on a pool of its own: a bcrypt at cost 10 takes tens
/// of milliseconds, so it never runs on an event loop or on the member's loop. The pool has one
/// thread fewer than the machine has cores (at least one), so a burst of logins leaves a core to
/// every other client; at most `maximumWaiting` jobs wait, and more are refused at once rather
/// than queued without bound (a flood of wrong passwords cannot grow memory or delay the logins
/// behind it for long).
package final class PasswordHasher: Sendable {
    /// etcd's `--bcrypt-cost` range and default.
    package static let costs = 4...31
    package static let defaultCost = 10

    package let cost: Int
    private let queues: [DispatchQueue]
    private let maximumWaiting: Int
    /// Jobs queued or running, and the round-robin position.
    private let load = Locked((waiting: 0, next: 0))

    package init(cost: Int, threads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount - 1), maximumWaiting: Int = 1024) {
        self.cost = cost
        queues = (0..<max(1, threads)).map { DispatchQueue(label: "swift-etcd bcrypt \($0)", qos: .utility) }
        self.maximumWaiting = maximumWaiting
    }

    /// Hashes `password`; nil when the pool is full.
    package func hash(_ password: String, completion: @escaping @Sendable (String?) -> Void) {
        let cost = UInt8(cost)
        run(completion) { Bcrypt.hash(password, cost: cost) }
    }

    /// Whether `password` matches `hash`; nil when the pool is full.
    package func verify(_ password: String, hash: String, completion: @escaping @Sendable (Bool?) -> Void) {
        run(completion) { Bcrypt.verify(password, hash: hash) }
    }

    private func run<Value: Sendable>(_ completion: @escaping @Sendable (Value?) -> Void, _ work: @escaping @Sendable () -> Value) {
        let queue: DispatchQueue? = load.withLock { load in
            guard load.waiting < maximumWaiting else { return nil }
            load.waiting += 1
            load.next = (load.next + 1) % queues.count
            return queues[load.next]
        }
        guard let queue else { return completion(nil) }
        queue.async {
            let value = work()
            self.load.withLock { $0.waiting -= 1 }
            completion(value)
        }
    }
}
