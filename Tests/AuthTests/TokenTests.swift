import Foundation
import Testing

@testable import Auth

@Suite("Tokens and passwords")
struct TokenTests {
    @Test func simpleTokensLapseWithoutUseAndAreRenewedByUse() {
        let tokens = SimpleTokens(ttl: .seconds(10))
        let start = ContinuousClock.now
        let alice = AuthIdentity(user: "alice", revision: 3)
        tokens.register("t.1", for: alice, now: start)
        #expect(tokens.identity(of: "t.1", now: start + .seconds(9)) == alice)
        // Used at 9 s: good until 19 s.
        #expect(tokens.identity(of: "t.1", now: start + .seconds(18)) == alice)
        #expect(tokens.identity(of: "t.1", now: start + .seconds(29)) == nil)
        #expect(tokens.identity(of: "unknown", now: start) == nil)
    }

    @Test func removingAUsersTokensLeavesOthers() {
        let tokens = SimpleTokens(ttl: .seconds(300))
        tokens.register("a.1", for: AuthIdentity(user: "alice", revision: 1))
        tokens.register("b.2", for: AuthIdentity(user: "bob", revision: 1))
        tokens.remove(user: "alice")
        #expect(tokens.identity(of: "a.1") == nil)
        #expect(tokens.identity(of: "b.2")?.user == "bob")
        tokens.removeAll()
        #expect(tokens.identity(of: "b.2") == nil)
    }

    @Test func randomPrefixesAreSixteenLetters() {
        let prefix = SimpleTokens.randomPrefix()
        #expect(prefix.count == 16)
        #expect(prefix.allSatisfy { $0.isLetter })
        #expect(prefix != SimpleTokens.randomPrefix())
    }

    @Test func passwordsHashAndVerifyOffTheCallersThread() async {
        let hasher = PasswordHasher(cost: 4)
        let hash = await withCheckedContinuation { continuation in hasher.hash("secret") { continuation.resume(returning: $0) } }
        #expect(hash?.hasPrefix("$2b$04$") == true)
        let good = await withCheckedContinuation { continuation in hasher.verify("secret", hash: hash!) { continuation.resume(returning: $0) } }
        let bad = await withCheckedContinuation { continuation in hasher.verify("Secret", hash: hash!) { continuation.resume(returning: $0) } }
        #expect(good == true)
        #expect(bad == false)
        // A hash made by Go's bcrypt ($2a$), as etcd stores them.
        let go = "$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga"
        let fromGo = await withCheckedContinuation { continuation in hasher.verify("allmine", hash: go) { continuation.resume(returning: $0) } }
        #expect(fromGo == true)
    }

    @Test func aFullPoolRefusesInsteadOfQueueingWithoutBound() async {
        let hasher = PasswordHasher(cost: 12, threads: 1, maximumWaiting: 1)
        let (first, done) = AsyncStream<String?>.makeStream()
        // The first job takes the only slot as it is handed over (a cost-12 hash runs for a
        // good fraction of a second): the second is refused at once.
        hasher.hash("a") { hash in
            done.yield(hash)
            done.finish()
        }
        let second = await withCheckedContinuation { continuation in hasher.hash("b") { continuation.resume(returning: $0) } }
        #expect(second == nil)
        var results = first.makeAsyncIterator()
        #expect(await results.next()??.hasPrefix("$2b$12$") == true)
    }

    @Test func authTokenOptionsParseAsEtcdsDo() throws {
        let seconds: (String) -> Double? = { $0 == "5m" ? 300 : $0 == "30s" ? 30 : nil }
        #expect(try AuthTokenOptions(parsing: "simple", parseDuration: seconds) == .simple)
        let jwt = try AuthTokenOptions(parsing: "jwt,pub-key=a.pub,priv-key=a.key,sign-method=RS256,ttl=30s", parseDuration: seconds)
        #expect(jwt == .jwt(.init(signMethod: .rs256, publicKeyPath: "a.pub", privateKeyPath: "a.key", ttl: 30)))
        #expect(throws: AuthTokenOptions.Failure("auth: invalid auth signature method: RS999")) {
            try AuthTokenOptions(parsing: "jwt,priv-key=a,sign-method=RS999", parseDuration: seconds)
        }
        #expect(throws: AuthTokenOptions.Failure("auth: missing key for ES256")) {
            try AuthTokenOptions(parsing: "jwt,sign-method=ES256", parseDuration: seconds)
        }
        #expect(throws: AuthTokenOptions.Failure("auth: invalid auth options")) {
            try AuthTokenOptions(parsing: "jwt,priv-key", parseDuration: seconds)
        }
        #expect(throws: (any Error).self) { try AuthTokenOptions(parsing: "bogus", parseDuration: seconds) }
    }
}
