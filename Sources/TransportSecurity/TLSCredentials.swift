import Foundation
import Locking
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// One side's TLS, live: the contexts a listener and a dialer use, read from the files in a
/// ``TLSInfo`` and read again whenever a file changes, so certificates rotate without a
/// restart (etcd re-reads them at each handshake; a `stat` per new connection is enough).
///
/// A file that fails to load at start stops the start; one that fails to reload (an operator
/// halfway through copying) keeps the previous certificates and is logged once.
public final class TLSCredentials: Sendable {
    public let info: TLSInfo
    /// ALPN protocols the listener offers (`h2` on client listeners).
    private let applicationProtocols: [String]
    let logger: Logger
    private let state: Locked<Loaded>

    /// What one read of the files produced.
    private struct Loaded {
        var stamps: [FileStamp?]
        var server: NIOSSLContext
        var client: NIOSSLContext
        var rules: ConnectionRules
        /// Stamps of files that failed to reload, so the failure is logged once.
        var failedStamps: [FileStamp?]?
    }

    /// Reads and checks every file `info` names; with `--auto-tls` and no files, first makes
    /// a self-signed certificate for `hosts` in `autoTLSDirectory` (or reuses the one there).
    public init(
        _ info: TLSInfo, autoTLSDirectory: String, hosts: [String], applicationProtocols: [String] = [],
        logger: Logger
    ) throws(TLSSetupError) {
        var info = info
        if info.autoTLS {
            if info.certFile.isEmpty && info.keyFile.isEmpty {
                let files = try SelfSignedCertificate.ensure(
                    in: autoTLSDirectory, hosts: hosts, validityYears: info.selfSignedCertificateValidityYears,
                    logger: logger)
                info.certFile = files.certFile
                info.keyFile = files.keyFile
            } else {
                logger.warning("ignoring \(info.flag(.autoTLS)) since certificates were given", metadata: [
                    "cert-file": "\(info.certFile)", "key-file": "\(info.keyFile)",
                ])
                info.autoTLS = false
            }
        }
        try Self.checkFlags(info)
        self.info = info
        self.applicationProtocols = applicationProtocols
        self.logger = logger
        let stamps = Self.stamps(info)
        state = Locked(try Self.load(info, stamps: stamps, applicationProtocols: applicationProtocols))
    }

    /// The settings etcd refuses before reading any file.
    private static func checkFlags(_ info: TLSInfo) throws(TLSSetupError) {
        if info.certFile.isEmpty != info.keyFile.isEmpty {
            let missing = info.certFile.isEmpty ? info.flag(.certFile) : info.flag(.keyFile)
            throw TLSSetupError("\(missing) must be given with \(info.certFile.isEmpty ? info.flag(.keyFile) : info.flag(.certFile))")
        }
        if info.certFile.isEmpty {
            throw TLSSetupError("\(info.flag(.certFile)) and \(info.flag(.keyFile)) (or \(info.flag(.autoTLS))) are required for TLS")
        }
        if info.clientCertFile.isEmpty != info.clientKeyFile.isEmpty {
            throw TLSSetupError("\(info.flag(.clientCertFile)) and \(info.flag(.clientKeyFile)) must be given together")
        }
        if !info.allowedCommonNames.isEmpty && !info.allowedHostnames.isEmpty {
            throw TLSSetupError(
                "AllowedCNs and AllowedHostnames are mutually exclusive (cns=\(info.allowedCommonNames), hostnames=\(info.allowedHostnames))")
        }
        // etcd starts and then refuses every client (its certificates are checked against the
        // system roots); refusing to start says why at once.
        if info.clientCertAuth && info.trustedCAFile.isEmpty && !info.autoTLS {
            throw TLSSetupError("\(info.flag(.clientCertAuth)) requires \(info.flag(.trustedCAFile)): there is no CA to verify client certificates with")
        }
        try TLSProtocolSettings.validate(
            minimum: info.minimumVersion, maximum: info.maximumVersion, cipherSuites: info.cipherSuites)
    }

    /// The context for the next accepted connection, and the checks to run once its handshake is done.
    func serverSide() -> (NIOSSLContext, ConnectionRules) {
        let loaded = current()
        return (loaded.server, loaded.rules)
    }

    /// The context for the next outgoing connection (to a peer).
    func clientSide() -> NIOSSLContext {
        current().client
    }

