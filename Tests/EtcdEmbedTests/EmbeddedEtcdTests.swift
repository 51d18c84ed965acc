import BoundSockets
import EtcdClient
import EtcdProto
import EtcdServer
import Foundation
import NIOCore
import Testing
import TestSupport

@testable import EtcdEmbed

@Suite("EmbeddedEtcd: a member started in the test's own process", .server)
struct EmbeddedEtcdTests {
    func configuration(directory: URL) async throws -> EmbedConfiguration {
        let client = try await ServerProcess.freePort()
        let peer = try await ServerProcess.freePort()
        var configuration = EmbedConfiguration()
        configuration.name = "embedded"
        configuration.dataDirectory = directory.path
        configuration.listenClientURLs = ["http://127.0.0.1:\(client)"]
        configuration.advertiseClientURLs = configuration.listenClientURLs
        configuration.listenPeerURLs = ["http://127.0.0.1:\(peer)"]
        configuration.initialAdvertisePeerURLs = configuration.listenPeerURLs
        configuration.initialCluster = "embedded=http://127.0.0.1:\(peer)"
        return configuration
    }

    func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("embed-\(UUID().uuidString)")
    }

    @Test func servesClientsAndStops() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let etcd = try await EmbeddedEtcd.start(try await configuration(directory: directory))
        let port = try #require(etcd.clientAddresses.first?.port)
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(port)"])
        let put = try await client.put("embedded", "yes")
        let got = try await client.get("embedded")
        #expect(got.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["yes"])
        #expect(got.header.revision == put.header.revision)
        #expect(got.header.memberID == etcd.memberID)
        await client.close()
        await etcd.stop()
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("member/wal").path))
    }

    /// A port another process holds stops the start with etcd's words for it, client or peer,
    /// before the data directory is made (a new member's log would keep the peer URLs).
    @Test func aPortInUseIsNamedAsEtcdNamesIt() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let holder = try await EmbeddedEtcd.start(try await configuration(directory: directory.appendingPathComponent("holder")))
        let held = try #require(holder.clientAddresses.first?.port)
        var configuration = try await configuration(directory: directory.appendingPathComponent("client"))
        configuration.listenClientURLs = ["http://127.0.0.1:\(held)"]
        await #expect(throws: ConfigurationError("listen tcp 127.0.0.1:\(held): bind: address already in use")) {
            _ = try await EmbeddedEtcd.start(configuration)
        }
        configuration = try await self.configuration(directory: directory.appendingPathComponent("peer"))
        configuration.listenPeerURLs = ["http://127.0.0.1:\(held)"]
        configuration.initialAdvertisePeerURLs = configuration.listenPeerURLs
        configuration.initialCluster = "embedded=http://127.0.0.1:\(held)"
        await #expect(throws: ConfigurationError("listen tcp 127.0.0.1:\(held): bind: address already in use")) {
            _ = try await EmbeddedEtcd.start(configuration)
        }
        // One port for two listeners: the second is refused before anything is written (on
        // Linux two sockets with SO_REUSEADDR share a port until one of them listens).
        configuration = try await self.configuration(directory: directory.appendingPathComponent("twice"))
        let shared = try #require(URLComponents(string: configuration.listenPeerURLs[0])?.port)
        configuration.listenClientURLs = ["http://127.0.0.1:\(shared)"]
        await #expect(throws: ConfigurationError("listen tcp 127.0.0.1:\(shared): bind: address already in use")) {
            _ = try await EmbeddedEtcd.start(configuration)
        }
        for tried in ["client", "peer", "twice"] {
            #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent(tried).path), "\(tried)")
        }
        await holder.stop()
    }

    /// swift-etcd started on a data directory etcd made refuses it, says how to move its data,
    /// and writes nothing into it (etcd's log segments have the names ours have).
    @Test func anEtcdDataDirectoryIsRefusedWithTheWayToMoveIt() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let snap = directory.appendingPathComponent("member/snap")
        try FileManager.default.createDirectory(at: snap, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("member/wal"), withIntermediateDirectories: true)
        try Data(repeating: 0, count: 4096).write(to: snap.appendingPathComponent("db"))
        let configuration = try await configuration(directory: directory)
        await #expect(throws: ConfigurationError(
            "\(directory.path) is an etcd data directory (\(snap.path)/db is etcd's bbolt backend), which swift-etcd does not run on: "
                + "stop etcd, move its data with `swift-etcdutl snapshot restore \(snap.path)/db --skip-hash-check --data-dir <new directory>` "
                + "and the member's --name, --initial-cluster and --initial-advertise-peer-urls, then start swift-etcd on the new "
                + "directory (docs/OPERATIONS.md, Moving from etcd)"))
        {
            _ = try await EmbeddedEtcd.start(configuration)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: snap.path) == ["db"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("member/wal").path).isEmpty)
    }

    /// A Unix socket a server answers on is never taken over; one left by a server that is gone
    /// is; a socket dropped before any server took it removes its own file and only its own.
    @Test func unixSocketsAreTakenOverOnlyWhenNobodyAnswers() async throws {
        let directory = temporaryDirectory()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("etcd.sock").path
        var first: BoundSocket? = try BoundSocket.bind(unixDomainSocketPath: path)
        #expect(throws: IOError.self) { _ = try BoundSocket.bind(unixDomainSocketPath: path) }
        #expect(first != nil && FileManager.default.fileExists(atPath: path))
        first = nil
        #expect(!FileManager.default.fileExists(atPath: path))
        // A file left by a process killed while it served: nobody answers, it is replaced.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try SocketAddress(unixDomainSocketPath: path).withSockAddr { pointer, size in
            #expect(bind(stale, pointer, socklen_t(size)) == 0)
        }
        close(stale)
        #expect(FileManager.default.fileExists(atPath: path))
        let second = try BoundSocket.bind(unixDomainSocketPath: path)
        #expect(second.isUnixDomainSocket)
        // A TCP port cannot be bound twice either, though neither socket has a server yet.
        let free = try await ServerProcess.freePort()
        let held = try BoundSocket.bind(host: "127.0.0.1", port: free)
        #expect(throws: IOError.self) { _ = try BoundSocket.bind(host: "127.0.0.1", port: free) }
        #expect(!held.isUnixDomainSocket)
    }

    /// Whether this machine has IPv6 loopback (a container may have none).
    static let hasIPv6Loopback = (try? BoundSocket.bind(host: "::1", port: 0)) != nil

    /// URLs with an IPv6 literal (`http://[::1]:2379`) listen, serve and join as etcd's do:
    /// Foundation on Linux keeps the brackets in a URL's host, which no socket call takes.
    @Test(.enabled(if: hasIPv6Loopback)) func listensOnIPv6Literals() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = try await configuration(directory: directory)
        let (client, peer) = (try await ServerProcess.freePort(), try await ServerProcess.freePort())
        configuration.listenClientURLs = ["http://[::1]:\(client)"]
        configuration.advertiseClientURLs = configuration.listenClientURLs
        configuration.listenPeerURLs = ["http://[::1]:\(peer)"]
        configuration.initialAdvertisePeerURLs = configuration.listenPeerURLs
        configuration.initialCluster = "embedded=http://[::1]:\(peer)"
        let etcd = try await EmbeddedEtcd.start(configuration)
        #expect(etcd.clientAddresses.map(\.port) == [client])
        #expect(etcd.clientAddresses.first?.ipAddress == "::1")
        let connection = try EtcdClient(endpoints: ["http://[::1]:\(client)"])
        _ = try await connection.put("six", "v6")
        #expect(try await connection.get("six").kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["v6"])
        let members = try await connection.call(Etcdserverpb_ClusterRPCs.memberList, .init()).members
        #expect(members.map(\.peerUrls) == [["http://[::1]:\(peer)"]])
        // etcd's ID for this member: the same URL strings hashed with the cluster token.
        #expect(members.map(\.id) == [etcd.memberID])
        await connection.close()

        var second = try await self.configuration(directory: directory.appendingPathComponent("second"))
        second.listenPeerURLs = ["http://[::1]:\(peer)"]
        second.initialAdvertisePeerURLs = second.listenPeerURLs
        second.initialCluster = "embedded=http://[::1]:\(peer)"
        await #expect(throws: ConfigurationError("listen tcp [::1]:\(peer): bind: address already in use")) {
            _ = try await EmbeddedEtcd.start(second)
        }
        await etcd.stop()
    }

    @Test func advertisedPeerURLsMustBeTheInitialClustersAndNothingIsWrittenOtherwise() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var configuration = try await configuration(directory: directory)
        let listed = configuration.initialAdvertisePeerURLs[0]
        configuration.initialAdvertisePeerURLs = ["http://127.0.0.1:1"]
        await #expect(throws: ConfigurationError(
            "--initial-cluster has embedded=\(listed) but missing from --initial-advertise-peer-urls=http://127.0.0.1:1"))
        {
            _ = try await EmbeddedEtcd.start(configuration)
        }
        configuration.initialAdvertisePeerURLs = [listed, "http://127.0.0.1:1"]
        await #expect(throws: ConfigurationError(
            "--initial-advertise-peer-urls has http://127.0.0.1:1 but missing from --initial-cluster=embedded=\(listed)"))
        {
            _ = try await EmbeddedEtcd.start(configuration)
        }
        configuration.name = "stranger"
        await #expect(throws: ConfigurationError("couldn't find local name \"stranger\" in the initial cluster configuration")) {
            _ = try await EmbeddedEtcd.start(configuration)
        }
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
}
