import Crypto
import Foundation
import Logging
import SwiftASN1
import X509

/// `--auto-tls` and `--peer-auto-tls`: a self-signed certificate made at the first start and
/// kept under the data directory, so a restart presents the same one.
enum SelfSignedCertificate {
    /// The certificate and key in `directory`, made first when either is missing.
    static func ensure(in directory: String, hosts: [String], validityYears: Int, logger: Logger, now: Date = Date())
        throws(TLSSetupError) -> (certFile: String, keyFile: String)
    {
        let certFile = "\(directory)/cert.pem"
        let keyFile = "\(directory)/key.pem"
        let manager = FileManager.default
        if manager.fileExists(atPath: certFile), manager.fileExists(atPath: keyFile) {
            return (certFile, keyFile)
        }
        guard validityYears > 0 else {
            throw TLSSetupError("selfSignedCertValidity is invalid,it should be greater than 0")
        }
        do {
            let key = P256.Signing.PrivateKey()
            let name = try DistinguishedName {
                OrganizationName("etcd")
            }
            var alternativeNames: [GeneralName] = []
            for host in Set(hosts).sorted() {
                if let octets = ipOctets(host) {
                    alternativeNames.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(octets))))
                } else {
                    alternativeNames.append(.dnsName(host))
                }
            }
            let notAfter = now + Double(validityYears) * 365 * 86400
            let certificate = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: now - 60,
                notValidAfter: notAfter, issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    // Its own issuer: clients can trust exactly this certificate (etcdctl --cacert
                    // cert.pem) instead of skipping verification.
                    Critical(KeyUsage(digitalSignature: true, keyEncipherment: true, keyCertSign: true))
                    try ExtendedKeyUsage([.serverAuth, .clientAuth])
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    SubjectAlternativeNames(alternativeNames)
                },
                issuerPrivateKey: .init(key))
            try manager.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try Data(try certificate.serializeAsPEM().pemString.utf8).write(to: URL(fileURLWithPath: certFile))
            guard manager.createFile(atPath: keyFile, contents: Data(key.pemRepresentation.utf8), attributes: [.posixPermissions: 0o600])
            else { throw TLSSetupError("cannot write \(keyFile)") }
        } catch let error as TLSSetupError {
            throw error
        } catch {
            throw TLSSetupError("cannot make a self-signed certificate in \(directory): \(error)")
        }
        logger.info("created self-signed certificate", metadata: [
            "cert-file": "\(certFile)", "key-file": "\(keyFile)", "hosts": "\(hosts)", "validity-years": "\(validityYears)",
        ])
        return (certFile, keyFile)
    }

    /// The address bytes of an IPv4 or IPv6 literal, nil for a host name.
    static func ipOctets(_ host: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}
