import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import TestSupport
import Testing

@testable import TransportSecurity

@Suite("TLS credentials: files, handshakes, connection rules, rotation")
struct TLSCredentialsTests {
    @Test func clientSignedByTheTrustedCAIsServed() async throws {
        let credentials = try TLSCredentials(tlsInfo(.client), autoTLSDirectory: "/nonexistent", hosts: [], logger: Logger(label: "test"))
        let server = try await EchoServer.start(credentials)
        let client = try await EchoClient.connect(port: server.port, tls: clientTLS(presenting: "client"))
        #expect(try await client.echo("hello") == "hello")
        await client.close()
        await server.stop()
    }

    /// Each case: the server's side and settings, the certificate the client presents, and
    /// the reason the server logs (nil: the connection is served). After a refusal a client
    /// presenting `peer.pem` is served, except where the rules refuse every test certificate.
    static let ruleCases: [(String, TLSInfo.Side, @Sendable (inout TLSInfo) throws -> Void, String?, String?)] = [
        ("no certificate", .client, { _ in }, nil, "tls: client didn't provide a certificate"),
        ("another CA", .client, { _ in }, "other-client", "tls: failed to verify client certificate"),
        ("revoked", .client, { $0.crlFile = try TestCertificates.file("crl.pem") }, "revoked", "transport: certificate serial 1003 revoked"),
        ("not revoked", .client, { $0.crlFile = try TestCertificates.file("crl.pem") }, "client", nil),
        ("CN allowed", .peer, { $0.allowedCommonNames = ["peer"] }, "peer", nil),
        ("CN not allowed", .peer, { $0.allowedCommonNames = ["peer"] }, "client", "CommonName authentication failed"),
        ("hostname allowed", .peer, { $0.allowedHostnames = ["localhost"] }, "client", nil),
        ("hostname not allowed", .peer, { $0.allowedHostnames = ["example.com"] }, "client", "hostname authentication failed"),
        ("client hostname allowed", .client, { $0.allowedHostnames = ["localhost"] }, "client", nil),
        ("client hostname not allowed", .client, { $0.allowedHostnames = ["example.com"] }, "client", "hostname authentication failed"),
        ("peer address in SANs", .peer, { _ in }, "peer", nil),
        ("peer address not in SANs", .peer, { _ in }, "faraway", "remote address 127.0.0.1 is not in the certificate's subject alternative names"),
        ("SAN check skipped", .peer, { $0.skipClientSANVerification = true }, "faraway", nil),
    ]

    @Test(arguments: 0..<ruleCases.count)
    func connectionRulesDecideWhoIsServed(_ index: Int) async throws {
        let (name, side, adjust, presented, refusal) = Self.ruleCases[index]
        var info = try tlsInfo(side)
        try adjust(&info)
        let log = RecordingLog()
        let credentials = try TLSCredentials(info, autoTLSDirectory: "/nonexistent", hosts: [], logger: log.logger)
        let server = try await EchoServer.start(credentials)
        defer { Task { await server.stop() } }
        let outcome: String
        do {
            let client = try await EchoClient.connect(port: server.port, tls: clientTLS(presenting: presented))
            outcome = try await client.echo("ping")
            await client.close()
        } catch {
            outcome = "failed: \(error)"
        }
        if let refusal {
            #expect(outcome.hasPrefix("failed"), "\(name)")
            // The refusal is logged with its reason, then the server serves the next client.
            let logged = log.entries.first { $0.hasPrefix("rejected connection on \(side.rawValue) endpoint") }
            #expect(logged?.contains(refusal) == true, "\(name): \(log.entries)")
            if !name.hasSuffix("hostname not allowed") {
                let good = try await EchoClient.connect(port: server.port, tls: clientTLS(presenting: "peer"))
                #expect(try await good.echo("still") == "still", "\(name)")
                await good.close()
            }
        } else {
            #expect(outcome == "ping", "\(name)")
            #expect(log.entries.isEmpty, "\(name): \(log.entries)")
        }
    }

