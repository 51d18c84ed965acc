import Testing

@testable import Auth

@Suite("Key range sets: what a user may read or write")
struct KeyRangeSetTests {
    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func set(_ ranges: [(String, String)]) -> KeyRangeSet {
        KeyRangeSet(ranges.map { (key: bytes($0.0), rangeEnd: $0.1 == "\\0" ? [0] : bytes($0.1)) })
    }

    @Test func singleKeysCoverOnlyThemselves() {
        let grants = set([("a", ""), ("c", "")])
        #expect(grants.contains(key: bytes("a"), rangeEnd: []))
        #expect(!grants.contains(key: bytes("b"), rangeEnd: []))
        #expect(!grants.contains(key: bytes("a0"), rangeEnd: []))
        // The range [a, a\0) is the key a alone.
        #expect(grants.contains(key: bytes("a"), rangeEnd: bytes("a") + [0]))
        #expect(!grants.contains(key: bytes("a"), rangeEnd: bytes("b")))
    }

    @Test func rangesMergeWhenTheyTouchOrOverlap() {
        let grants = set([("a", "c"), ("c", "e"), ("d", "f"), ("x", "z")])
        #expect(grants.intervals.count == 2)
        #expect(grants.contains(key: bytes("a"), rangeEnd: bytes("f")))
        #expect(grants.contains(key: bytes("b"), rangeEnd: bytes("e")))
        #expect(!grants.contains(key: bytes("a"), rangeEnd: bytes("g")))
        #expect(!grants.contains(key: bytes("e"), rangeEnd: bytes("y")))
        #expect(grants.contains(key: bytes("ezzz"), rangeEnd: []))
        #expect(!grants.contains(key: bytes("f"), rangeEnd: []))
    }

    @Test func aGapBetweenRangesIsNotCovered() {
        let grants = set([("a", "c"), ("c0", "e")])
        #expect(grants.intervals.count == 2)
        #expect(!grants.contains(key: bytes("a"), rangeEnd: bytes("d")))
        #expect(!grants.contains(key: bytes("c"), rangeEnd: []))
    }

    @Test func fromKeyGrantsCoverEverythingAfter() {
        let grants = set([("m", "\\0")])
        #expect(grants.contains(key: bytes("m"), rangeEnd: [0]))
        #expect(grants.contains(key: bytes("zzz"), rangeEnd: []))
        #expect(grants.contains(key: bytes("n"), rangeEnd: bytes("\u{7f}")))
        #expect(!grants.contains(key: bytes("l"), rangeEnd: [0]))
        #expect(!grants.contains(key: bytes("a"), rangeEnd: bytes("n")))
        // A range grant never covers a from-key request, however far it reaches.
        #expect(!set([("a", "\u{7f}\u{7f}")]).contains(key: bytes("b"), rangeEnd: [0]))
    }

    @Test func emptySetCoversNothing() {
        #expect(!KeyRangeSet().contains(key: bytes("a"), rangeEnd: []))
    }
}
