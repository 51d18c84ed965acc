/// A leader's pending read-index requests waiting for a quorum to confirm its leadership (thesis §6.4).
struct ReadOnlyRequests {
    struct Pending {
        var request: Message
        /// The commit index when the request arrived: the read may be served once applied reaches it.
        var index: UInt64
        var acks: [NodeID: Bool]
    }

    let option: ReadOnlyOption
    private var pending: [[UInt8]: Pending] = [:]
    /// Contexts in arrival order; an acknowledged heartbeat confirms its context and every earlier one.
    private var queue: [[UInt8]] = []

    init(option: ReadOnlyOption) { self.option = option }

    var lastPendingContext: [UInt8]? { queue.last }

    mutating func add(index: UInt64, request: Message) {
        guard pending[request.context] == nil else { return }
        pending[request.context] = Pending(request: request, index: index, acks: [:])
        queue.append(request.context)
    }

    /// Records `from`'s acknowledgement of the heartbeat carrying `context`; the acks so far, or nil
    /// when the context is unknown.
    mutating func acknowledge(from: NodeID, context: [UInt8]) -> [NodeID: Bool]? {
        guard pending[context] != nil else { return nil }
        pending[context]!.acks[from] = true
        return pending[context]!.acks
    }

    /// Removes and returns the requests confirmed by a quorum acknowledging `context`: it and all before it.
    mutating func confirm(through context: [UInt8]) -> [Pending] {
        guard let position = queue.firstIndex(of: context) else { return [] }
        let confirmed = queue[...position].compactMap { pending.removeValue(forKey: $0) }
        queue.removeFirst(position + 1)
        return confirmed
    }

    mutating func reset() {
        pending.removeAll()
        queue.removeAll()
    }
}
