import Dispatch

#if canImport(Glibc)
import Glibc
#endif

/// For server executables: suspends until the process receives SIGTERM or SIGINT, which then
/// no longer end the process by themselves, so the caller can shut down gracefully.
public func waitForTerminationSignal() async {
    let (signals, continuation) = AsyncStream<Int32>.makeStream()
    let sources = [SIGTERM, SIGINT].map { signalNumber in
        signal(signalNumber, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
        source.setEventHandler { continuation.yield(signalNumber) }
        source.resume()
        return source
    }
    for await _ in signals { break }
    for source in sources { source.cancel() }
}
