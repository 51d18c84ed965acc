import EtcdClient
import Foundation
import NIOSSL

/// TLS for test processes as kubeadm sets etcd up: client and peer certificates from the test
/// PKI, `--client-cert-auth` and `--peer-client-cert-auth`, `https` URLs everywhere.
public struct TestTLS: Sendable {
    /// The server flags for both sides.
    public let serverArguments: [String]
    /// What a test client presents (the PKI's `client.pem`, CN=root).
    public let clientOptions: EtcdClient.TLSOptions
    /// etcdctl's `--cacert`, `--cert`, `--key`.
    public let etcdctlArguments: [String]

    public static func kubeadm() throws -> TestTLS {
        let file = TestCertificates.file
        let options = EtcdClient.TLSOptions(caFile: try file("ca.pem"), certFile: try file("client.pem"), keyFile: try file("client-key.pem"))
        return TestTLS(
            serverArguments: [
                "--cert-file", try file("server.pem"), "--key-file", try file("server-key.pem"), "--trusted-ca-file", try file("ca.pem"),
                "--client-cert-auth=true", "--peer-cert-file", try file("peer.pem"), "--peer-key-file", try file("peer-key.pem"),
                "--peer-trusted-ca-file", try file("ca.pem"), "--peer-client-cert-auth=true",
            ],
            clientOptions: options,
            etcdctlArguments: ["--cacert", options.caFile!, "--cert", options.certFile!, "--key", options.keyFile!])
    }

    /// `--auto-tls --peer-auto-tls`: self-signed certificates made by each member; clients and
    /// peers do not verify them.
    public static func automatic() -> TestTLS {
        var options = EtcdClient.TLSOptions()
        options.insecureSkipVerify = true
        return TestTLS(
            serverArguments: ["--auto-tls", "--peer-auto-tls"], clientOptions: options,
            etcdctlArguments: ["--insecure-skip-tls-verify"])
    }

    /// The client TLS configuration for raw gRPC connections (health probes, status).
    public func clientConfiguration() throws -> TLSConfiguration {
        try clientOptions.configuration()
    }
}
