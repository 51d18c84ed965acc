import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf
import TestSupport
import Testing

/// When a member starts serving clients: as etcd, once it has published itself through Raft
/// (a leader, the member caught up with its own publish entry), and not before; systemd hears
/// `READY=1` at that moment.
@Suite("Readiness", .cluster, .serialized)
struct ReadinessTests {
    /// A Unix datagram socket bound in a fresh directory, as systemd's `$NOTIFY_SOCKET`.
    private final class NotifySocket {
        let path: String
        private let descriptor: Int32

        init(directory: URL) throws {
            path = directory.appendingPathComponent("notify.sock").path
            descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { buffer in
                for (index, byte) in path.utf8.enumerated() { buffer[index] = byte }
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard bound == 0 else { throw CocoaError(.fileWriteUnknown) }
            _ = fcntl(descriptor, F_SETFL, O_NONBLOCK)
        }

        /// The datagrams received so far.
        func received() -> [String] {
            var messages: [String] = []
            var buffer = [UInt8](repeating: 0, count: 256)
            while true {
                let count = recv(descriptor, &buffer, buffer.count, 0)
                guard count > 0 else { return messages }
                messages.append(String(decoding: buffer[..<count], as: UTF8.self))
            }
        }

        deinit { close(descriptor) }
    }

    private static func log(_ cluster: ClusterProcesses, _ index: Int) -> String {
        (try? String(contentsOf: cluster.directory.appendingPathComponent("m\(index).log"), encoding: .utf8)) ?? ""
    }

    @Test("a member without a quorum neither serves nor says it is ready; once published it does, with a leader, and notifies systemd")
    func aMemberServesOnceItHasPublishedItself() async throws {
        let cluster = try await ClusterProcesses(size: 3, extraArguments: ClusterTests.timers)
        defer { cluster.destroy() }
        let notify = try NotifySocket(directory: cluster.directory)
        try await cluster.start(0, environment: ["NOTIFY_SOCKET": notify.path], waitUntilServing: false)

        // Alone it cannot publish: its port takes connections but answers nothing.
        try await Task.sleep(for: .seconds(2))
        #expect(!Self.log(cluster, 0).contains("ready to serve client requests"))
        let lonely = try await cluster.members[0].connect()
        do {
            _ = try await lonely.unary(
                Etcdserverpb_MaintenanceRPCs.status.path, Etcdserverpb_StatusRequest(), timeout: .seconds(1),
                responseType: Etcdserverpb_StatusResponse.self)
            Issue.record("a member without a leader answered")
        } catch {
            #expect((error as? GRPCStatus)?.code == .deadlineExceeded)
        }
        await lonely.close()
        #expect(notify.received().isEmpty)

        // A second member makes a quorum: the first publishes itself, then serves and says so.
        try await cluster.start(1)
        let deadline = ContinuousClock.now + .seconds(20)
        while !Self.log(cluster, 0).contains("ready to serve client requests"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let status = try await cluster.status(0)
        #expect(status.leader != 0)
        let log = Self.log(cluster, 0)
        let published = try #require(log.range(of: "published local member to cluster through raft"))
        let ready = try #require(log.range(of: "ready to serve client requests"))
        #expect(published.lowerBound < ready.lowerBound)
        #expect(notify.received() == ["READY=1"])
    }
}
