import Foundation

/// A bbolt database file (etcd's backend, and what etcd's `snapshot save` writes), read-only:
/// its buckets and their keys and values, in key order.
///
/// The file is mapped, not read: a reader costs the pages it visits. Every page reference
/// and element is checked against the file's bounds, so a damaged or truncated file is
/// refused with ``Failure``, never read past its end.
///
/// Format (bbolt 1.3, page size from the meta page): pages 0 and 1 are meta pages, each a
/// 16-byte page header (`id` u64, `flags` u16, `count` u16, `overflow` u32) then the meta
/// (`magic` u32, `version` u32, `pageSize` u32, `flags` u32, root bucket `root` u64 and
/// `sequence` u64, `freelist` u64, `pgid` u64, `txid` u64, FNV-1a 64 `checksum` of the
/// preceding 56 bytes); the valid meta with the higher `txid` is current. A branch page holds
/// `count` 16-byte elements (`pos` u32, `ksize` u32, `pgid` u64), a leaf page 16-byte elements
/// (`flags` u32, `pos` u32, `ksize` u32, `vsize` u32), each key `pos` bytes past its element,
/// a leaf's value right after its key. A leaf element with flag 1 is a bucket: its value is the
/// bucket's `root` u64 and `sequence` u64, followed by the bucket's own page when `root` is 0
/// (an inline bucket). Integers are little-endian (the machines etcd runs on).
public struct BoltFile: Sendable {
    /// Why a file cannot be read as a bbolt database.
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// bbolt's meta page magic number.
    static let magic: UInt32 = 0xED0C_DAED
    private static let pageHeaderSize = 16
    private static let elementSize = 16
    private static let branchPage: UInt16 = 0x01
    private static let leafPage: UInt16 = 0x02
    private static let bucketLeaf: UInt32 = 0x01

    private let bytes: Data
    /// The database's length: the file's, less any trailer after it (a snapshot's SHA-256).
    private let length: Int
    public let pageSize: Int
    /// The root bucket's page (its keys are the top-level buckets).
    private let rootPage: UInt64

