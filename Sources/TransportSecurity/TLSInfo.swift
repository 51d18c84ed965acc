/// One side's TLS settings as etcd's flags give them: the client side (`--cert-file`,
/// `--key-file`, …) or the peer side (`--peer-cert-file`, …). Files are named, not loaded:
/// ``TLSCredentials`` reads them, checks them and reads them again when they change.
public struct TLSInfo: Sendable, Hashable {
    /// Which listener the settings are for; it decides the flag names used in errors and logs.
    public enum Side: String, Sendable, Hashable {
        case client
        case peer
    }

    public var side: Side
    /// `--cert-file`: the server certificate (PEM; a chain may follow the leaf).
    public var certFile = ""
    /// `--key-file`: the certificate's private key (PEM).
    public var keyFile = ""
    /// `--client-cert-file` / `--peer-client-cert-file`: the certificate presented when this
    /// member connects as a client (to its peers); the server certificate when empty.
    public var clientCertFile = ""
    public var clientKeyFile = ""
    /// `--trusted-ca-file`: the CAs that sign the certificates the other side presents.
    public var trustedCAFile = ""
    /// `--client-cert-auth`: every connection must present a certificate signed by a trusted CA.
    public var clientCertAuth = false
    /// `--client-crl-file`: certificates listed in this revocation list are refused.
    public var crlFile = ""
    /// `--peer-cert-allowed-cn`: when set, a connecting peer's certificate must carry one of these common names.
    public var allowedCommonNames: [String] = []
    /// `--peer-cert-allowed-hostname` (`--client-cert-allowed-hostname` on the client side): when
    /// set, a connecting peer's (client's) certificate must be valid for one of these names.
    public var allowedHostnames: [String] = []
    /// `--experimental-peer-skip-client-san-verification`: do not check a connecting peer's
    /// address against its certificate's subject alternative names.
    public var skipClientSANVerification = false
    /// `--cipher-suites`: etcd's (Go's) names; empty means the library's secure defaults.
    public var cipherSuites: [String] = []
    /// `--tls-min-version` / `--tls-max-version`.
    public var minimumVersion = TLSProtocolSettings.Version.tls12
    public var maximumVersion: TLSProtocolSettings.Version?
    /// `--auto-tls`: make a self-signed certificate under the data directory when no files are given.
    public var autoTLS = false
    /// `--self-signed-cert-validity`: years the self-signed certificate is valid.
    public var selfSignedCertificateValidityYears = 1

    public init(side: Side) {
        self.side = side
    }

    /// Whether any TLS is configured for this side (files or auto TLS).
    public var isConfigured: Bool {
        !certFile.isEmpty || !keyFile.isEmpty || !trustedCAFile.isEmpty || autoTLS
    }

    /// The settings that name files or switch TLS on, for naming their flag.
    public enum Setting: String, Sendable {
        case certFile = "cert-file"
        case keyFile = "key-file"
        case clientCertFile = "client-cert-file"
        case clientKeyFile = "client-key-file"
        case trustedCAFile = "trusted-ca-file"
        case clientCertAuth = "client-cert-auth"
        case crlFile = "crl-file"
        case autoTLS = "auto-tls"
    }

    /// The flag for `setting` on this side: `--cert-file` or `--peer-cert-file`,
    /// `--client-crl-file` or `--peer-crl-file`.
    public func flag(_ setting: Setting) -> String {
        switch (side, setting) {
        case (.client, .crlFile): "--client-crl-file"
        case (.client, _): "--\(setting.rawValue)"
        case (.peer, _): "--peer-\(setting.rawValue)"
        }
    }
}