    private func current() -> Loaded {
        let stamps = Self.stamps(info)
        return state.withLock { loaded in
            guard stamps != loaded.stamps, stamps != loaded.failedStamps else { return loaded }
            do {
                loaded = try Self.load(info, stamps: stamps, applicationProtocols: applicationProtocols)
                logger.info("reloaded TLS certificates", metadata: [
                    "side": "\(info.side.rawValue)", "cert-file": "\(info.certFile)", "trusted-ca-file": "\(info.trustedCAFile)",
                ])
            } catch {
                loaded.failedStamps = stamps
                logger.warning("failed to reload TLS certificates; keeping the previous ones", metadata: [
                    "side": "\(info.side.rawValue)", "error": "\(error)",
                ])
            }
            return loaded
        }
    }

    private static func load(_ info: TLSInfo, stamps: [FileStamp?], applicationProtocols: [String]) throws(TLSSetupError)
        -> Loaded
    {
        let identity = try CertificateFiles.identity(
            certFile: info.certFile, certFlag: info.flag(.certFile), keyFile: info.keyFile, keyFlag: info.flag(.keyFile))
        let clientIdentity =
            info.clientCertFile.isEmpty
            ? identity
            : try CertificateFiles.identity(
                certFile: info.clientCertFile, certFlag: info.flag(.clientCertFile), keyFile: info.clientKeyFile,
                keyFlag: info.flag(.clientKeyFile))
        let roots = info.trustedCAFile.isEmpty ? nil : try CertificateFiles.trustRoots(in: info.trustedCAFile, flag: info.flag(.trustedCAFile))
        let revocations = info.crlFile.isEmpty ? nil : try CertificateFiles.revocationList(in: info.crlFile, flag: info.flag(.crlFile))

        var server = TLSConfiguration.makeServerConfiguration(
            certificateChain: identity.chain.map { .certificate($0) }, privateKey: .privateKey(identity.key))
        if let roots { server.trustRoots = .certificates(roots) }
        // A self-signed certificate with no CA to check others against: as in etcd, nobody is
        // asked for a certificate (auto TLS encrypts; it does not authenticate).
        let selfSignedOnly = info.autoTLS && roots == nil
        server.certificateVerification = info.clientCertAuth && !selfSignedOnly ? .noHostnameVerification : .none
        server.applicationProtocols = applicationProtocols
        try TLSProtocolSettings.apply(to: &server, from: info)

        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = clientIdentity.chain.map { .certificate($0) }
        client.privateKey = .privateKey(clientIdentity.key)
        if let roots { client.trustRoots = .certificates(roots) } else { SystemTrustRoots.apply(to: &client) }
        // Self-signed peers cannot be verified: etcd skips verification with auto TLS too.
        client.certificateVerification = selfSignedOnly ? .none : .fullVerification
        try TLSProtocolSettings.apply(to: &client, from: info)

        let rules = ConnectionRules(
            revocations: revocations, allowedCommonNames: info.allowedCommonNames, allowedHostnames: info.allowedHostnames,
            checksAddressAgainstNames: info.side == .peer && info.clientCertAuth && !selfSignedOnly
                && !info.skipClientSANVerification)
        do {
            return Loaded(
                stamps: stamps, server: try NIOSSLContext(configuration: server), client: try NIOSSLContext(configuration: client),
                rules: rules)
        } catch {
            throw TLSSetupError("\(info.flag(.certFile)): cannot make a TLS context from \(info.certFile): \(error)")
        }
    }

    private static func stamps(_ info: TLSInfo) -> [FileStamp?] {
        [info.certFile, info.keyFile, info.clientCertFile, info.clientKeyFile, info.trustedCAFile, info.crlFile].map(FileStamp.init)
    }
}

/// Enough of a file's `stat` to notice it was replaced or rewritten (a symlink swap, as
/// Kubernetes does for mounted secrets, changes the inode).
struct FileStamp: Hashable, Sendable {
    var device: Int
    var inode: Int
    var size: Int
    var modified: Date

    init?(_ path: String) {
        guard !path.isEmpty, let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return nil }
        device = (attributes[.deviceIdentifier] as? NSNumber)?.intValue ?? 0
        inode = (attributes[.systemFileNumber] as? NSNumber)?.intValue ?? 0
        size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        modified = attributes[.modificationDate] as? Date ?? .distantPast
    }
}
