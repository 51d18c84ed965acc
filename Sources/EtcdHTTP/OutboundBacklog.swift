/// Bytes of a streamed answer handed to its connection and not yet written to the socket. A
/// reader that lets more than `limit` pile up is disconnected, so one slow client cannot hold
/// an unbounded amount of memory.
struct OutboundBacklog {
    let limit: Int
    private(set) var bytes = 0

    init(limit: Int) {
        self.limit = limit
    }

    /// Counts `size` more bytes if they fit under the limit; false if they do not.
    mutating func admit(_ size: Int) -> Bool {
        guard bytes + size <= limit else { return false }
        bytes += size
        return true
    }

    /// `size` admitted bytes reached the socket.
    mutating func written(_ size: Int) {
        bytes -= size
    }
}
