import Foundation
import Logging
import NIOSSL
import TestSupport
import Testing

@testable import TransportSecurity

@Suite("The system's CAs, found as Go finds them")
struct SystemTrustRootsTests {
    private func roots(_ environment: [String: String]) -> (NIOSSLTrustRoots?, [NIOSSLAdditionalTrustRoots]) {
        var configuration = TLSConfiguration.makeClientConfiguration()
        SystemTrustRoots.apply(to: &configuration, environment: environment)
        return (configuration.trustRoots, configuration.additionalTrustRoots)
    }

    @Test func sslCertFileReplacesTheBundleAndSslCertDirTheDirectories() throws {
        let ca = try TestCertificates.file("ca.pem")
        let directory = try TestCertificates.directory()
        let (file, more) = roots(["SSL_CERT_FILE": ca, "SSL_CERT_DIR": "\(directory):/nonexistent/certs"])
        #expect(file == .file(ca))
        // The PKI directory's certificates, read from its files: both CAs and the eight leaves
        // (key files and the revocation list hold no certificate).
        let expected = SystemTrustRoots.certificates(in: directory)
        #expect(expected.count == 10)
        #expect(more == [.certificates(expected)])
    }

    @Test func missingPathsAreSkippedAndWithNoneLeftNothingIsTrusted() throws {
        let directory = try TestCertificates.directory()
        let (file, more) = roots(["SSL_CERT_FILE": "/nonexistent/ca.pem", "SSL_CERT_DIR": directory])
        #expect(file == .file(directory))
        #expect(more.isEmpty)
        let (none, nothing) = roots(["SSL_CERT_FILE": "/nonexistent/ca.pem", "SSL_CERT_DIR": "/nonexistent"])
        #expect(none == .certificates([]))
        #expect(nothing.isEmpty)
    }

    @Test func withoutTheVariablesNIOSSLsDefaultStays() throws {
        let (file, more) = roots(["PATH": "/usr/bin"])
        #expect(file == .default)
        #expect(more.isEmpty)
        // With SSL_CERT_FILE alone, the distribution's directory is still trusted, as in Go.
        let (_, directories) = roots(["SSL_CERT_FILE": try TestCertificates.file("ca.pem")])
        #expect(directories.count == 1)
        if case .certificates(let system) = directories.first { #expect(system.count > 50, "\(system.count)") }
    }

    @Test func aServerSignedByTheCAInSslCertFileIsVerifiedAndOneSignedByAnotherIsNot() async throws {
        let credentials = try TLSCredentials(
            tlsInfo(.client, clientCertAuth: false), autoTLSDirectory: "/nonexistent", hosts: [], logger: Logger(label: "test"))
        let server = try await EchoServer.start(credentials)
        var trusting = TLSConfiguration.makeClientConfiguration()
        SystemTrustRoots.apply(to: &trusting, environment: ["SSL_CERT_FILE": try TestCertificates.file("ca.pem"), "SSL_CERT_DIR": "/nonexistent"])
        let client = try await EchoClient.connect(port: server.port, tls: trusting, serverHostname: "localhost")
        #expect(try await client.echo("trusted") == "trusted")
        await client.close()
        var other = TLSConfiguration.makeClientConfiguration()
        SystemTrustRoots.apply(to: &other, environment: ["SSL_CERT_FILE": try TestCertificates.file("other-ca.pem"), "SSL_CERT_DIR": "/nonexistent"])
        await #expect(throws: (any Error).self) {
            let refused = try await EchoClient.connect(port: server.port, tls: other, serverHostname: "localhost")
            defer { Task { await refused.close() } }
            _ = try await refused.echo("untrusted")
        }
        await server.stop()
    }
}
