import Foundation
import NIOSSL
import SwiftASN1
import X509

/// What a listener checks about the certificate a connection presented once the handshake has
/// verified its chain: etcd's revocation list, allowed common names and host names, and (on
/// the peer listener) that the peer connects from an address its certificate names.
struct ConnectionRules: Sendable {
    var revocations: RevocationList?
    var allowedCommonNames: [String]
    var allowedHostnames: [String]
    /// The address check etcd makes on peer connections unless
    /// `--experimental-peer-skip-client-san-verification` is set.
    var checksAddressAgainstNames: Bool

    /// Whether there is anything to check.
    var isEmpty: Bool {
        revocations == nil && allowedCommonNames.isEmpty && allowedHostnames.isEmpty && !checksAddressAgainstNames
    }

    /// Whether a check may look names up in DNS (and so should not run on an event loop).
    var mayResolveNames: Bool { checksAddressAgainstNames }

    /// nil to accept the connection, else why it is refused. `resolve` gives a DNS name's
    /// addresses, as text.
    func rejection(of leaf: Certificate?, remoteIP: String?, resolve: (String) -> [String] = Self.addresses) -> String? {
        guard let leaf else {
            // No certificate: only possible when none is required, and then there is nothing to check.
            return allowedCommonNames.isEmpty && allowedHostnames.isEmpty ? nil : "no client certificate presented"
        }
        if let revocations, revocations.revokes(leaf) {
            let serial = leaf.serialNumber.bytes.drop { $0 == 0 }.map { String($0, radix: 16) }
            let hex = serial.enumerated().map { $0.offset == 0 || $0.element.count == 2 ? $0.element : "0" + $0.element }.joined()
            return "transport: certificate serial \(hex) revoked"
        }
        if !allowedCommonNames.isEmpty {
            let names = Self.commonNames(of: leaf)
            guard names.contains(where: allowedCommonNames.contains) else {
                return "CommonName authentication failed: \(names.first.map { "\"\($0)\"" } ?? "no common name") is not one of \(allowedCommonNames)"
            }
        }
        if !allowedHostnames.isEmpty {
            guard allowedHostnames.contains(where: { Self.certificate(leaf, isValidFor: $0) }) else {
                return "hostname authentication failed: the certificate is not valid for any of \(allowedHostnames)"
            }
        }
        if checksAddressAgainstNames, let remoteIP {
            return addressRejection(of: leaf, remoteIP: remoteIP, resolve: resolve)
        }
        return nil
    }

    /// etcd's check: the remote address must be one of the certificate's IP addresses, or one
    /// of its DNS names must resolve to it; a certificate naming neither is accepted.
    private func addressRejection(of leaf: Certificate, remoteIP: String, resolve: (String) -> [String]) -> String? {
        var ipAddresses: [String] = []
        var dnsNames: [String] = []
        for name in (try? leaf.extensions.subjectAlternativeNames) ?? nil ?? SubjectAlternativeNames() {
            switch name {
            case .ipAddress(let octets): ipAddresses.append(Self.text(ipOctets: Array(octets.bytes)))
            case .dnsName(let dnsName): dnsNames.append(dnsName)
            default: break
            }
        }
        if ipAddresses.isEmpty && dnsNames.isEmpty { return nil }
        if ipAddresses.contains(remoteIP) { return nil }
        if dnsNames.contains(where: { resolve($0).contains(remoteIP) }) { return nil }
        return "remote address \(remoteIP) is not in the certificate's subject alternative names (IP \(ipAddresses), DNS \(dnsNames))"
    }

    static func commonNames(of certificate: Certificate) -> [String] {
        certificate.subject.flatMap { $0 }.filter { $0.type == .RDNAttributeType.commonName }.map { String(describing: $0.value) }
    }

    /// Whether `certificate` is valid for the host name or IP address `host`, by its subject
    /// alternative names (a `*.` wildcard covers one label), as Go's `VerifyHostname` decides.
    static func certificate(_ certificate: Certificate, isValidFor host: String) -> Bool {
        let names = (try? certificate.extensions.subjectAlternativeNames) ?? nil ?? SubjectAlternativeNames()
        if let octets = SelfSignedCertificate.ipOctets(host) {
            return names.contains { name in
                if case .ipAddress(let address) = name { return Array(address.bytes) == octets }
                return false
            }
        }
        let wanted = host.lowercased().split(separator: ".", omittingEmptySubsequences: false)
        return names.contains { name in
            guard case .dnsName(let dnsName) = name else { return false }
            let pattern = dnsName.lowercased().split(separator: ".", omittingEmptySubsequences: false)
            guard pattern.count == wanted.count else { return false }
            return zip(pattern, wanted).enumerated().allSatisfy { index, pair in
                pair.0 == pair.1 || (index == 0 && pair.0 == "*" && !pair.1.isEmpty)
            }
        }
    }

    private static func text(ipOctets octets: [UInt8]) -> String {
        if octets.count == 4 { return octets.map(String.init).joined(separator: ".") }
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: octets.prefix(16)) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)) != nil else { return "" }
        return Self.string(buffer)
    }

    private static func string(_ characters: [CChar]) -> String {
        String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A DNS name's addresses (blocking: call off the event loops).
    static func addresses(of name: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &result) == 0 else { return [] }
        defer { freeaddrinfo(result) }
        var addresses: [String] = []
        var cursor = result
        while let entry = cursor {
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 {
                addresses.append(Self.string(host))
            }
            cursor = entry.pointee.ai_next
        }
        return addresses
    }
}

/// The user name a client certificate stands for.
package enum ClientCertificateName {
    /// The first common name of the certificate's subject (etcd's user for `--client-cert-auth`).
    package static func commonName(of certificate: NIOSSLCertificate) -> String? {
        guard let parsed = try? Certificate(derEncoded: certificate.toDERBytes()) else { return nil }
        return ConnectionRules.commonNames(of: parsed).first
    }
}
