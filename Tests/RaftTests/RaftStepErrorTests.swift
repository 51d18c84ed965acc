import Testing

@testable import Raft

@Suite("Raft step errors and configuration validation")
struct RaftStepErrorTests {
    @Test(arguments: [MessageType.hup, .beat, .unreachable, .snapshotStatus, .checkQuorum])
    func localMessagesCannotBeStepped(_ type: MessageType) {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        let error = raftError { () throws(RaftError) in try net.nodes[1]!.step(Message(type: type, to: 1, from: 2)) }
        #expect(error == .stepLocalMessage)
        #expect(net.role(1) == .follower)
    }

    @Test func responseFromUnknownPeerIsRefused() {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        net.elect(1)
        let error = raftError { () throws(RaftError) in
            try net.nodes[1]!.step(Message(type: .heartbeatResponse, to: 1, from: 9, term: 1))
        }
        #expect(error == .stepPeerNotFound)
        let appendError = raftError { () throws(RaftError) in
            try net.nodes[1]!.step(Message(type: .appendResponse, to: 1, from: 9, term: 1, index: 1))
        }
        #expect(appendError == .stepPeerNotFound)
    }

    @Test func requestFromUnknownPeerIsHandled() throws {
        var net = RaftTestNetwork(voters: [1, 2, 3])
        try net.nodes[1]!.step(Message(type: .heartbeat, to: 1, from: 9, term: 1))
        #expect(net.lead(1) == 9)
        #expect(net.term(1) == 1)
    }

    static func configError(_ edit: (inout RaftConfig) -> Void) -> RaftConfigError? {
        var config = RaftTestNetwork.config(1, MemoryStorage(voters: [1]))
        edit(&config)
        do {
            _ = try RaftNode(config: config)
            return nil
        } catch {
            return error
        }
    }

    @Test func validConfigIsAccepted() {
        let e1 = Self.configError { _ in }
        #expect(e1 == nil)
    }

    @Test func zeroIDIsRejected() {
        let e2 = Self.configError { $0.id = 0 }
        #expect(e2 == .invalid("cannot use none as id"))
    }

    @Test func electionTickMustExceedHeartbeatTick() {
        let expected = RaftConfigError.invalid("election tick must be greater than heartbeat tick")
        let e3 = Self.configError { $0.electionTick = 1 }
        #expect(e3 == expected)
        let e4 = Self.configError { $0.electionTick = 3; $0.heartbeatTick = 3 }
        #expect(e4 == expected)
    }

    @Test func heartbeatTickMustBePositive() {
        let e5 = Self.configError { $0.heartbeatTick = 0 }
        #expect(e5 == .invalid("heartbeat tick must be greater than 0"))
    }

    @Test func leaseBasedReadsRequireCheckQuorum() {
        let expected = RaftConfigError.invalid("CheckQuorum must be enabled when ReadOnlyOption is ReadOnlyLeaseBased")
        let e6 = Self.configError { $0.readOnlyOption = .leaseBased }
        #expect(e6 == expected)
        let e7 = Self.configError { $0.readOnlyOption = .leaseBased; $0.checkQuorum = true }
        #expect(e7 == nil)
    }

    @Test func inflightLimitsAreValidated() {
        let e8 = Self.configError { $0.maxInflightMessages = 0 }
        #expect(e8 == .invalid("max inflight messages must be greater than 0"))
        let e9 = Self.configError { $0.maxSizePerMessage = 100; $0.maxInflightBytes = 50 }
        #expect(e9 == .invalid("max inflight bytes must be >= max message size"))
    }

    @Test func appliedBeyondCommitIsRejected() {
        let storage = raftTestStorage(voters: [1], terms: [1, 1], hardState: HardState(term: 1, commit: 1))
        var config = RaftTestNetwork.config(1, storage)
        config.applied = 2
        var caught: RaftConfigError?
        do { _ = try RaftNode(config: config) } catch { caught = error }
        #expect(caught == .invalid("applied 2 is out of range [0, 1]"))
    }

    @Test func commitBeyondLastIndexIsRejected() {
        let storage = raftTestStorage(voters: [1], terms: [1], hardState: HardState(term: 1, commit: 3))
        var caught: RaftConfigError?
        do { _ = try RaftNode(config: RaftTestNetwork.config(1, storage)) } catch { caught = error }
        #expect(caught == .invalid("commit 3 is out of range [0, 1]"))
    }
}