    /// Whether `header` (a file's first bytes) starts like a bbolt database: a meta page whose
    /// magic number is bbolt's.
    public static func looksLikeBolt(_ header: Data) -> Bool {
        guard header.count >= pageHeaderSize + 4 else { return false }
        return header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: pageHeaderSize, as: UInt32.self) } == magic
    }

    /// Opens the first `length` bytes of the file at `path` (all of it when nil).
    public init(path: String, length: Int? = nil) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw Failure("open \(path): \(error.localizedDescription)")
        }
        try self.init(data, length: length ?? data.count)
    }

    init(_ bytes: Data, length: Int) throws {
        let length = min(length, bytes.count)
        self.bytes = bytes
        self.length = length
        guard length >= 2 * 1024 else { throw Failure("the file is too short to be a bbolt database (\(length) bytes)") }
        var current: (txid: UInt64, root: UInt64, pageSize: Int)?
        // Meta page 0 sits at offset 0; meta page 1 at the page size meta 0 names (or, when
        // meta 0 is damaged, at the usual page sizes).
        var offsets: [Int] = [0]
        let sizeZero = Int(Self.read(UInt32.self, bytes, at: Self.pageHeaderSize + 8))
        offsets += Set([sizeZero, 4096, 16384, 65536]).sorted().filter { $0 >= 1024 && $0 + 128 <= length }
        for offset in offsets {
            guard let meta = Self.meta(bytes, at: offset) else { continue }
            if offset != 0 && offset != meta.pageSize { continue }
            if current == nil || meta.txid > current!.txid { current = meta }
        }
        guard let current else { throw Failure("no valid meta page: not a bbolt database, or a damaged one") }
        pageSize = current.pageSize
        rootPage = current.root
    }

    /// The meta at `offset`, when its magic, version and checksum hold.
    private static func meta(_ bytes: Data, at offset: Int) -> (txid: UInt64, root: UInt64, pageSize: Int)? {
        let start = offset + pageHeaderSize
        guard start + 64 <= bytes.count else { return nil }
        guard read(UInt32.self, bytes, at: start) == magic, read(UInt32.self, bytes, at: start + 4) == 2 else { return nil }
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a 64 over the 56 bytes before the checksum
        for index in start..<(start + 56) {
            hash ^= UInt64(bytes[bytes.startIndex + index])
            hash &*= 0x0000_0100_0000_01B3
        }
        guard hash == read(UInt64.self, bytes, at: start + 56) else { return nil }
        let pageSize = Int(read(UInt32.self, bytes, at: start + 8))
        guard pageSize >= 1024, pageSize <= 1 << 20 else { return nil }
        return (read(UInt64.self, bytes, at: start + 48), read(UInt64.self, bytes, at: start + 16), pageSize)
    }

    private static func read<Value: FixedWidthInteger>(_: Value.Type, _ bytes: Data, at offset: Int) -> Value {
        bytes.withUnsafeBytes { Value(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: Value.self)) }
    }

    /// Calls `body` with each key and value of the bucket `name` (a top-level bucket), in key
    /// order; a nested bucket's entries are skipped. Returns false when there is no such bucket.
    @discardableResult
    public func forEach(inBucket name: String, _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Void) throws -> Bool {
        var bucket: PageReference?
        try walk(page: .stored(rootPage)) { key, value, flags in
            guard flags & Self.bucketLeaf != 0, key == Array(name.utf8) else { return }
            bucket = try self.bucketHeader(value)
        }
        guard let bucket else { return false }
        try walk(page: bucket) { key, value, flags in
            if flags & Self.bucketLeaf == 0 { try body(key, self.value(value)) }
        }
        return true
    }

    /// A bucket's root page, or its inline page (which follows the header inside the value).
    private func bucketHeader(_ location: ValueLocation) throws -> PageReference {
        guard location.count >= 16 else { throw Failure("a bucket entry of \(location.count) bytes (16 at least)") }
        let root = Self.read(UInt64.self, bytes, at: location.offset)
        return root != 0 ? .stored(root) : .inline(start: location.offset + 16, end: location.offset + location.count)
    }

    private enum PageReference {
        case stored(UInt64)
        /// An inline bucket's page, at these offsets in the file.
        case inline(start: Int, end: Int)
    }

    /// Where a value lies in the file.
    private struct ValueLocation {
        var offset: Int
        var count: Int
    }

    /// Visits the leaf elements under `page` in key order, with their keys, where their values
    /// lie, and their flags.
    private func walk(page: PageReference, _ visit: ([UInt8], ValueLocation, UInt32) throws -> Void) throws {
        var visited = Set<UInt64>()
        try walk(page: page, depth: 0, visited: &visited, visit)
    }

    /// A damaged file may point a branch back at a page already visited: refused, never
    /// followed round again.
    private func walk(
        page: PageReference, depth: Int, visited: inout Set<UInt64>, _ visit: ([UInt8], ValueLocation, UInt32) throws -> Void
    ) throws {
        guard depth < 64 else { throw Failure("pages nested more than 64 deep: the file is damaged") }
        let start: Int
        let end: Int
        switch page {
        case .stored(let id):
            guard id >= 2, id < UInt64(length / pageSize) else { throw Failure("page \(id) is outside the file") }
            guard visited.insert(id).inserted else { throw Failure("page \(id) is referenced twice: the file is damaged") }
            start = Int(id) * pageSize
            guard start + Self.pageHeaderSize <= length else { throw Failure("page \(id) is outside the file") }
            let overflow = Int(Self.read(UInt32.self, bytes, at: start + 12))
            end = start + (overflow + 1) * pageSize
            guard end <= length else { throw Failure("page \(id) runs past the end of the file") }
        case .inline(let inlineStart, let inlineEnd):
            (start, end) = (inlineStart, inlineEnd)
            guard start + Self.pageHeaderSize <= end else { throw Failure("an inline bucket shorter than a page header") }
        }
        let flags = Self.read(UInt16.self, bytes, at: start + 8)
        let count = Int(Self.read(UInt16.self, bytes, at: start + 10))
        let elements = start + Self.pageHeaderSize
        guard elements + count * Self.elementSize <= end else { throw Failure("a page's elements run past its end") }
        for index in 0..<count {
            let element = elements + index * Self.elementSize
            switch flags {
            case Self.branchPage:
                let child = Self.read(UInt64.self, bytes, at: element + 8)
                try walk(page: .stored(child), depth: depth + 1, visited: &visited, visit)
            case Self.leafPage:
                let elementFlags = Self.read(UInt32.self, bytes, at: element)
                let keyStart = element + Int(Self.read(UInt32.self, bytes, at: element + 4))
                let keySize = Int(Self.read(UInt32.self, bytes, at: element + 8))
                let valueSize = Int(Self.read(UInt32.self, bytes, at: element + 12))
                guard keyStart + keySize + valueSize <= end else { throw Failure("a key or value runs past its page") }
                let key = [UInt8](bytes[(bytes.startIndex + keyStart)..<(bytes.startIndex + keyStart + keySize)])
                try visit(key, ValueLocation(offset: keyStart + keySize, count: valueSize), elementFlags)
            default:
                throw Failure("page at offset \(start) is neither a branch nor a leaf (flags \(flags))")
            }
        }
    }

    /// The bytes of a value.
    private func value(_ location: ValueLocation) -> [UInt8] {
        [UInt8](bytes[(bytes.startIndex + location.offset)..<(bytes.startIndex + location.offset + location.count)])
    }
}
