import Testing

@testable import GRPCWire

@Suite("ServerStreamStateMachine: every transition")
struct ServerStreamStateMachineTests {
    typealias Machine = ServerStreamStateMachine

    /// A machine whose call is open: the client still sending unless `clientDone`.
    func open(clientDone: Bool = false) -> Machine {
        var machine = Machine()
        _ = machine.receivedHeaders(endStream: clientDone)
        return machine
    }

    @Test func headersOpenTheCall() {
        var machine = Machine()
        let step1 = machine.receivedHeaders(endStream: false)
        #expect(step1 == .openCall)
        #expect(machine.state == .open(clientSending: true, responseHeadersSent: false))
        var ended = Machine()
        let step2 = ended.receivedHeaders(endStream: true)
        #expect(step2 == .openCall)
        #expect(ended.state == .open(clientSending: false, responseHeadersSent: false))
    }

    @Test func trailingHeadersEndTheRequests() {
        var machine = open()
        let step3 = machine.receivedHeaders(endStream: true)
        #expect(step3 == .requestsEnded)
        #expect(machine.state == .open(clientSending: false, responseHeadersSent: false))
    }

    @Test func headersMidRequestWithoutEndStreamAreAViolation() {
        var machine = open()
        let step4 = machine.receivedHeaders(endStream: false)
        #expect(step4 == .protocolViolation)
        #expect(machine.isOpen)
    }

    @Test func dataIsDeliveredAndItsEndStreamHalfCloses() {
        var machine = open()
        let step5 = machine.receivedData(endStream: false)
        #expect(step5 == .deliver(endsRequests: false))
        let step6 = machine.receivedData(endStream: true)
        #expect(step6 == .deliver(endsRequests: true))
        #expect(machine.state == .open(clientSending: false, responseHeadersSent: false))
    }

    @Test func onlyTheFirstUnaryRequestIsDispatched() {
        var machine = open()
        #expect(!machine.unaryRequestDispatched)
        let step7 = machine.receivedUnaryRequest()
        #expect(step7)
        let step8 = machine.receivedUnaryRequest()
        #expect(!step8)
        #expect(machine.unaryRequestDispatched)
    }

    @Test func responseHeadersGoWithTheFirstMessageOnly() {
        var machine = open()
        let step9 = machine.sendingMessage()
        #expect(step9 == .writeHeadersAndMessage)
        let step10 = machine.sendingMessage()
        #expect(step10 == .writeMessage)
        #expect(machine.state == .open(clientSending: true, responseHeadersSent: true))
    }

    @Test func finishingBeforeAnyResponseIsTrailersOnly() {
        var machine = open(clientDone: true)
        let step11 = machine.finishing()
        #expect(step11 == .writeTrailers(trailersOnly: true, thenReset: false))
        #expect(machine.state == .closed)
    }

    @Test func finishingWhileTheClientSendsResetsAfterTheTrailers() {
        var machine = open()
        _ = machine.sendingMessage()
        let step12 = machine.finishing()
        #expect(step12 == .writeTrailers(trailersOnly: false, thenReset: true))
    }

    @Test func aClosedCallIgnoresEverythingAndRefusesMessages() {
        var machine = open()
        _ = machine.finishing()
        let step13 = machine.receivedHeaders(endStream: true)
        #expect(step13 == .ignore)
        let step14 = machine.receivedData(endStream: true)
        #expect(step14 == .ignore)
        let step15 = machine.sendingMessage()
        #expect(step15 == .refuse)
        let step16 = machine.finishing()
        #expect(step16 == .ignore)
        let step17 = machine.cancelled()
        #expect(!step17)
        let step18 = machine.receivedUnaryRequest()
        #expect(!step18)
    }

    @Test func cancellingAnOpenCallTellsTheHandlerOnce() {
        var machine = open()
        let step19 = machine.cancelled()
        #expect(step19)
        #expect(machine.state == .closed)
        let step20 = machine.cancelled()
        #expect(!step20)
        var idle = Machine()
        let step21 = idle.cancelled()
        #expect(!step21)
        #expect(idle.state == .closed)
    }
}