    @Test func clientsThatNeverFinishTheHandshakeAreDisconnected() async throws {
        let log = RecordingLog()
        let credentials = try TLSCredentials(tlsInfo(.client), autoTLSDirectory: "/nonexistent", hosts: [], logger: log.logger)
        let server = try await EchoServer.start(credentials, handshakeTimeout: .milliseconds(300))
        let silent = try await EchoClient.connect(port: server.port, tls: nil)
        // The server closes it: the plaintext client's read ends.
        await #expect(throws: (any Error).self) {
            while true { _ = try await silent.echo("") }
        }
        #expect(log.entries.contains { $0.contains("TLS handshake did not complete within") })
        // Half a ClientHello, then nothing.
        let halfway = try await EchoClient.connect(port: server.port, tls: nil)
        await #expect(throws: (any Error).self) {
            while true { _ = try await halfway.echo("\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}") }
        }
        await server.stop()
        // Plaintext on a TLS port, on a server whose deadline cannot come first on a loaded machine.
        let patient = try await EchoServer.start(credentials, handshakeTimeout: .seconds(30))
        let plaintext = try await EchoClient.connect(port: patient.port, tls: nil)
        await #expect(throws: (any Error).self) { try await plaintext.echo("GET / HTTP/1.1\r\n\r\n") }
        #expect(log.entries.contains { $0.contains("tls: first record does not look like a TLS handshake") })
        let good = try await EchoClient.connect(port: patient.port, tls: clientTLS(presenting: "client"))
        #expect(try await good.echo("fine") == "fine")
        await good.close()
        await patient.stop()
    }

    @Test(arguments: [
        ("cert-file", "nope.pem", "key-file", "server-key.pem", "--cert-file: cannot read {dir}/nope.pem: No such file or directory"),
        ("cert-file", "server.pem", "key-file", "client-key.pem", "--key-file: the private key in {dir}/client-key.pem does not match the certificate in {dir}/server.pem"),
        ("cert-file", "expired.pem", "key-file", "expired-key.pem", "--cert-file: the certificate in {dir}/expired.pem expired at 2020-01-02 00:00:00 +0000"),
        ("cert-file", "server-key.pem", "key-file", "server-key.pem", "--cert-file: {dir}/server-key.pem holds no PEM certificate"),
        ("trusted-ca-file", "server-key.pem", "", "", "--trusted-ca-file: {dir}/server-key.pem holds no PEM certificate"),
        ("client-crl-file", "server.pem", "", "", "--client-crl-file: {dir}/server.pem is not a certificate revocation list"),
    ])
    func unusableFilesAreRefusedByFlagAndFile(_ flag: String, _ file: String, _ keyFlag: String, _ keyFile: String, _ message: String)
        throws
    {
        let directory = try TestCertificates.directory()
        var info = try tlsInfo(.client)
        let path = "\(directory)/\(file)"
        switch flag {
        case "cert-file":
            info.certFile = path
            info.keyFile = "\(directory)/\(keyFile)"
        case "trusted-ca-file": info.trustedCAFile = path
        default: info.crlFile = path
        }
        let expected = message.replacingOccurrences(of: "{dir}", with: directory)
        #expect {
            _ = try TLSCredentials(info, autoTLSDirectory: "/nonexistent", hosts: [], logger: Logger(label: "test"))
        } throws: { error in
            "\(error)".hasPrefix(expected)
        }
    }

    @Test func settingsEtcdRefusesAreRefusedBeforeAnyFileIsRead() throws {
        var peer = TLSInfo(side: .peer)
        peer.certFile = "/x/peer.pem"
        #expect(throws: TLSSetupError("--peer-key-file must be given with --peer-cert-file")) {
            try TLSCredentials(peer, autoTLSDirectory: "/x", hosts: [], logger: Logger(label: "test"))
        }
        var client = TLSInfo(side: .client)
        client.certFile = "/x/s.pem"
        client.keyFile = "/x/k.pem"
        client.clientCertAuth = true
        #expect(throws: TLSSetupError("--client-cert-auth requires --trusted-ca-file: there is no CA to verify client certificates with")) {
            try TLSCredentials(client, autoTLSDirectory: "/x", hosts: [], logger: Logger(label: "test"))
        }
        peer.keyFile = "/x/k.pem"
        peer.allowedCommonNames = ["a"]
        peer.allowedHostnames = ["b"]
        #expect(throws: TLSSetupError("AllowedCNs and AllowedHostnames are mutually exclusive (cns=[\"a\"], hostnames=[\"b\"])")) {
            try TLSCredentials(peer, autoTLSDirectory: "/x", hosts: [], logger: Logger(label: "test"))
        }
    }

    @Test func rotatedFilesServeNewConnectionsWhileOpenOnesContinue() async throws {
        let pki = try TestCertificates.directory()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rotation-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func install(_ name: String) throws {
            for (from, to) in [("\(name).pem", "server.pem"), ("\(name)-key.pem", "server-key.pem")] {
                let data = try Data(contentsOf: URL(fileURLWithPath: "\(pki)/\(from)"))
                // Written aside and renamed, as operators and Kubernetes replace secrets.
                try data.write(to: URL(fileURLWithPath: "\(directory)/\(to)"), options: .atomic)
            }
        }
        try install("server")
        var info = TLSInfo(side: .client)
        info.certFile = "\(directory)/server.pem"
        info.keyFile = "\(directory)/server-key.pem"
        let log = RecordingLog()
        let credentials = try TLSCredentials(info, autoTLSDirectory: "/nonexistent", hosts: [], logger: log.logger)
        let server = try await EchoServer.start(credentials)
        let open = try await EchoClient.connect(port: server.port, tls: clientTLS(presenting: nil))
        #expect(try await open.echo("before") == "before")

        // A half-written certificate keeps the previous one in service.
        try Data("-----BEGIN CERTIFICATE-----\nAAAA".utf8).write(to: URL(fileURLWithPath: "\(directory)/server.pem"))
        let during = try await EchoClient.connect(port: server.port, tls: clientTLS(presenting: nil))
        #expect(try await during.echo("during") == "during")
        await during.close()
        #expect(log.entries.contains { $0.hasPrefix("failed to reload TLS certificates; keeping the previous ones") })

        try install("other-server")
        let trustingOld = try await EchoClient.connect(port: server.port, tls: clientTLS(presenting: nil))
        await #expect(throws: (any Error).self) { try await trustingOld.echo("old") }
        let trustingNew = try await EchoClient.connect(port: server.port, tls: clientTLS(trusting: "other-ca.pem", presenting: nil))
        #expect(try await trustingNew.echo("new") == "new")
        #expect(try await open.echo("after") == "after")
        #expect(log.entries.contains { $0.hasPrefix("reloaded TLS certificates") })
        await trustingNew.close()
        await open.close()
        await server.stop()
    }

    @Test func autoTLSMakesASelfSignedCertificateOnceAndKeepsIt() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("auto-tls-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var info = TLSInfo(side: .client)
        info.autoTLS = true
        info.selfSignedCertificateValidityYears = 2
        let credentials = try TLSCredentials(
            info, autoTLSDirectory: "\(directory)/fixtures/client", hosts: ["127.0.0.1", "localhost"], logger: Logger(label: "test"))
        #expect(credentials.info.certFile == "\(directory)/fixtures/client/cert.pem")
        let first = try Data(contentsOf: URL(fileURLWithPath: credentials.info.certFile))
        let attributes = try FileManager.default.attributesOfItem(atPath: credentials.info.keyFile)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        // The certificate names the listen hosts and is valid for two years.
        let certificate = try NIOSSLCertificate.fromPEMFile(credentials.info.certFile)[0]
        let years = Double(certificate.notValidAfter - certificate.notValidBefore) / (365 * 86400)
        #expect(years > 1.99 && years < 2.01)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates([certificate])
        let server = try await EchoServer.start(credentials)
        let client = try await EchoClient.connect(port: server.port, tls: tls)
        #expect(try await client.echo("self-signed") == "self-signed")
        await client.close()
        await server.stop()
        let again = try TLSCredentials(
            info, autoTLSDirectory: "\(directory)/fixtures/client", hosts: ["127.0.0.1"], logger: Logger(label: "test"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: again.info.certFile)) == first)
    }

    @Test func revocationListsNameSerialNumbers() throws {
        let list = try CertificateFiles.revocationList(in: TestCertificates.file("crl.pem"), flag: "--client-crl-file")
        #expect(list.revokedSerials == [[0x10, 0x03]])
    }
}
