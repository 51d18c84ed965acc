import Foundation
import Locking
import Synchronization

/// Starting and stopping child processes without the hang Foundation's `Process` can fall into.
///
/// Foundation learns that a child exited when a socket only that child should hold closes.
/// A child started on another thread at the same moment can inherit that socket; while the
/// sibling lives, the socket stays open, the exit goes unnoticed and `waitUntilExit()` spins
/// for ever (seen: a test stuck at 100% CPU with a zombie server that nobody reaped). Tests
/// start their processes one at a time through ``launch(_:)`` and stop them through
/// ``exit(of:within:)`` (or ``waitForExit(_:within:)``), which reap a child Foundation missed.
public enum ChildProcesses {
    private static let launches = Locked(())

    /// Runs `process`, never while another test is starting one.
    public static func launch(_ process: Process) throws {
        try launches.withLock { _ in try process.run() }
    }

    /// Waits until `process` has exited, for at most `limit`, and returns its exit status (or
    /// the signal that ended it); nil if it is still running. Blocks its thread: for `defer`
    /// and `deinit`, after a SIGKILL; tests wait with ``exit(of:within:)``.
    @discardableResult
    public static func waitForExit(_ process: Process, within limit: Duration = .seconds(120)) -> Int32? {
        let start = ContinuousClock.now
        while process.isRunning, ContinuousClock.now < start + limit {
            if let status = reapIfMissed(process, since: start) { return status }
            usleep(10_000)
        }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// ``waitForExit(_:within:)`` without holding a thread while it waits.
    @discardableResult
    public static func exit(of process: Process, within limit: Duration = .seconds(120)) async -> Int32? {
        let start = ContinuousClock.now
        while process.isRunning, ContinuousClock.now < start + limit {
            if let status = reapIfMissed(process, since: start) { return status }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// Foundation reaps its children itself; only one it has missed for a few seconds is ours
    /// to reap, and its status is read from `waitpid`.
    private static func reapIfMissed(_ process: Process, since start: ContinuousClock.Instant) -> Int32? {
        guard ContinuousClock.now > start + .seconds(5) else { return nil }
        var status: Int32 = 0
        guard waitpid(process.processIdentifier, &status, WNOHANG) == process.processIdentifier else { return nil }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : signal
    }
}
