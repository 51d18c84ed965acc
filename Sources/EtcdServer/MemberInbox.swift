import Dispatch
import Locking
import Raft
import Synchronization

/// Where requests, peer messages and reports wait for the member's loop thread, which takes
/// them all at once each turn (so requests reach Raft in batches, not one hop each).
final class MemberInbox: Sendable {
    struct Contents {
        var proposals: [EtcdServer.Proposal] = []
        var reads: [EtcdServer.ReadWaiter] = []
        /// Waiting until everything committed when they arrived is applied (no read index).
        var appliedWaits: [EtcdServer.ReadWaiter] = []
        var messages: [Message] = []
        var unreachable: Set<NodeID> = []
        var transfers: [EtcdServer.LeaderTransfer] = []
        var snapshotReports: [(peer: NodeID, status: SnapshotStatus)] = []
        var membershipChanges: [EtcdServer.MembershipProposal] = []
        var stopping = false

        var isEmpty: Bool {
            proposals.isEmpty && reads.isEmpty && appliedWaits.isEmpty && messages.isEmpty && unreachable.isEmpty && transfers.isEmpty
                && snapshotReports.isEmpty && membershipChanges.isEmpty && !stopping
        }
    }

    private let contents = Locked(Contents())
    /// Signalled when the inbox receives something, to wake the loop before its next tick.
    let wake = DispatchSemaphore(value: 0)

    /// Changes the contents, waking the loop if they were empty and are not now.
    @discardableResult
    func enqueue<Result>(_ change: (inout Contents) -> Result) -> Result {
        let (result, wakes) = contents.withLock { contents in
            let wasEmpty = contents.isEmpty
            let result = change(&contents)
            return (result, wasEmpty && !contents.isEmpty)
        }
        if wakes { wake.signal() }
        return result
    }

    /// Queues a request unless the member is stopping; returns whether it was queued.
    func submit(_ add: (inout Contents) -> Void) -> Bool {
        enqueue { contents in
            guard !contents.stopping else { return false }
            add(&contents)
            return true
        }
    }

    /// Everything queued, leaving the inbox empty (but still stopping, once asked to stop).
    func take() -> Contents {
        contents.withLock { contents in
            defer { contents = Contents(stopping: contents.stopping) }
            return contents
        }
    }
}

/// Hands a value that is not `Sendable` to another thread exactly once: the creator gives up
/// every reference when it wraps the value, and only the receiving thread calls `take()`.
final class HandOff<Value>: @unchecked Sendable {
    // Safe: `value` is written once in `init` (before the box is shared) and read once by the
    // single thread the box is handed to; no other code keeps or reaches it.
    private var value: Value?

    init(_ value: Value) { self.value = value }

    func take() -> Value {
        defer { value = nil }
        return value!
    }
}
