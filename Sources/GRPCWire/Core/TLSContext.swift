import NIOSSL

extension NIOSSLContext {
    /// A TLS context for gRPC: `tls` with ALPN offering only `h2`.
    static func grpc(_ tls: TLSConfiguration) throws -> NIOSSLContext {
        var tls = tls
        tls.applicationProtocols = ["h2"]
        return try NIOSSLContext(configuration: tls)
    }
}
