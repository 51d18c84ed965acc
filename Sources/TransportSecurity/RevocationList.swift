import SwiftASN1
import X509

/// The serial numbers a certificate revocation list (RFC 5280 `CertificateList`) revokes.
///
/// Like etcd, swift-etcd compares serial numbers only: the list is the operator's own file,
/// read from disk, so its signature is not checked.
struct RevocationList: Sendable, Hashable {
    private(set) var revokedSerials: Set<[UInt8]>

    init(revokedSerials: Set<[UInt8]>) {
        self.revokedSerials = revokedSerials
    }

    /// Parses a PEM (`X509 CRL`) or DER encoded list.
    init(pemOrDER bytes: [UInt8]) throws {
        var der = bytes
        if let text = String(validating: bytes, as: UTF8.self), text.contains("-----BEGIN") {
            let documents = try PEMDocument.parseMultiple(pemString: text)
            guard let document = documents.first(where: { $0.discriminator == "X509 CRL" }) else {
                throw ASN1Error.invalidPEMDocument(reason: "no X509 CRL block")
            }
            der = document.derBytes
        }
        let root = try DER.parse(der)
        guard case .constructed(let parts) = root.content, let tbs = parts.first(where: { _ in true }),
            case .constructed(let fields) = tbs.content
        else { throw ASN1Error.unexpectedFieldType(root.identifier) }
        // TBSCertList: version INTEGER OPTIONAL, signature, issuer, thisUpdate, nextUpdate
        // OPTIONAL, revokedCertificates SEQUENCE OF OPTIONAL, crlExtensions [0] OPTIONAL.
        var serials: Set<[UInt8]> = []
        var remaining = Array(fields)
        if remaining.first?.identifier == .integer { remaining.removeFirst() }
        remaining = Array(remaining.dropFirst(3))  // signature, issuer, thisUpdate
        if let next = remaining.first, next.identifier == .utcTime || next.identifier == .generalizedTime {
            remaining.removeFirst()
        }
        if let revoked = remaining.first, revoked.identifier == .sequence, case .constructed(let entries) = revoked.content {
            for entry in entries {
                guard case .constructed(let entryFields) = entry.content, let serial = entryFields.first(where: { _ in true }),
                    serial.identifier == .integer, case .primitive(let value) = serial.content
                else { throw ASN1Error.unexpectedFieldType(entry.identifier) }
                serials.insert(Self.normalized(value))
            }
        }
        revokedSerials = serials
    }

    /// Whether `certificate`'s serial number is on the list.
    func revokes(_ certificate: Certificate) -> Bool {
        revokedSerials.contains(Self.normalized(certificate.serialNumber.bytes))
    }

    /// The serial's magnitude without leading zero bytes (DER adds one to keep it positive).
    private static func normalized(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        Array(bytes.drop { $0 == 0 })
    }
}
