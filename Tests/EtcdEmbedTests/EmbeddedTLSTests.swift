import EtcdClient
import EtcdProto
import EtcdServer
import Foundation
import Locking
import Synchronization
import Testing
import TestSupport
import TransportSecurity

@testable import EtcdEmbed

@Suite("EmbeddedEtcd with TLS and Unix socket listeners", .server)
struct EmbeddedTLSTests {
    func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("embed-tls-\(UUID().uuidString)")
    }

    func configuration(directory: URL, clientURLs: [String]) async throws -> EmbedConfiguration {
        let peer = try await ServerProcess.freePort()
        var configuration = EmbedConfiguration()
        configuration.name = "tls"
        configuration.dataDirectory = directory.appendingPathComponent("data").path
        configuration.listenClientURLs = clientURLs
        configuration.advertiseClientURLs = [clientURLs[0]]
        configuration.listenPeerURLs = ["http://127.0.0.1:\(peer)"]
        configuration.initialAdvertisePeerURLs = configuration.listenPeerURLs
        configuration.initialCluster = "tls=http://127.0.0.1:\(peer)"
        configuration.clientTLS.certFile = try TestCertificates.file("server.pem")
        configuration.clientTLS.keyFile = try TestCertificates.file("server-key.pem")
        configuration.clientTLS.trustedCAFile = try TestCertificates.file("ca.pem")
        configuration.clientTLS.clientCertAuth = true
        return configuration
    }

    @Test func plainTLSAndUnixSocketListenersServeTogether() async throws {
        let directory = temporaryDirectory()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (secure, plain) = (try await ServerProcess.freePort(), try await ServerProcess.freePort())
        let socket = directory.appendingPathComponent("etcd.sock").path
        let secureSocket = directory.appendingPathComponent("etcds.sock").path
        let etcd = try await EmbeddedEtcd.start(configuration(directory: directory, clientURLs: [
            "https://127.0.0.1:\(secure)", "http://127.0.0.1:\(plain)", "unix://\(socket)", "unixs://\(secureSocket)",
        ]))
        let tls = EtcdClient.TLSOptions(
            caFile: try TestCertificates.file("ca.pem"), certFile: try TestCertificates.file("client.pem"),
            keyFile: try TestCertificates.file("client-key.pem"))
        let overTLS = try EtcdClient(endpoints: ["https://127.0.0.1:\(secure)"], tls: tls)
        _ = try await overTLS.put("through", "tls")
        for (endpoint, options) in [
            ("http://127.0.0.1:\(plain)", nil), ("unix://\(socket)", nil), ("unixs://\(secureSocket)", tls),
        ] as [(String, EtcdClient.TLSOptions?)] {
            let client = try EtcdClient(endpoints: [endpoint], tls: options)
            let got = try await client.get("through")
            #expect(got.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["tls"], "\(endpoint)")
            await client.close()
        }
        // No client certificate: the TLS listener refuses; the others keep serving.
        let anonymous = try EtcdClient(endpoints: ["https://127.0.0.1:\(secure)"], tls: .init(caFile: tls.caFile))
        await #expect(throws: EtcdClientError.self) { _ = try await anonymous.get("through") }
        await anonymous.close()
        #expect(try await overTLS.get("through").count == 1)
        await overTLS.close()
        await etcd.stop()
        #expect(!FileManager.default.fileExists(atPath: socket))
    }

    @Test func wrongProtocolsAreClosedAndLoggedWhileGoodClientsAreServed() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (secure, plain) = (try await ServerProcess.freePort(), try await ServerProcess.freePort())
        let log = RecordingLog()
        let etcd = try await EmbeddedEtcd.start(
            configuration(directory: directory, clientURLs: ["https://127.0.0.1:\(secure)", "http://127.0.0.1:\(plain)"]),
            logger: log.logger)
        let tls = EtcdClient.TLSOptions(
            caFile: try TestCertificates.file("ca.pem"), certFile: try TestCertificates.file("client.pem"),
            keyFile: try TestCertificates.file("client-key.pem"))
        // TLS to the plaintext port, plaintext to the TLS port.
        let tlsToPlain = try EtcdClient(endpoints: ["https://127.0.0.1:\(plain)"], tls: tls, requestTimeout: .seconds(2))
        await #expect(throws: EtcdClientError.self) { _ = try await tlsToPlain.get("k") }
        await tlsToPlain.close()
        let plainToTLS = try EtcdClient(endpoints: ["http://127.0.0.1:\(secure)"], requestTimeout: .seconds(2))
        await #expect(throws: EtcdClientError.self) { _ = try await plainToTLS.get("k") }
        await plainToTLS.close()
        let refusals = log.entries.filter { $0.hasPrefix("rejected connection on client endpoint") }
        #expect(refusals.contains { $0.contains("tls: client sent a TLS handshake to a plaintext listener") }, "\(refusals)")
        #expect(refusals.contains { $0.contains("tls: first record does not look like a TLS handshake") }, "\(refusals)")
        for (endpoint, options) in [("https://127.0.0.1:\(secure)", tls), ("http://127.0.0.1:\(plain)", nil)] as [(String, EtcdClient.TLSOptions?)] {
            let client = try EtcdClient(endpoints: [endpoint], tls: options)
            _ = try await client.put("served", endpoint)
            await client.close()
        }
        await etcd.stop()
    }

    @Test func certificatesRotateWhileAClientWritesWithoutAFailedWrite() async throws {
        let directory = temporaryDirectory()
        let certificates = directory.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certificates, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func install(_ name: String) throws {
            for (from, to) in [("\(name)-key.pem", "server-key.pem"), ("\(name).pem", "server.pem")] {
                let data = try Data(contentsOf: URL(fileURLWithPath: try TestCertificates.file(from)))
                try data.write(to: certificates.appendingPathComponent(to), options: .atomic)
            }
        }
        try install("server")
        let port = try await ServerProcess.freePort()
        var configuration = try await configuration(directory: directory, clientURLs: ["https://127.0.0.1:\(port)"])
        configuration.clientTLS.certFile = certificates.appendingPathComponent("server.pem").path
        configuration.clientTLS.keyFile = certificates.appendingPathComponent("server-key.pem").path
        configuration.clientTLS.clientCertAuth = false
        let etcd = try await EmbeddedEtcd.start(configuration)
        let writer = try EtcdClient(endpoints: ["https://127.0.0.1:\(port)"], tls: .init(caFile: try TestCertificates.file("ca.pem")))
        _ = try await writer.put("warm", "up")
        // One client writes without pause on its open connection while the files are replaced
        // by a certificate from another CA, and goes on until five writes after the swap.
        let rotated = Locked(false)
        let writes = Task {
            var (count, afterRotation) = (0, 0)
            let deadline = ContinuousClock.now + .seconds(60)
            while afterRotation < 5, ContinuousClock.now < deadline {
                let swapped = rotated.withLock { $0 }
                _ = try await writer.put("key-\(count % 100)", "\(count)")
                count += 1
                if swapped { afterRotation += 1 }
            }
            return (count, afterRotation)
        }
        try await Task.sleep(for: .milliseconds(200))
        try install("other-server")
        let newClient = try EtcdClient(
            endpoints: ["https://127.0.0.1:\(port)"], tls: .init(caFile: try TestCertificates.file("other-ca.pem")))
        _ = try await newClient.put("rotated", "yes")
        let oldTrust = try EtcdClient(
            endpoints: ["https://127.0.0.1:\(port)"], tls: .init(caFile: try TestCertificates.file("ca.pem")), requestTimeout: .seconds(2))
        await #expect(throws: EtcdClientError.self) { _ = try await oldTrust.get("rotated") }
        rotated.withLock { $0 = true }
        let (written, afterRotation) = try await writes.value
        #expect(afterRotation == 5)
        #expect(written >= 5)
        await oldTrust.close()
        await newClient.close()
        await writer.close()
        await etcd.stop()
    }

    @Test func autoTLSServesWithACertificateKeptInTheDataDirectory() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let port = try await ServerProcess.freePort()
        var configuration = try await configuration(directory: directory, clientURLs: ["https://127.0.0.1:\(port)"])
        configuration.clientTLS = TLSInfo(side: .client)
        configuration.clientTLS.autoTLS = true
        let etcd = try await EmbeddedEtcd.start(configuration)
        let certificate = "\(configuration.resolvedDataDirectory)/fixtures/client/cert.pem"
        let client = try EtcdClient(endpoints: ["https://127.0.0.1:\(port)"], tls: .init(caFile: certificate))
        let put = try await client.put("auto", "tls")
        let got = try await client.get("auto")
        #expect(got.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["tls"])
        #expect(got.header.revision == put.header.revision)
        await client.close()
        await etcd.stop()
    }

    @Test func unusableTLSSettingsStopTheStartAndNameTheFlag() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let port = try await ServerProcess.freePort()
        var configuration = try await configuration(directory: directory, clientURLs: ["https://127.0.0.1:\(port)"])
        configuration.clientTLS.keyFile = try TestCertificates.file("client-key.pem")
        await #expect(throws: ConfigurationError(
            "--key-file: the private key in \(try TestCertificates.file("client-key.pem")) does not match the certificate in \(try TestCertificates.file("server.pem"))"))
        {
            _ = try await EmbeddedEtcd.start(configuration)
        }
        configuration.clientTLS = TLSInfo(side: .client)
        await #expect(throws: ConfigurationError(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:\(port) with HTTPS scheme"))
        {
            _ = try await EmbeddedEtcd.start(configuration)
        }
        configuration.listenPeerURLs = ["https://127.0.0.1:\(port)"]
        configuration.listenClientURLs = ["http://127.0.0.1:\(try await ServerProcess.freePort())"]
        await #expect(throws: ConfigurationError.self) { _ = try await EmbeddedEtcd.start(configuration) }
    }
}
