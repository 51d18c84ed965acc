import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// DNS SRV lookups (RFC 2782) over UDP, for `--discovery-srv`: the records etcd's members and
/// clients find each other by. The query goes to the first `nameserver` of `/etc/resolv.conf`,
/// as Go's resolver (etcd's) sends it, unless a server is named.
enum DNSServiceRecords {
    struct Record: Equatable, Sendable {
        var priority: UInt16
        var weight: UInt16
        var port: UInt16
        /// The target host name, without the root's trailing dot.
        var target: String
    }

    struct LookupError: Error, CustomStringConvertible {
        let description: String
    }

    /// The SRV records of `name` (`_etcd-server._tcp.example.com`), by priority then weight
    /// (heaviest first); none when the name has none. `server` is `host:port`.
    static func lookup(_ name: String, server: String? = nil, timeout: Duration = .seconds(2)) throws(LookupError) -> [Record] {
        let (host, port) = try nameServer(server)
        let id = UInt16.random(in: 0...UInt16.max)
        let query = encodeQuery(name, id: id)
        var lastError = LookupError(description: "lookup \(name) on \(host):\(port): no answer")
        for _ in 0..<3 {
            do {
                let answer = try exchange(query, host: host, port: port, timeout: timeout)
                return try parseAnswer(answer, id: id).sorted { ($0.priority, -Int($0.weight)) < ($1.priority, -Int($1.weight)) }
            } catch {
                lastError = LookupError(description: "lookup \(name) on \(host):\(port): \(error.description)")
            }
        }
        throw lastError
    }

    /// The server to ask: `server` as `host:port`, or `/etc/resolv.conf`'s first, on port 53.
    private static func nameServer(_ server: String?) throws(LookupError) -> (String, UInt16) {
        if let server {
            let parts = server.split(separator: ":")
            guard parts.count == 2, let port = UInt16(parts[1]) else { throw LookupError(description: "\(server) is not host:port") }
            return (String(parts[0]), port)
        }
        let configuration = (try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)) ?? ""
        for line in configuration.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count >= 2, fields[0] == "nameserver" { return (String(fields[1]), 53) }
        }
        return ("127.0.0.1", 53)
    }

    /// A standard query for `name`'s SRV records, recursion desired.
    static func encodeQuery(_ name: String, id: UInt16) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.split(separator: ".") {
            let utf8 = Array(label.utf8.prefix(63))
            bytes.append(UInt8(utf8.count))
            bytes += utf8
        }
        bytes += [0, 0, 33, 0, 1]  // end of name, type SRV, class IN
        return bytes
    }

    /// The SRV records of an answer to query `id`.
    static func parseAnswer(_ message: [UInt8], id: UInt16) throws(LookupError) -> [Record] {
        var reader = Reader(message: message)
        guard message.count >= 12, reader.u16(at: 0) == id else { throw LookupError(description: "malformed answer") }
        let flags = reader.u16(at: 2)!
        guard flags & 0x8000 != 0 else { throw LookupError(description: "not an answer") }
        let rcode = flags & 0xF
        if rcode == 3 { return [] }  // no such name
        guard rcode == 0 else { throw LookupError(description: "server failure (rcode \(rcode))") }
        let questions = Int(reader.u16(at: 4)!)
        let answers = Int(reader.u16(at: 6)!)
        reader.offset = 12
        for _ in 0..<questions {
            _ = try reader.name()
            reader.offset += 4
        }
        var records: [Record] = []
        for _ in 0..<answers {
            _ = try reader.name()
            guard let type = reader.u16(at: reader.offset), let length = reader.u16(at: reader.offset + 8) else {
                throw LookupError(description: "truncated answer")
            }
            let start = reader.offset + 10
            guard start + Int(length) <= message.count else { throw LookupError(description: "truncated answer") }
            if type == 33 {
                reader.offset = start + 6
                records.append(Record(
                    priority: reader.u16(at: start)!, weight: reader.u16(at: start + 2)!, port: reader.u16(at: start + 4)!,
                    target: try reader.name()))
            }
            reader.offset = start + Int(length)
        }
        return records
    }

    /// Reads names (with RFC 1035 compression) and numbers out of a message.
    private struct Reader {
        let message: [UInt8]
        var offset = 0

        func u16(at index: Int) -> UInt16? {
            guard index >= 0, index + 1 < message.count else { return nil }
            return UInt16(message[index]) << 8 | UInt16(message[index + 1])
        }

        /// The name at `offset`, which moves past it.
        mutating func name() throws(LookupError) -> String {
            var labels: [String] = []
            var position = offset
            var jumped = false
            for _ in 0..<128 {
                guard position < message.count else { throw LookupError(description: "truncated name") }
                let length = Int(message[position])
                if length == 0 {
                    if !jumped { offset = position + 1 }
                    return labels.joined(separator: ".")
                }
                if length & 0xC0 == 0xC0 {
                    guard let pointer = u16(at: position) else { throw LookupError(description: "truncated name") }
                    if !jumped { offset = position + 2 }
                    jumped = true
                    position = Int(pointer & 0x3FFF)
                    continue
                }
                guard position + 1 + length <= message.count else { throw LookupError(description: "truncated name") }
                labels.append(String(decoding: message[(position + 1)...(position + length)], as: UTF8.self))
                position += 1 + length
            }
            throw LookupError(description: "name compression loop")
        }
    }

    /// Sends `query` to `host:port` over UDP and returns the first datagram that answers it.
    private static func exchange(_ query: [UInt8], host: String, port: UInt16, timeout: Duration) throws(LookupError) -> [UInt8] {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { throw LookupError(description: "\(host) is not an IPv4 address") }
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { throw LookupError(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let (seconds, attoseconds) = timeout.components
        var limit = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(descriptor, query, query.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard sent == query.count else { throw LookupError(description: "send: \(String(cString: strerror(errno)))") }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let received = recv(descriptor, &buffer, buffer.count, 0)
        guard received > 0 else { throw LookupError(description: "i/o timeout") }
        return Array(buffer.prefix(received))
    }
}
