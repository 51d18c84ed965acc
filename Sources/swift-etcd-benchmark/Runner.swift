import EtcdClient
import Foundation
import Locking
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs `total` requests from `clients` concurrent workers over `connections` (each an
/// `EtcdClient` pinned to one endpoint, round-robin over the endpoints, like etcd's benchmark),
/// paced to `rate` requests per second when it is not 0, and times each one.
struct Runner: Sendable {
    let connections: [EtcdClient]
    let clients: Int

    init(endpoints: [String], tls: EtcdClient.TLSOptions?, credentials: EtcdCredentials?, connections: Int, clients: Int) throws {
        self.connections = try (0..<max(connections, 1)).map { n in
            // No deadlines, as etcd's benchmark: a deadline costs each call a timer on both sides.
            try EtcdClient(endpoints: [endpoints[n % endpoints.count]], tls: tls, credentials: credentials, requestTimeout: nil)
        }
        self.clients = max(clients, 1)
    }

    func close() async {
        for connection in connections { await connection.close() }
    }

    /// Runs the requests; `operation` gets the worker's connection and the request number, and
    /// returns the name of the report its latency belongs to (for mixed workloads).
    func run(
        total: Int, rate: Int = 0, names: [String],
        _ operation: @escaping @Sendable (EtcdClient, Int) async throws -> String
    ) async -> [Report] {
        // Open every connection before timing, so no request pays for connection setup.
        for connection in connections { _ = try? await connection.status() }
        let next = Counter()
        let progress = Progress(total: total)
        let start = ContinuousClock.now
        let workers = await withTaskGroup(of: [String: Report].self) { group in
            for worker in 0..<clients {
                let connection = connections[worker % connections.count]
                group.addTask {
                    var reports: [String: Report] = [:]
                    for name in names { reports[name] = Report(name: name) }
                    while true {
                        let n = next.next()
                        guard n < total else { break }
                        if rate > 0 {
                            // Request n may start no earlier than n / rate seconds in.
                            let due = start + .nanoseconds(Int64(Double(n) / Double(rate) * 1e9))
                            if due > .now { try? await Task.sleep(until: due, clock: .continuous) }
                        }
                        let began = ContinuousClock.now
                        do {
                            let name = try await operation(connection, n)
                            reports[name]?.record(seconds: Self.seconds(ContinuousClock.now - began))
                        } catch {
                            reports[names[0]]?.record(error: "\(error)")
                        }
                        progress.increment()
                    }
                    return reports
                }
            }
            var all: [[String: Report]] = []
            for await reports in group { all.append(reports) }
            return all
        }
        progress.finish()
        let elapsed = Self.seconds(ContinuousClock.now - start)
        return names.map { name in
            var merged = Report(name: name)
            for reports in workers { if let report = reports[name] { merged.merge(report) } }
            merged.elapsed = elapsed
            return merged
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// A shared counter that tasks can capture (an `Atomic` itself cannot be captured).
final class Counter: Sendable {
    private let value = Atomic<Int>(0)

    /// Returns the current value and increments it.
    func next() -> Int { value.wrappingAdd(1, ordering: .relaxed).oldValue }

    func add(_ count: Int) { value.add(count, ordering: .relaxed) }

    var current: Int { value.load(ordering: .relaxed) }
}

/// A value shared by tasks behind a lock (a class, so tasks can capture it; `Locked` itself cannot be).
final class SharedLocked<Value: Sendable>: Sendable {
    private let mutex: Locked<Value>

    init(_ value: Value) { mutex = Locked(value) }

    func withLock<R: Sendable>(_ body: (inout sending Value) -> sending R) -> R { mutex.withLock(body) }
}

/// A progress bar on standard error, drawn only when it is a terminal.
final class Progress: Sendable {
    private let total: Int
    private let done = Atomic<Int>(0)
    private let lastDrawn = Atomic<Int>(0)
    private let enabled = isatty(STDERR_FILENO) == 1

    init(total: Int) { self.total = total }

    func increment() {
        let count = done.wrappingAdd(1, ordering: .relaxed).newValue
        guard enabled else { return }
        // Redraw at most every 1 % of the run.
        let step = max(total / 100, 1)
        if count % step == 0 || count == total {
            lastDrawn.store(count, ordering: .relaxed)
            draw(count)
        }
    }

    func finish() {
        guard enabled else { return }
        draw(done.load(ordering: .relaxed))
        FileHandle.standardError.write(Data("\n".utf8))
    }

    private func draw(_ count: Int) {
        let width = 40
        let filled = total > 0 ? count * width / total : width
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        let percent = total > 0 ? Double(count) * 100 / Double(total) : 100
        FileHandle.standardError.write(Data("\r \(count) / \(total) [\(bar)] \(String(format: "%6.2f", percent))%".utf8))
    }
}
