import NIOSSL

/// etcd's names for TLS versions and cipher suites (Go's names), mapped onto BoringSSL's.
public enum TLSProtocolSettings {
    /// The values `--tls-min-version` and `--tls-max-version` take.
    public enum Version: String, Sendable, Hashable, CaseIterable {
        case tls12 = "TLS1.2"
        case tls13 = "TLS1.3"

        /// Parses a flag's value; "" means the default.
        public static func parse(_ text: String, default defaultVersion: Version?) throws(TLSSetupError) -> Version? {
            if text.isEmpty { return defaultVersion }
            guard let version = Version(rawValue: text) else {
                throw TLSSetupError("unexpected TLS version \"\(text)\" (must be one of: TLS1.2, TLS1.3)")
            }
            return version
        }

        var nioVersion: TLSVersion {
            switch self {
            case .tls12: .tlsv12
            case .tls13: .tlsv13
            }
        }
    }

    /// The cipher suites etcd accepts by Go's name that BoringSSL implements. TLS 1.3 suites
    /// are accepted but, as in Go, not configurable: TLS 1.3 always offers all three.
    static let cipherSuites: [String: NIOTLSCipher] = [
        "TLS_RSA_WITH_AES_128_CBC_SHA": .TLS_RSA_WITH_AES_128_CBC_SHA,
        "TLS_RSA_WITH_AES_256_CBC_SHA": .TLS_RSA_WITH_AES_256_CBC_SHA,
        "TLS_RSA_WITH_AES_128_GCM_SHA256": .TLS_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_RSA_WITH_AES_256_GCM_SHA384": .TLS_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_AES_128_GCM_SHA256": .TLS_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384": .TLS_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256": .TLS_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": .TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": .TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": .TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": .TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": .TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": .TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": .TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": .TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": .TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        // Go's legacy names for the two above.
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": .TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ]

    /// Suites Go knows (as insecure) that BoringSSL does not implement: refused by name.
    static let unsupportedInsecureSuites: Set<String> = [
        "TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    ]

    private static let tls13Suites: Set<NIOTLSCipher> = [
        .TLS_AES_128_GCM_SHA256, .TLS_AES_256_GCM_SHA384, .TLS_CHACHA20_POLY1305_SHA256,
    ]

    /// The TLS 1.2 suites `names` select (TLS 1.3 names are accepted and left to TLS 1.3).
    static func tls12Suites(_ names: [String]) throws(TLSSetupError) -> [NIOTLSCipher] {
        var suites: [NIOTLSCipher] = []
        for name in names {
            guard let suite = cipherSuites[name] else {
                if unsupportedInsecureSuites.contains(name) {
                    throw TLSSetupError("--cipher-suites: \(name) is an insecure cipher suite swift-etcd does not offer")
                }
                throw TLSSetupError("unexpected TLS cipher suite \"\(name)\"")
            }
            if !tls13Suites.contains(suite) { suites.append(suite) }
        }
        return suites
    }

    /// Checks the version range and cipher suites together, as etcd does before starting.
    public static func validate(minimum: Version, maximum: Version?, cipherSuites: [String]) throws(TLSSetupError) {
        if let maximum, maximum == .tls12, minimum == .tls13 {
            throw TLSSetupError("min version (TLS1.3) is greater than max version (TLS1.2)")
        }
        if !cipherSuites.isEmpty, minimum == .tls13 {
            throw TLSSetupError("cipher suites cannot be configured when only TLS1.3 is enabled")
        }
        _ = try tls12Suites(cipherSuites)
    }

    /// Applies versions and suites to `configuration`.
    static func apply(to configuration: inout TLSConfiguration, from info: TLSInfo) throws(TLSSetupError) {
        configuration.minimumTLSVersion = info.minimumVersion.nioVersion
        configuration.maximumTLSVersion = info.maximumVersion?.nioVersion
        let suites = try tls12Suites(info.cipherSuites)
        if !suites.isEmpty { configuration.cipherSuiteValues = suites }
    }
}

/// A TLS setting that cannot work: names the flag and the file and says what is wrong.
public struct TLSSetupError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
