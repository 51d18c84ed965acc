/// etcd's `--auth-token` value: `simple` (the default) or
/// `jwt,pub-key=<file>,priv-key=<file>,sign-method=<method>,ttl=<duration>`.
package enum AuthTokenOptions: Sendable, Equatable {
    case simple
    case jwt(JWT)

    package struct JWT: Sendable, Equatable {
        package var signMethod: SignMethod
        package var publicKeyPath: String?
        package var privateKeyPath: String?
        /// Seconds a token is valid for (etcd's default: 5 minutes).
        package var ttl: Double = 300

        package init(signMethod: SignMethod, publicKeyPath: String?, privateKeyPath: String?, ttl: Double = 300) {
            self.signMethod = signMethod
            self.publicKeyPath = publicKeyPath
            self.privateKeyPath = privateKeyPath
            self.ttl = ttl
        }
    }

    /// A problem with the option, in etcd's words where etcd has them.
    package struct Failure: Error, CustomStringConvertible, Equatable {
        package let description: String
        init(_ description: String) { self.description = description }
    }

    /// The signing methods etcd accepts, by their JWT names.
    package enum SignMethod: String, Sendable, Equatable, CaseIterable {
        case rs256 = "RS256", rs384 = "RS384", rs512 = "RS512"
        case ps256 = "PS256", ps384 = "PS384", ps512 = "PS512"
        case es256 = "ES256", es384 = "ES384", es512 = "ES512"
        case eddsa = "EdDSA"
        case hs256 = "HS256", hs384 = "HS384", hs512 = "HS512"

        enum Digest {
            case sha256, sha384, sha512
        }

        enum Family {
            case rsa(Digest, pss: Bool)
            case ecdsa(bits: Int)
            case eddsa
            case hmac(Digest)
        }

        var family: Family {
            switch self {
            case .rs256: .rsa(.sha256, pss: false)
            case .rs384: .rsa(.sha384, pss: false)
            case .rs512: .rsa(.sha512, pss: false)
            case .ps256: .rsa(.sha256, pss: true)
            case .ps384: .rsa(.sha384, pss: true)
            case .ps512: .rsa(.sha512, pss: true)
            case .es256: .ecdsa(bits: 256)
            case .es384: .ecdsa(bits: 384)
            case .es512: .ecdsa(bits: 512)
            case .eddsa: .eddsa
            case .hs256: .hmac(.sha256)
            case .hs384: .hmac(.sha384)
            case .hs512: .hmac(.sha512)
            }
        }
    }

    /// Parses the option; `parseDuration` reads Go durations (`5m`, `30s`) into seconds.
    package init(parsing value: String, parseDuration: (String) -> Double?) throws(Failure) {
        let parts = value.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        switch parts.first {
        case "simple" where parts.count == 1:
            self = .simple
            return
        case "jwt":
            break
        default:
            throw Failure("auth: invalid auth options: unknown token type \"\(parts.first ?? "")\" (use simple or jwt)")
        }
        var settings: [String: String] = [:]
        for pair in parts.dropFirst() {
            let keyValue = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard keyValue.count == 2, settings[keyValue[0]] == nil else { throw Failure("auth: invalid auth options") }
            settings[keyValue[0]] = keyValue[1]
        }
        guard let name = settings["sign-method"] else { throw Failure("auth: invalid auth signature method: sign-method is missing") }
        guard let method = SignMethod(rawValue: name) else { throw Failure("auth: invalid auth signature method: \(name)") }
        var jwt = JWT(signMethod: method, publicKeyPath: settings["pub-key"], privateKeyPath: settings["priv-key"])
        if let ttl = settings["ttl"] {
            guard let seconds = parseDuration(ttl), seconds > 0 else { throw Failure("auth: invalid auth options: bad ttl \"\(ttl)\"") }
            jwt.ttl = seconds
        }
        if case .hmac = method.family {
            guard jwt.privateKeyPath != nil else { throw Failure("auth: missing key for \(name)") }
        } else if jwt.privateKeyPath == nil, jwt.publicKeyPath == nil {
            throw Failure("auth: missing key for \(name)")
        }
        self = .jwt(jwt)
    }
}
