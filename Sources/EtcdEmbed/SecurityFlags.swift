import ArgumentParser
import EtcdServer
import TransportSecurity

/// etcd's TLS flags for the client and the peer side.
struct SecurityFlags: ParsableArguments {
    @Option(name: .customLong("cert-file"), help: "Path to the client server TLS cert file.")
    var certFile = ""

    @Option(name: .customLong("key-file"), help: "Path to the client server TLS key file.")
    var keyFile = ""

    @Option(name: .customLong("client-cert-file"), help: "Path to an explicit client certificate file (default: --cert-file).")
    var clientCertFile = ""

    @Option(name: .customLong("client-key-file"), help: "Path to an explicit client key file (default: --key-file).")
    var clientKeyFile = ""

    @Flag(name: .customLong("client-cert-auth"), inversion: .prefixedNo, help: "Enable client cert authentication.")
    var clientCertAuth = false

    @Option(name: .customLong("client-crl-file"), help: "Path to the client certificate revocation list file.")
    var clientCRLFile = ""

    @Option(
        name: .customLong("client-cert-allowed-hostname"),
        help: "Comma-separated list of SAN hostnames for client cert authentication: a client's certificate must be valid for one of them.")
    var clientCertAllowedHostname = ""

    @Option(name: .customLong("trusted-ca-file"), help: "Path to the client server TLS trusted CA cert file.")
    var trustedCAFile = ""

    @Flag(name: .customLong("auto-tls"), inversion: .prefixedNo, help: "Client TLS using generated certificates.")
    var autoTLS = false

    @Option(name: .customLong("peer-cert-file"), help: "Path to the peer server TLS cert file.")
    var peerCertFile = ""

    @Option(name: .customLong("peer-key-file"), help: "Path to the peer server TLS key file.")
    var peerKeyFile = ""

    @Option(name: .customLong("peer-client-cert-file"), help: "Path to an explicit peer client certificate file (default: --peer-cert-file).")
    var peerClientCertFile = ""

    @Option(name: .customLong("peer-client-key-file"), help: "Path to an explicit peer client key file (default: --peer-key-file).")
    var peerClientKeyFile = ""

    @Flag(name: .customLong("peer-client-cert-auth"), inversion: .prefixedNo, help: "Enable peer client cert authentication.")
    var peerClientCertAuth = false

    @Option(name: .customLong("peer-trusted-ca-file"), help: "Path to the peer server TLS trusted CA file.")
    var peerTrustedCAFile = ""

    @Flag(name: .customLong("peer-auto-tls"), inversion: .prefixedNo, help: "Peer TLS using generated certificates.")
    var peerAutoTLS = false

    @Option(name: .customLong("peer-crl-file"), help: "Path to the peer certificate revocation list file.")
    var peerCRLFile = ""

    @Option(name: .customLong("peer-cert-allowed-cn"), help: "Comma-separated allowed CNs for inter-peer authentication.")
    var peerCertAllowedCN = ""

    @Option(name: .customLong("peer-cert-allowed-hostname"), help: "Comma-separated allowed TLS hostnames for inter-peer authentication.")
    var peerCertAllowedHostname = ""

    @Flag(
        name: .customLong("peer-skip-client-san-verification"), inversion: .prefixedNo,
        help: "Skip verification of SAN field in client certificate for peer connections.")
    var peerSkipClientSANVerification = false

    @Flag(
        name: .customLong("experimental-peer-skip-client-san-verification"), inversion: .prefixedNo,
        help: "Deprecated: use --peer-skip-client-san-verification.")
    var experimentalPeerSkipClientSANVerification = false

    @Option(name: .customLong("self-signed-cert-validity"), help: "The validity period of the client and peer certificates, unit is year.")
    var selfSignedCertValidity = 1

    @Option(name: .customLong("cipher-suites"), help: "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by BoringSSL).")
    var cipherSuites = ""

    @Option(name: .customLong("cors"), help: "Comma-separated white list of origins for CORS, or cross-origin resource sharing, (empty or * means allow all).")
    var cors = "*"

    @Option(
        name: .customLong("host-whitelist"),
        help: "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all).")
    var hostWhitelist = "*"

    @Option(name: .customLong("tls-min-version"), help: "Minimum TLS version supported by etcd: TLS1.2 or TLS1.3.")
    var tlsMinVersion = "TLS1.2"

    @Option(name: .customLong("tls-max-version"), help: "Maximum TLS version supported by etcd: TLS1.2 or TLS1.3 (empty: the highest the library supports).")
    var tlsMaxVersion = ""

    /// The client and the peer side's settings.
    func tlsInfo() throws(ConfigurationError) -> (client: TLSInfo, peer: TLSInfo) {
        let minimum: TLSProtocolSettings.Version
        let maximum: TLSProtocolSettings.Version?
        do {
            minimum = try TLSProtocolSettings.Version.parse(tlsMinVersion, default: .tls12) ?? .tls12
            maximum = try TLSProtocolSettings.Version.parse(tlsMaxVersion, default: nil)
        } catch {
            throw ConfigurationError(error.description)
        }
        let suites = ServerFlags.list(cipherSuites)
        var client = TLSInfo(side: .client)
        client.certFile = certFile
        client.keyFile = keyFile
        client.clientCertFile = clientCertFile
        client.clientKeyFile = clientKeyFile
        client.trustedCAFile = trustedCAFile
        client.clientCertAuth = clientCertAuth
        client.crlFile = clientCRLFile
        client.autoTLS = autoTLS
        client.allowedHostnames = ServerFlags.list(clientCertAllowedHostname)
        var peer = TLSInfo(side: .peer)
        peer.certFile = peerCertFile
        peer.keyFile = peerKeyFile
        peer.clientCertFile = peerClientCertFile
        peer.clientKeyFile = peerClientKeyFile
        peer.trustedCAFile = peerTrustedCAFile
        peer.clientCertAuth = peerClientCertAuth
        peer.crlFile = peerCRLFile
        peer.autoTLS = peerAutoTLS
        peer.allowedCommonNames = ServerFlags.list(peerCertAllowedCN)
        peer.allowedHostnames = ServerFlags.list(peerCertAllowedHostname)
        peer.skipClientSANVerification = peerSkipClientSANVerification || experimentalPeerSkipClientSANVerification
        // Versions, suites and the self-signed validity apply to both sides, as in etcd.
        func shared(_ info: TLSInfo) -> TLSInfo {
            var info = info
            info.minimumVersion = minimum
            info.maximumVersion = maximum
            info.cipherSuites = suites
            info.selfSignedCertificateValidityYears = selfSignedCertValidity
            return info
        }
        return (shared(client), shared(peer))
    }
}
