import Foundation
import JWTKit
import Locking
import Synchronization

/// etcd's JWT tokens (`--auth-token jwt,…`): signed claims `username`, `revision` and `exp`, so
/// any member holding the public key verifies a token without asking anyone. A member given only
/// the public key verifies and cannot sign (its logins fail, as etcd's do).
///
/// Verified tokens are remembered until they expire (at most `cacheLimit` of them), so a
/// client's repeated requests cost one signature check, not one per request.
package final class JWTTokens: Sendable {
    /// The claims, named as etcd names them.
    struct Claims: JWTPayload {
        var username: String
        var revision: UInt64
        var exp: ExpirationClaim

        func verify(using algorithm: some JWTAlgorithm) async throws {
            try exp.verifyNotExpired()
        }
    }

    package let options: AuthTokenOptions.JWT
    private let keys: JWTKeyCollection
    private let canSign: Bool
    private let verified = Locked<[String: (identity: AuthIdentity, expires: Date)]>([:])
    private let cacheLimit = 10_000

    private init(options: AuthTokenOptions.JWT, keys: JWTKeyCollection, canSign: Bool) {
        self.options = options
        self.keys = keys
        self.canSign = canSign
    }

    /// Loads the keys `options` names; errors name the file and what is wrong with it.
    package static func load(_ options: AuthTokenOptions.JWT) async throws -> JWTTokens {
        let keys = JWTKeyCollection()
        let method = options.signMethod
        func pem(_ path: String?) throws -> String? {
            guard let path else { return nil }
            do {
                return try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw AuthTokenOptions.Failure("auth: failed to read JWT key file \(path): \(error.localizedDescription)")
            }
        }
        // An HMAC secret is the file's bytes, whatever they are.
        let isHMAC = if case .hmac = method.family { true } else { false }
        let privatePEM = isHMAC ? nil : try pem(options.privateKeyPath)
        let publicPEM = isHMAC ? nil : try pem(options.publicKeyPath)
        do {
            switch method.family {
            case .hmac(let digest):
                guard let path = options.privateKeyPath else { throw AuthTokenOptions.Failure("auth: missing key for \(method.rawValue)") }
                let secret = try Data(contentsOf: URL(fileURLWithPath: path))
                guard secret.count >= digest.minimumSecretBytes else {
                    throw AuthTokenOptions.Failure(
                        "auth: the \(method.rawValue) secret in \(path) has \(secret.count) bytes; it needs at least \(digest.minimumSecretBytes)")
                }
                await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: digest.algorithm)
            case .rsa(let digest, let pss):
                let key: any RSAKey =
                    if let privatePEM { try Insecure.RSA.PrivateKey(pem: privatePEM) } else { try Insecure.RSA.PublicKey(pem: try required(publicPEM, method)) }
                if pss { await keys.add(pss: key, digestAlgorithm: digest.algorithm) } else { await keys.add(rsa: key, digestAlgorithm: digest.algorithm) }
            case .ecdsa(let bits):
                switch bits {
                case 256:
                    let key: any ECDSAKey = if let privatePEM { try ES256PrivateKey(pem: privatePEM) } else { try ES256PublicKey(pem: try required(publicPEM, method)) }
                    await keys.add(ecdsa: key)
                case 384:
                    let key: any ECDSAKey = if let privatePEM { try ES384PrivateKey(pem: privatePEM) } else { try ES384PublicKey(pem: try required(publicPEM, method)) }
                    await keys.add(ecdsa: key)
                default:
                    let key: any ECDSAKey = if let privatePEM { try ES512PrivateKey(pem: privatePEM) } else { try ES512PublicKey(pem: try required(publicPEM, method)) }
                    await keys.add(ecdsa: key)
                }
            case .eddsa:
                let key: any EdDSAKey = if let privatePEM { try EdDSA.PrivateKey(pem: privatePEM) } else { try EdDSA.PublicKey(pem: try required(publicPEM, method)) }
                await keys.add(eddsa: key)
            }
        } catch let failure as AuthTokenOptions.Failure {
            throw failure
        } catch {
            throw AuthTokenOptions.Failure("auth: failed to load the \(method.rawValue) key: \(error)")
        }
        return JWTTokens(options: options, keys: keys, canSign: isHMAC || privatePEM != nil)
    }

    private static func required(_ pem: String?, _ method: AuthTokenOptions.SignMethod) throws -> String {
        guard let pem else { throw AuthTokenOptions.Failure("auth: missing key for \(method.rawValue)") }
        return pem
    }

    /// A token for `identity`, valid for the configured TTL.
    package func sign(_ identity: AuthIdentity) async throws(AuthError) -> String {
        guard canSign else { throw .verifyOnly }
        let expires = Date(timeIntervalSince1970: floor(Date().timeIntervalSince1970) + options.ttl)
        do {
            return try await keys.sign(Claims(username: identity.user, revision: identity.revision, exp: ExpirationClaim(value: expires)))
        } catch {
            throw .verifyOnly
        }
    }

    /// Who a token verified before stands for (nil: not seen, or expired since).
    package func cached(_ token: String, now: Date = Date()) -> AuthIdentity? {
        verified.withLock { cache in
            guard let entry = cache[token] else { return nil }
            guard entry.expires > now else {
                cache[token] = nil
                return nil
            }
            return entry.identity
        }
    }

    /// Verifies a token's signature and expiry; ``AuthError/invalidAuthToken`` for anything else.
    package func verify(_ token: String) async throws(AuthError) -> AuthIdentity {
        let claims: Claims
        do {
            claims = try await keys.verify(token, as: Claims.self)
        } catch {
            throw .invalidAuthToken
        }
        guard !claims.username.isEmpty, claims.revision > 0 else { throw .invalidAuthToken }
        let identity = AuthIdentity(user: claims.username, revision: claims.revision)
        verified.withLock { cache in
            if cache.count >= cacheLimit { cache.removeAll() }
            cache[token] = (identity, claims.exp.value)
        }
        return identity
    }
}

extension AuthTokenOptions.SignMethod.Digest {
    var algorithm: DigestAlgorithm {
        switch self {
        case .sha256: .sha256
        case .sha384: .sha384
        case .sha512: .sha512
        }
    }

    /// HMAC secrets shorter than the digest are refused (jwt-kit asserts on them).
    var minimumSecretBytes: Int {
        switch self {
        case .sha256: 32
        case .sha384: 48
        case .sha512: 64
        }
    }
}
