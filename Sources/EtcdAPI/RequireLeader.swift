import EtcdServer
import GRPCWire
import NIOCore

/// etcd's rule for streams a client opens with `hasleader` metadata (clientv3 does for watches
/// and keep-alives, so that it moves to a member that has a leader): refused while the member
/// has none, and ended with `etcdserver: no leader` once it has been without one for three
/// election timeouts in a row.
enum RequireLeader {
    /// Whether the call asked for a leader.
    static func isRequired(by context: ServerContext) -> Bool {
        context.metadata("hasleader") == "true"
    }

    /// Checks every election timeout on `eventLoop` and calls `lost` (once, on the loop) after
    /// three checks in a row found no leader. Cancel the task when the stream ends.
    static func monitor(_ server: EtcdServer, on eventLoop: any EventLoop, lost: @escaping () -> Void) -> RepeatedTask {
        let interval = TimeAmount.nanoseconds(Int64(server.configuration.electionTimeout / .nanoseconds(1)))
        let checksWithoutLeader = NIOLoopBoundBox(0, eventLoop: eventLoop)
        let lost = NIOLoopBound(lost, eventLoop: eventLoop)
        return eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { task in
            checksWithoutLeader.value = server.leaderID == nil ? checksWithoutLeader.value + 1 : 0
            guard checksWithoutLeader.value >= 3 else { return }
            task.cancel()
            lost.value()
        }
    }
}
