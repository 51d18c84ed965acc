import Dispatch
import Foundation
import Logging
import NIOCore
import NIOSSL
import NIOTLS
import SwiftASN1
import X509

extension TLSCredentials {
    /// Puts TLS first in an accepted connection's pipeline, with a deadline for the handshake
    /// and this side's checks once it is done. A connection that fails either is closed and
    /// logged ("rejected connection") without touching any other.
    public func secureAccepted(_ channel: any Channel, handshakeTimeout: TimeAmount) throws {
        let (context, rules) = serverSide()
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(NIOSSLServerHandler(context: context))
        try pipeline.addHandler(
            TLSConnectionGuard(rules: rules, handshakeTimeout: handshakeTimeout, side: info.side, logger: logger))
    }

    /// Puts TLS first in an outgoing connection's pipeline (a member dialing a peer at `host`).
    public func secureOutgoing(_ channel: any Channel, host: String) throws {
        try channel.pipeline.syncOperations.addHandler(
            NIOSSLClientHandler(context: clientSide(), serverHostname: serverNameIndication(for: host)))
    }
}

/// The name a client sends in TLS's SNI and checks the server's certificate against: `host`
/// itself, or nil for an IP address (SNI carries names only; NIOSSL then checks the
/// certificate against the address it connected to).
public func serverNameIndication(for host: String) -> String? {
    let isAddress = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
    return isAddress ? nil : host
}

/// Watches one accepted TLS connection until it may be used: closes it when the handshake
/// takes too long (a client that connects and sends nothing must not hold a connection
/// forever), when the handshake fails, or when the peer's certificate breaks a
/// ``ConnectionRules`` check. Until then it holds back what arrives; once the connection is
/// accepted it passes that on and leaves the pipeline.
final class TLSConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private enum State {
        case handshaking
        case checking
        case accepted
        case refused
    }

    private let rules: ConnectionRules
    private let handshakeTimeout: TimeAmount
    private let side: TLSInfo.Side
    private let logger: Logger
    private var state = State.handshaking
    private var heldReads: [NIOAny] = []
    private var heldEvent: Any?
    private var deadline: Scheduled<Void>?

    init(rules: ConnectionRules, handshakeTimeout: TimeAmount, side: TLSInfo.Side, logger: Logger) {
        self.rules = rules
        self.handshakeTimeout = handshakeTimeout
        self.side = side
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startDeadline(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startDeadline(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    private func startDeadline(context: ChannelHandlerContext) {
        guard deadline == nil else { return }
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout) { [self] in
            guard state == .handshaking || state == .checking else { return }
            refuse(context: context, reason: "TLS handshake did not complete within \(handshakeTimeout)")
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .accepted: context.fireChannelRead(data)
        case .handshaking, .checking: heldReads.append(data)
        case .refused: break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if state == .accepted { context.fireChannelReadComplete() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard state == .handshaking, let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent else {
            return context.fireUserInboundEventTriggered(event)
        }
        heldEvent = event
        if rules.isEmpty { return accept(context: context) }
        let peerCertificate = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self).peerCertificate
        let leaf = peerCertificate.flatMap { try? Certificate(derEncoded: $0.toDERBytes()) }
        let remoteIP = context.channel.remoteAddress?.ipAddress
        guard rules.mayResolveNames else {
            return decide(rules.rejection(of: leaf, remoteIP: remoteIP), context: context)
        }
        // Name lookups block: they run off the event loop, and the connection waits.
        state = .checking
        let rules = rules
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        DispatchQueue.global().async {
            let rejection = rules.rejection(of: leaf, remoteIP: remoteIP)
            loopBound.eventLoop.execute {
                let (guardHandler, context) = loopBound.value
                guardHandler.decide(rejection, context: context)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard state == .accepted else {
            return refuse(context: context, reason: Self.reason(error))
        }
        context.fireErrorCaught(error)
    }

    private func decide(_ rejection: String?, context: ChannelHandlerContext) {
        guard state != .refused else { return }
        if let rejection {
            refuse(context: context, reason: rejection)
        } else {
            accept(context: context)
        }
    }

    private func accept(context: ChannelHandlerContext) {
        state = .accepted
        deadline?.cancel()
        if let heldEvent { context.fireUserInboundEventTriggered(heldEvent) }
        heldEvent = nil
        let reads = heldReads
        heldReads = []
        for read in reads { context.fireChannelRead(read) }
        if !reads.isEmpty { context.fireChannelReadComplete() }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func refuse(context: ChannelHandlerContext, reason: String) {
        guard state != .refused else { return }
        state = .refused
        deadline?.cancel()
        heldReads = []
        logger.warning("rejected connection on \(side.rawValue) endpoint", metadata: [
            "remote-addr": "\(context.channel.remoteAddress?.hostAndPort ?? "")", "error": "\(reason)",
        ])
        context.close(promise: nil)
    }

    /// A handshake failure as an operator reads it: BoringSSL's reason, not its source location.
    static func reason(_ error: any Error) -> String {
        let text = "\(error)"
        guard let marker = text.range(of: "OPENSSL_internal:") else { return text }
        let code = text[marker.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }
        switch code {
        case "WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST":
            return "tls: first record does not look like a TLS handshake (\(code))"
        case "CERTIFICATE_VERIFY_FAILED":
            return "tls: failed to verify client certificate (\(code))"
        case "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return "tls: client didn't provide a certificate (\(code))"
        default:
            return "tls: handshake failed (\(code))"
        }
    }

}

extension SocketAddress {
    /// `ip:port` (`[ip]:port` for IPv6) as etcd logs a remote address; a socket's path otherwise.
    public var hostAndPort: String {
        guard let ip = ipAddress, let port else { return pathname ?? "\(self)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}
