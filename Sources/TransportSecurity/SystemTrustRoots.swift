import Foundation
import NIOSSL

/// The CAs a client trusts when it is given none, found as Go finds them on Linux (etcd's
/// `crypto/x509` system pool): `SSL_CERT_FILE` replaces the distribution's bundle file and
/// `SSL_CERT_DIR` (directories separated by `:`) its certificate directories. So a deployment
/// that points etcd at a private CA through those variables works unchanged with swift-etcd.
public enum SystemTrustRoots {
    /// The distribution's bundle files, in the order Go looks for them (the first that exists).
    static let bundleFiles = [
        "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem",
        "/etc/pki/tls/cacert.pem", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/ssl/cert.pem",
    ]
    static let certificateDirectories = ["/etc/ssl/certs", "/etc/pki/tls/certs"]

    /// Sets `configuration`'s trust roots to the system's, as read from `environment`. Without
    /// either variable NIOSSL's default stays (Debian's bundle and `/etc/ssl/certs`, what Go
    /// finds there too). Paths that do not exist are skipped, as Go skips them; when none is
    /// left, nothing is trusted.
    public static func apply(to configuration: inout TLSConfiguration, environment: [String: String] = ProcessInfo.processInfo.environment) {
        let fileOverride = environment["SSL_CERT_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        let directoryOverride = environment["SSL_CERT_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        guard fileOverride != nil || directoryOverride != nil else { return }
        let file = (fileOverride.map { [$0] } ?? bundleFiles).first { isRegularFile($0) }
        var directories = (directoryOverride.map { $0.split(separator: ":").map(String.init) } ?? certificateDirectories)
            .filter(isDirectory)
        if let file {
            configuration.trustRoots = .file(file)
        } else if !directories.isEmpty {
            configuration.trustRoots = .file(directories.removeFirst())
        } else {
            configuration.trustRoots = .certificates([])
        }
        // NIOSSL reads further trust roots as PEM files: a directory's certificates are read
        // here, each file that parses (as Go reads them).
        configuration.additionalTrustRoots = directories.map { .certificates(certificates(in: $0)) }
    }

    static func certificates(in directory: String) -> [NIOSSLCertificate] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.sorted().flatMap { name -> [NIOSSLCertificate] in
            let path = "\(directory)/\(name)"
            guard isRegularFile(path) else { return [] }
            return (try? NIOSSLCertificate.fromPEMFile(path)) ?? []
        }
    }

    private static func isRegularFile(_ path: String) -> Bool {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && !directory.boolValue
    }

    private static func isDirectory(_ path: String) -> Bool {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
    }
}
