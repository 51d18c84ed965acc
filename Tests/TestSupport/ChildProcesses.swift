import Foundation
import Synchronization

/// Starting and stopping child processes without the hang Foundation's `Process` can fall into.
///
/// Foundation learns that a child exited when a socket only that child should hold closes.
/// A child started on another thread at the same moment can inherit that socket; while the
/// sibling lives, the socket stays open, the exit goes unnoticed and `waitUntilExit()` spins
/// for ever (seen: a test stuck at 100% CPU with a zombie server that nobody reaped). Tests
/// start their processes one at a time through ``launch(_:)`` and stop them through
/// ``waitForExit(_:within:)``, which reaps a child Foundation missed.
public enum ChildProcesses {
    private static let launches = Mutex(())

    /// Runs `process`, never while another test is starting one.
    public static func launch(_ process: Process) throws {
        try launches.withLock { _ in try process.run() }
    }

    /// Waits until `process` has exited, for at most `limit`, and returns its exit status (or
    /// the signal that ended it); nil if it is still running. A child that Foundation has not
    /// seen exit within a few seconds is reaped here, and its status read from `waitpid`.
    @discardableResult
    public static func waitForExit(_ process: Process, within limit: Duration = .seconds(120)) -> Int32? {
        let pid = process.processIdentifier
        let start = ContinuousClock.now
        while process.isRunning, ContinuousClock.now < start + limit {
            // Foundation reaps its children itself; only one it has missed for a while is ours to reap.
            if ContinuousClock.now > start + .seconds(5) {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    let signal = status & 0x7f
                    return signal == 0 ? (status >> 8) & 0xff : signal
                }
            }
            usleep(10_000)
        }
        return process.isRunning ? nil : process.terminationStatus
    }
}
