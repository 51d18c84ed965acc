import Foundation
import NIOSSL
import SwiftASN1
import X509

/// A certificate chain and its key, read from PEM files and checked: the pair a TLS context
/// presents.
struct CertificateIdentity {
    var chain: [NIOSSLCertificate]
    var key: NIOSSLPrivateKey
    /// The leaf, parsed, for the checks and for logging.
    var leaf: Certificate
}

/// Reads the PEM files etcd's TLS flags name, and says by flag and file what is wrong with them.
enum CertificateFiles {
    /// Reads `certFile` (leaf first, then any intermediates) and `keyFile`, and checks that the
    /// key belongs to the leaf and that the leaf is valid now.
    static func identity(certFile: String, certFlag: String, keyFile: String, keyFlag: String, now: Date = Date())
        throws(TLSSetupError) -> CertificateIdentity
    {
        let certificates = try certificates(in: certFile, flag: certFlag)
        let leaf = certificates[0].parsed
        let keyText = try read(keyFile, flag: keyFlag)
        let keyDocument: PEMDocument
        do {
            let documents = try PEMDocument.parseMultiple(pemString: keyText)
            guard let document = documents.first(where: { $0.discriminator.hasSuffix("PRIVATE KEY") }) else {
                throw TLSSetupError("\(keyFlag): \(keyFile) holds no PEM private key")
            }
            keyDocument = document
        } catch let error as TLSSetupError {
            throw error
        } catch {
            throw TLSSetupError("\(keyFlag): \(keyFile) is not a PEM private key: \(error)")
        }
        let key: NIOSSLPrivateKey
        do {
            let parsedKey = try Certificate.PrivateKey(pemDocument: keyDocument)
            guard parsedKey.publicKey == leaf.publicKey else {
                throw TLSSetupError("\(keyFlag): the private key in \(keyFile) does not match the certificate in \(certFile)")
            }
            key = try NIOSSLPrivateKey(bytes: Array(keyDocument.pemString.utf8), format: .pem)
        } catch let error as TLSSetupError {
            throw error
        } catch {
            throw TLSSetupError("\(keyFlag): cannot use the private key in \(keyFile): \(error)")
        }
        try checkValidity(leaf, file: certFile, flag: certFlag, now: now)
        return CertificateIdentity(chain: certificates.map(\.nio), key: key, leaf: leaf)
    }

    /// The CA certificates in `file`; at least one.
    static func trustRoots(in file: String, flag: String) throws(TLSSetupError) -> [NIOSSLCertificate] {
        try certificates(in: file, flag: flag).map(\.nio)
    }

    /// The revocation list in `file` (PEM or DER).
    static func revocationList(in file: String, flag: String) throws(TLSSetupError) -> RevocationList {
        let bytes: [UInt8]
        do {
            bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
        } catch {
            throw TLSSetupError("\(flag): cannot read \(file): \(reason(error))")
        }
        do {
            return try RevocationList(pemOrDER: bytes)
        } catch {
            throw TLSSetupError("\(flag): \(file) is not a certificate revocation list: \(error)")
        }
    }

    private static func certificates(in file: String, flag: String) throws(TLSSetupError)
        -> [(parsed: Certificate, nio: NIOSSLCertificate)]
    {
        let text = try read(file, flag: flag)
        do {
            let documents = try PEMDocument.parseMultiple(pemString: text).filter { $0.discriminator == "CERTIFICATE" }
            guard !documents.isEmpty else { throw TLSSetupError("\(flag): \(file) holds no PEM certificate") }
            return try documents.map { document in
                (try Certificate(derEncoded: document.derBytes), try NIOSSLCertificate(bytes: document.derBytes, format: .der))
            }
        } catch let error as TLSSetupError {
            throw error
        } catch {
            throw TLSSetupError("\(flag): \(file) holds no usable PEM certificate: \(error)")
        }
    }

    private static func checkValidity(_ certificate: Certificate, file: String, flag: String, now: Date) throws(TLSSetupError) {
        if certificate.notValidAfter < now {
            throw TLSSetupError("\(flag): the certificate in \(file) expired at \(certificate.notValidAfter)")
        }
        if certificate.notValidBefore > now {
            throw TLSSetupError("\(flag): the certificate in \(file) is not valid before \(certificate.notValidBefore)")
        }
    }

    private static func read(_ file: String, flag: String) throws(TLSSetupError) -> String {
        do {
            return try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw TLSSetupError("\(flag): cannot read \(file): \(reason(error))")
        }
    }

    /// The operating system's reason ("No such file or directory"), not Foundation's wrapping.
    private static func reason(_ error: any Error) -> String {
        let nsError = error as NSError
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if nsError.domain == NSCocoaErrorDomain {
            switch nsError.code {
            case NSFileReadNoSuchFileError: return String(cString: strerror(ENOENT))
            case NSFileReadNoPermissionError: return String(cString: strerror(EACCES))
            default: break
            }
        }
        return nsError.localizedDescription
    }
}
