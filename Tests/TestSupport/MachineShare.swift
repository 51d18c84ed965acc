import Foundation
import Locking
import Synchronization
import Testing

/// A test trait saying how much of the machine a test takes while it runs: server processes,
/// members in this process, or long CPU-bound work.
///
/// Swift Testing starts every test at once. On the two cores CI has, a hundred members
/// started together left each of them (and the test process's own two cooperative threads)
/// seconds behind: leases expired under clients that had sent their keep-alives, deadlines of
/// a few seconds passed, and the run took three times as long as its tests' sum suggests. A
/// test case with this trait first takes its weight out of a fixed capacity (waiting, without
/// holding a thread, in arrival order) and gives it back when it ends. Tests without the trait
/// (pure computation, in-process channels) run as before.
///
/// Each test case under the trait also gets a time limit: one still running after
/// ``timeLimit`` is reported by name and cancelled, so a test that waits for ever fails the
/// run instead of holding it until CI's own limit ends it unexplained.
public struct MachineShare: TestTrait, SuiteTrait, TestScoping {
    /// How many units of `capacity` one of its test cases takes.
    public let weight: Int

    /// Units shared by all test cases with the trait: one unit is about one server process.
    /// `SWIFT_ETCD_TEST_CAPACITY` sets another (a larger machine, or 1 to run them one by one).
    public static let capacity = ProcessInfo.processInfo.environment["SWIFT_ETCD_TEST_CAPACITY"].flatMap(Int.init) ?? 8

    /// The longest a test case under the trait may run once it has its share.
    public static let timeLimit = Duration.seconds(600)

    private static let machine = Capacity(capacity)

    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        // Each test case (every argument of a parameterized test) takes its own share.
        testCase == nil ? nil : self
    }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let weight = min(weight, Self.capacity)
        await Self.machine.take(weight)
        defer { Self.machine.give(weight) }
        try await withoutActuallyEscaping(function) { function in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await function()
                    return true
                }
                group.addTask {
                    try await Task.sleep(for: Self.timeLimit)
                    return false
                }
                guard let finished = try await group.next(), !finished else {
                    group.cancelAll()
                    return
                }
                Issue.record("\(test.name) was still running after \(Self.timeLimit): cancelled")
                group.cancelAll()
                // The test ends when it notices the cancellation.
                while try await group.next() != nil {}
            }
        }
    }
}

extension Trait where Self == MachineShare {
    /// A test that runs a cluster of member processes (three, sometimes five).
    public static var cluster: Self { MachineShare(weight: 3) }

    /// A test that runs one server process or one member in this process at a time.
    public static var server: Self { MachineShare(weight: 1) }

    /// A test that keeps a core busy for many seconds (model checks, simulations).
    public static var cpuBound: Self { MachineShare(weight: 2) }
}

/// Units handed out first come, first served; a waiter holds no thread.
private final class Capacity: Sendable {
    private struct State {
        var free: Int
        var waiting: [(weight: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let state: Locked<State>

    init(_ units: Int) { state = Locked(State(free: units)) }

    func take(_ weight: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { state in
                guard state.waiting.isEmpty, state.free >= weight else {
                    state.waiting.append((weight, continuation))
                    return false
                }
                state.free -= weight
                return true
            }
            if granted { continuation.resume() }
        }
    }

    func give(_ weight: Int) {
        let resumed = state.withLock { state in
            state.free += weight
            var resumed: [CheckedContinuation<Void, Never>] = []
            while let first = state.waiting.first, first.weight <= state.free {
                state.free -= first.weight
                resumed.append(state.waiting.removeFirst().continuation)
            }
            return resumed
        }
        for continuation in resumed { continuation.resume() }
    }
}
