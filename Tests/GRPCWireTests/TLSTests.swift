import Crypto
import Foundation
import GRPCWire
import NIOCore
import NIOSSL
import SwiftASN1
import Testing
import X509

/// A throwaway certificate authority with a server and a client certificate, made per test run
/// so no key is ever committed.
struct TestPKI {
    let caCertificate: NIOSSLCertificate
    let serverChain: [NIOSSLCertificate]
    let serverKey: NIOSSLPrivateKey
    let clientChain: [NIOSSLCertificate]
    let clientKey: NIOSSLPrivateKey

    init() throws {
        let now = Date()
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("swift-etcd test CA") }
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 3600, issuer: caName, subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                KeyUsage(keyCertSign: true)
            },
            issuerPrivateKey: .init(caKey))

        func leaf(_ name: String, usage: ExtendedKeyUsage.Usage) throws -> (NIOSSLCertificate, NIOSSLPrivateKey) {
            let key = P256.Signing.PrivateKey()
            let certificate = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
                notValidBefore: now - 3600, notValidAfter: now + 3600, issuer: caName,
                subject: try DistinguishedName { CommonName(name) }, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    SubjectAlternativeNames([.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
                    try ExtendedKeyUsage([usage])
                },
                issuerPrivateKey: .init(caKey))
            return (
                try NIOSSLCertificate(bytes: Array(try certificate.serializeAsPEM().pemString.utf8), format: .pem),
                try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem)
            )
        }

        caCertificate = try NIOSSLCertificate(bytes: Array(try ca.serializeAsPEM().pemString.utf8), format: .pem)
        let (serverCertificate, serverKey) = try leaf("swift-etcd test server", usage: .serverAuth)
        let (clientCertificate, clientKey) = try leaf("swift-etcd test client", usage: .clientAuth)
        serverChain = [serverCertificate]
        self.serverKey = serverKey
        clientChain = [clientCertificate]
        self.clientKey = clientKey
    }

    func serverTLS(requireClientCertificate: Bool) -> TLSConfiguration {
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: serverChain.map { .certificate($0) }, privateKey: .privateKey(serverKey))
        if requireClientCertificate {
            tls.certificateVerification = .noHostnameVerification
            tls.trustRoots = .certificates([caCertificate])
        }
        return tls
    }

    func clientTLS(presentCertificate: Bool) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates([caCertificate])
        if presentCertificate {
            tls.certificateChain = clientChain.map { .certificate($0) }
            tls.privateKey = .privateKey(clientKey)
        }
        return tls
    }
}

@Suite("TLS with ALPN h2")
struct TLSTests {
    private func serve(_ tls: TLSConfiguration) async throws -> GRPCServer {
        try await GRPCServer.start(
            router: TestService.router(Observations()), configuration: .init(host: "127.0.0.1", port: 0, tls: tls))
    }

    @Test func serverCertificateOnly() async throws {
        let pki = try TestPKI()
        let server = try await serve(pki.serverTLS(requireClientCertificate: false))
        var configuration = GRPCClientConnection.Configuration(
            host: "127.0.0.1", port: server.localAddress!.port!, tls: pki.clientTLS(presentCertificate: false))
        configuration.serverHostname = "localhost"
        let connection = try await GRPCClientConnection.connect(configuration)
        let response = try await connection.unary(TestService.echo, Bytes("over tls"), responseType: Bytes.self)
        #expect(response.text == "over tls")
        await connection.close()
        await server.shutdown()
    }

    @Test func clientCertificateRequired() async throws {
        let pki = try TestPKI()
        let server = try await serve(pki.serverTLS(requireClientCertificate: true))
        let port = server.localAddress!.port!

        let trusted = try await GRPCClientConnection.connect(
            .init(host: "127.0.0.1", port: port, tls: pki.clientTLS(presentCertificate: true)))
        let response = try await trusted.unary(TestService.echo, Bytes("mutual"), responseType: Bytes.self)
        #expect(response.text == "mutual")
        await trusted.close()

        // Without a certificate the handshake fails, so the call never reaches the service.
        let anonymous = try await GRPCClientConnection.connect(
            .init(host: "127.0.0.1", port: port, tls: pki.clientTLS(presentCertificate: false)))
        let status = await status {
            _ = try await anonymous.unary(TestService.echo, Bytes("rejected"), timeout: .seconds(5), responseType: Bytes.self)
        }
        #expect(status?.code == .unavailable)
        await anonymous.close()
        await server.shutdown()
    }

    @Test func plaintextClientCannotTalkToATLSServer() async throws {
        let pki = try TestPKI()
        let server = try await serve(pki.serverTLS(requireClientCertificate: false))
        let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.localAddress!.port!))
        let status = await status {
            _ = try await connection.unary(TestService.echo, Bytes("x"), timeout: .seconds(5), responseType: Bytes.self)
        }
        #expect(status?.code == .unavailable)
        await connection.close()
        await server.shutdown()
    }
}
