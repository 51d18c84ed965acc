import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import Testing
import TestSupport

@testable import EtcdEmbed

/// `--client-cert-auth` with auth on: a request without a token is made as the user its client
/// certificate names (the common name), as etcd does; a token, when sent, wins.
@Suite("Auth: client certificates as identities", .server)
struct AuthCertificateTests {
    @Test func theCommonNameIsTheUserWhenNoTokenIsSent() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("auth-cert-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let port = try await ServerProcess.freePort()
        var configuration = try await EmbeddedTLSTests().configuration(directory: directory, clientURLs: ["https://127.0.0.1:\(port)"])
        configuration.bcryptCost = 4
        let etcd = try await EmbeddedEtcd.start(configuration)
        let ca = try TestCertificates.file("ca.pem")
        // client.pem names root; peer.pem (also a client certificate of this CA) names peer.
        let asRoot = try EtcdClient(
            endpoints: ["https://127.0.0.1:\(port)"],
            tls: .init(caFile: ca, certFile: try TestCertificates.file("client.pem"), keyFile: try TestCertificates.file("client-key.pem")))
        let peerTLS = EtcdClient.TLSOptions(caFile: ca, certFile: try TestCertificates.file("peer.pem"), keyFile: try TestCertificates.file("peer-key.pem"))
        let asPeer = try EtcdClient(endpoints: ["https://127.0.0.1:\(port)"], tls: peerTLS)
        // Certificate-only users: no password.
        _ = try await asRoot.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "root"; $0.options = .with { $0.noPassword = true } })
        _ = try await asRoot.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = "root" })
        _ = try await asRoot.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = "root"; $0.role = "root" })
        _ = try await asRoot.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "peer"; $0.options = .with { $0.noPassword = true } })
        _ = try await asRoot.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = "reader" })
        _ = try await asRoot.call(Etcdserverpb_AuthRPCs.roleGrantPermission, .with {
            $0.name = "reader"
            $0.perm = .with { $0.permType = .read; $0.key = Data("/app/".utf8); $0.rangeEnd = Data("/app0".utf8) }
        })
        _ = try await asRoot.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = "peer"; $0.role = "reader" })
        _ = try await asRoot.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = "alice"; $0.password = "pw" })
        _ = try await asRoot.call(Etcdserverpb_AuthRPCs.authEnable, .init())

        try await asRoot.put("/app/x", "1")
        try await asRoot.put("/other", "1")
        #expect(try await asRoot.call(Etcdserverpb_AuthRPCs.userList, .init()).users == ["alice", "peer", "root"])
        #expect(try await asPeer.get("/app/x").count == 1)
        await #expect(throws: EtcdClientError(code: .permissionDenied, message: "etcdserver: permission denied")) {
            try await asPeer.put("/app/x", "2")
        }
        await #expect(throws: EtcdClientError(code: .permissionDenied, message: "etcdserver: permission denied")) {
            _ = try await asPeer.call(Etcdserverpb_AuthRPCs.userList, .init())
        }
        // A watch stream opened before an auth change goes on creating watchers (the certificate
        // is current at every revision); the new grants apply to them.
        let stream = try await asPeer.watchStream()
        var responses = stream.makeAsyncIterator()
        try await stream.create(.with { $0.key = Data("/app/x".utf8) })
        #expect(try await responses.next()?.canceled == false)
        _ = try await asRoot.call(Etcdserverpb_AuthRPCs.roleGrantPermission, .with {
            $0.name = "reader"
            $0.perm = .with { $0.permType = .read; $0.key = Data("/more/".utf8); $0.rangeEnd = Data("/more0".utf8) }
        })
        try await stream.create(.with { $0.key = Data("/more/y".utf8) })
        #expect(try await responses.next()?.canceled == false)
        try await stream.create(.with { $0.key = Data("/other".utf8) })
        let refused = try await responses.next()
        #expect(refused?.canceled == true && refused?.watchID == -1)
        #expect(refused?.cancelReason == "rpc error: code = PermissionDenied desc = etcdserver: permission denied")
        stream.close()
        // A certificate-only user cannot log in with a password.
        await #expect(throws: EtcdClientError(code: .unknown, message: "auth: authentication failed, password was given for no password user")) {
            _ = try await asPeer.call(Etcdserverpb_AuthRPCs.authenticate, .with { $0.name = "peer"; $0.password = "" })
        }
        // With a token, the token's user is the caller, whatever the certificate says.
        let aliceOverRootsCertificate = try EtcdClient(
            endpoints: ["https://127.0.0.1:\(port)"],
            tls: .init(caFile: ca, certFile: try TestCertificates.file("client.pem"), keyFile: try TestCertificates.file("client-key.pem")),
            credentials: EtcdCredentials(user: "alice", password: "pw"))
        await #expect(throws: EtcdClientError(code: .permissionDenied, message: "etcdserver: permission denied")) {
            _ = try await aliceOverRootsCertificate.get("/other")
        }
        for client in [asRoot, asPeer, aliceOverRootsCertificate] { await client.close() }
        await etcd.stop()
    }
}
