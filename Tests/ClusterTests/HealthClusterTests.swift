import Foundation
import NIOCore
import Testing
import TestSupport

/// `/health` and `/readyz` follow the cluster: a member that loses its quorum turns to 503 with
/// etcd's reasons within about an election timeout, and back to 200 once the quorum is back.
@Suite("Health endpoints on a cluster that loses and regains its quorum", .cluster, .serialized)
struct HealthClusterTests {
    /// Polls `path` on `port` every 50 ms until `accept` holds, at most `limit`; the time it took.
    func waitFor(
        _ path: String, port: Int, within limit: Duration = .seconds(15), _ accept: (HTTPProbe.Answer) -> Bool
    ) async throws -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < limit {
            if let answer = try? await HTTPProbe.request(path, port: port, timeout: .seconds(3)), accept(answer) {
                return ContinuousClock.now - start
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    @Test func healthTurnsWithTheQuorum() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers)
        defer { cluster.destroy() }
        _ = try await cluster.startAndElect()
        let port = cluster.members[0].port
        #expect(try await HTTPProbe.request("/health", port: port).body == #"{"health":"true","reason":""}"#)
        cluster.members[1].kill9()
        cluster.members[2].kill9()
        // --election-timeout is 500 ms here: the leader steps down (check quorum) or the member
        // stops hearing one; /health says so.
        let lost = try await waitFor("/health", port: port) { $0.status == 503 }
        print("health: 503 after \(String(describing: lost)) without a quorum")
        #expect(lost != nil && lost! < .seconds(3), "\(String(describing: lost))")
        let noLeader = try await waitFor("/health", port: port) {
            $0.status == 503 && $0.body == "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n"
        }
        #expect(noLeader != nil)
        let readyz = try await HTTPProbe.request("/readyz", port: port, timeout: .seconds(20))
        #expect(readyz.status == 503)
        #expect(readyz.body.contains("[-]linearizable_read failed: etcdserver:"), "\(readyz.body)")
        #expect(readyz.body.contains("[+]serializable_read ok"))
        // A serializable health check still reads the member's own data.
        #expect(try await HTTPProbe.request("/health?serializable=true", port: port).status == 200)
        #expect(try await HTTPProbe.request("/livez", port: port).status == 200)
        try await cluster.start(1)
        let back = try await waitFor("/health", port: port) { $0.status == 200 }
        #expect(back != nil)
        #expect(try await waitFor("/readyz", port: port) { $0.status == 200 && $0.body == "ok\n" } != nil)
    }
}
