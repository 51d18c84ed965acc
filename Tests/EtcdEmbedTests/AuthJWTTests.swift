import Auth
import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf
import Testing
import TestSupport

@testable import EtcdEmbed

/// `--auth-token jwt,…`: every signing method etcd offers, with keys made by openssl.
@Suite("Auth with JWT tokens", .server, .serialized)
struct AuthJWTTests {
    /// Makes a key pair (or an HMAC secret) for `method` with openssl; returns (private, public).
    static func keys(_ method: AuthTokenOptions.SignMethod, in directory: URL) async throws -> (String, String?) {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let key = directory.appendingPathComponent("\(method.rawValue).key").path
        let pub = directory.appendingPathComponent("\(method.rawValue).pub").path
        func openssl(_ arguments: [String]) async throws {
            let run = try await runTool(URL(fileURLWithPath: "/usr/bin/openssl"), arguments)
            guard run.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: run.output]) }
        }
        switch method.rawValue.prefix(2) {
        case "HS":
            try Data((0..<64).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: key))
            return (key, nil)
        case "RS", "PS": try await openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key])
        case "Ed": try await openssl(["genpkey", "-algorithm", "ed25519", "-out", key])
        default:
            let curve = ["ES256": "prime256v1", "ES384": "secp384r1", "ES512": "secp521r1"][method.rawValue]!
            try await openssl(["ecparam", "-name", curve, "-genkey", "-noout", "-out", key])
        }
        try await openssl(["pkey", "-in", key, "-pubout", "-out", pub])
        return (key, pub)
    }

    static func login(_ endpoint: String, _ user: String, _ password: String) async throws -> String {
        let client = try EtcdClient(endpoints: [endpoint])
        defer { Task { await client.close() } }
        return try await client.call(Etcdserverpb_AuthRPCs.authenticate, .with { $0.name = user; $0.password = password }).token
    }

    /// The claims of a token, decoded (not verified).
    static func claims(_ token: String) throws -> [String: Any] {
        var payload = String(token.split(separator: ".")[1]).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while payload.count % 4 != 0 { payload += "=" }
        return try JSONSerialization.jsonObject(with: Data(base64Encoded: payload)!) as! [String: Any]
    }

    @Test(arguments: AuthTokenOptions.SignMethod.allCases)
    func everySigningMethodIssuesAndChecksTokens(method: AuthTokenOptions.SignMethod) async throws {
        let keyDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("jwt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: keyDirectory) }
        let (privateKey, publicKey) = try await Self.keys(method, in: keyDirectory)
        let fixture = try await AuthFixture.start {
            $0.authToken = .jwt(.init(signMethod: method, publicKeyPath: publicKey, privateKeyPath: privateKey, ttl: 60))
        }
        try await fixture.addUser("alice", roles: ["app": [Authpb_Permission.on("/app/", rangeEnd: Array("/app0".utf8), .readwrite)]])
        let token = try await Self.login(fixture.endpoint, "alice", "pw-alice")
        let header = try Self.claims(token.split(separator: ".").first.map { "x.\($0)" }!)
        #expect(header["alg"] as? String == method.rawValue)
        let claims = try Self.claims(token)
        #expect(claims["username"] as? String == "alice")
        let status = try await fixture.root.call(Etcdserverpb_AuthRPCs.authStatus, .init())
        #expect((claims["revision"] as? NSNumber)?.uint64Value == status.authRevision)
        let expires = (claims["exp"] as? NSNumber)?.doubleValue ?? 0
        #expect(abs(expires - Date().timeIntervalSince1970 - 60) < 5)

        let errors = AuthErrorTests()
        #expect(try await errors.get("/app/x", token: token, fixture).get().count == 0)
        #expect(await errors.get("/other", token: token, fixture).failure == AuthErrorTests.denied)
        // A flipped signature character, a swapped payload, garbage: refused.
        var tampered = Array(token)
        tampered[tampered.count - 3] = tampered[tampered.count - 3] == "A" ? "B" : "A"
        let otherPayload = try await Self.login(fixture.endpoint, "root", "root").split(separator: ".")[1]
        let parts = token.split(separator: ".")
        for forged in [String(tampered), "\(parts[0]).\(otherPayload).\(parts[2])", "a.b.c", token + "x"] {
            #expect(await errors.get("/app/x", token: forged, fixture).failure == AuthErrorTests.invalidToken, "\(forged)")
        }
        // After an auth change the token is stale; the client logs in again by itself.
        _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = "unrelated" })
        #expect(await errors.get("/app/x", token: token, fixture).failure == AuthErrorTests.oldRevision)
        let alice = try fixture.client("alice")
        try await alice.put("/app/y", "1")
        await alice.close()
        await fixture.stop()
    }

    @Test func aMemberWithOnlyThePublicKeyVerifiesButCannotSign() async throws {
        let keyDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("jwt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: keyDirectory) }
        let (privateKey, publicKey) = try await Self.keys(.es256, in: keyDirectory)
        let signer = try await AuthFixture.start {
            $0.authToken = .jwt(.init(signMethod: .es256, publicKeyPath: publicKey, privateKeyPath: privateKey))
        }
        let verifier = try await AuthFixture.start {
            $0.authToken = .jwt(.init(signMethod: .es256, publicKeyPath: publicKey, privateKeyPath: nil))
        }
        let refused = await Result { try await Self.login(verifier.endpoint, "root", "root") }
        #expect((refused.failure as? EtcdClientError) == EtcdClientError(code: .unknown, message: "auth: token signing attempted with verify-only key"))
        // Both members went through the same changes, so a token of one is current on the other.
        let token = try await Self.login(signer.endpoint, "root", "root")
        #expect(try await AuthErrorTests().get("/any", token: token, verifier).get().count == 0)
        await signer.stop()
        await verifier.stop()
    }

    @Test func unusableKeysStopTheStartNamingTheFile() async throws {
        let keyDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("jwt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: keyDirectory) }
        let (privateKey, _) = try await Self.keys(.es256, in: keyDirectory)
        let missing = keyDirectory.appendingPathComponent("missing.pem").path
        await #expect(throws: (any Error).self) {
            _ = try await AuthFixture.start { $0.authToken = .jwt(.init(signMethod: .rs256, publicKeyPath: nil, privateKeyPath: privateKey)) }
        }
        do {
            _ = try await AuthFixture.start { $0.authToken = .jwt(.init(signMethod: .es256, publicKeyPath: nil, privateKeyPath: missing)) }
            Issue.record("started with a missing key file")
        } catch {
            #expect("\(error)".contains(missing), "\(error)")
        }
        // An HMAC secret shorter than its digest.
        let short = keyDirectory.appendingPathComponent("short").path
        try Data(repeating: 7, count: 8).write(to: URL(fileURLWithPath: short))
        do {
            _ = try await AuthFixture.start { $0.authToken = .jwt(.init(signMethod: .hs256, publicKeyPath: nil, privateKeyPath: short)) }
            Issue.record("started with an 8-byte HS256 secret")
        } catch {
            #expect("\(error)".contains("needs at least 32"), "\(error)")
        }
    }
}
