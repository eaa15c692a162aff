import KVAccess
import KVTestSupport
import Testing
@testable import KVCommands

@Suite("Glob patterns")
struct GlobTests {
    static func matches(_ pattern: String, _ key: String) -> Bool {
        GlobPattern(bytes(pattern)).matches(bytes(key))
    }

    @Test("each construct, as Redis's stringmatchlen reads it", arguments: [
        // Literals, and the examples of Redis's KEYS documentation.
        ("abc", "abc", true), ("abc", "abd", false), ("abc", "ab", false), ("abc", "abcd", false),
        ("h?llo", "hello", true), ("h?llo", "hallo", true), ("h?llo", "hllo", false),
        ("h*llo", "hllo", true), ("h*llo", "heeeello", true), ("h*llo", "hellO", false),
        ("h[ae]llo", "hello", true), ("h[ae]llo", "hallo", true), ("h[ae]llo", "hillo", false),
        ("h[^e]llo", "hallo", true), ("h[^e]llo", "hbllo", true), ("h[^e]llo", "hello", false),
        ("h[a-b]llo", "hallo", true), ("h[a-b]llo", "hbllo", true), ("h[a-b]llo", "hcllo", false),
        // `*`
        ("*", "anything", true), ("a*", "a", true), ("a*", "abc", true), ("a*", "ba", false),
        ("*a", "a", true), ("*a", "ba", true), ("*a", "ab", false), ("**", "a", true), ("a**b", "ab", true),
        ("a*b*c", "abc", true), ("a*b*c", "aXXbYYc", true), ("a*b*c", "acb", false), ("*b*", "abc", true),
        ("*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false), ("*a*a*a*a*b", "aaaaaaaaaaaaaab", true),
        // `?` is one byte, not one character.
        ("?", "a", true), ("?", "ab", false), ("??", "ab", true), ("?", "é", false), ("??", "é", true),
        // Classes: members, negation, ranges either way round, escapes inside.
        ("[abc]", "b", true), ("[abc]", "d", false), ("[abc]", "ab", false),
        ("[^abc]", "d", true), ("[^abc]", "a", false), ("[a-c]x", "bx", true),
        ("[z-a]", "m", true), ("[z-a]", "A", false), ("[0-9a-f]", "7", true), ("[0-9a-f]", "g", false),
        ("[a\\-z]", "-", true), ("[a\\-z]", "b", false), ("[\\]]", "]", true), ("[\\^a]", "^", true),
        ("[!a]", "!", true), ("[!a]", "b", false),  // `!` is no negation in Redis, just a member
        // An empty class matches nothing; an empty negated class matches any byte.
        ("[]", "]", false), ("[]]", "]", false), ("[^]", "x", true), ("[^]]", "x]", true),
        // `[a-]`: a range from `a` to `]` (swapped: 0x5D...0x61), then the class is unclosed.
        ("[a-]", "_", true), ("[a-]", "a", true), ("[a-]", "-", false), ("[a-]", "b", false),
        // An unclosed `[` takes the rest of the pattern as its members.
        ("[abc", "a", true), ("[abc", "c", true), ("[abc", "d", false), ("[abc", "ab", false),
        ("[", "[", false), ("[", "", false), ("a[", "a[", false), ("[^", "x", true), ("[^", "xy", false),
        ("[\\", "\\", true), ("[a-", "-", true), ("[a-", "b", false),
        // `\x` is x; a backslash at the very end is itself.
        ("\\*", "*", true), ("\\*", "a", false), ("\\?", "?", true), ("\\?", "x", false),
        ("\\[a]", "[a]", true), ("\\[a]", "a", false), ("a\\b", "ab", true), ("\\\\", "\\", true),
        ("a\\", "a\\", true), ("a\\", "a", false), ("\\", "\\", true), ("*\\", "ab\\", true),
        // The empty key matches only the empty pattern, and `*` (alone) by exception.
        ("", "", true), ("", "a", false), ("*", "", true), ("**", "", false), ("?", "", false), ("a*", "", false),
    ])
    func constructs(pattern: String, key: String, expected: Bool) {
        #expect(Self.matches(pattern, key) == expected, "\(pattern.debugDescription) vs \(key.debugDescription)")
        #expect(Self.referenceMatch(bytes(pattern), bytes(key)) == expected || pattern == "*",
                "the reference disagrees on \(pattern.debugDescription) vs \(key.debugDescription)")
    }

    @Test("bytes: 0xFF, NUL and ranges of raw bytes")
    func rawBytes() {
        #expect(GlobPattern([0xFF]).matches([0xFF]))
        #expect(!GlobPattern([0xFF]).matches([0xFE]))
        #expect(GlobPattern([0x00]).matches([0x00]))
        #expect(!GlobPattern([0x61, 0x00]).matches([0x61]), "a NUL in the pattern is a byte, not its end")
        #expect(GlobPattern(bytes("[") + [0x00, 0x2D, 0x10] + bytes("]")).matches([0x05]))
        #expect(GlobPattern(bytes("[") + [0x80, 0x2D, 0xFF] + bytes("]")).matches([0xC3]))
        #expect(!GlobPattern(bytes("[") + [0x80, 0x2D, 0xFF] + bytes("]")).matches([0x7F]))
        #expect(GlobPattern(bytes("*") + [0xFF]).matches(bytes("abc") + [0xFF]))
    }

    @Test("more than 1000 nested stars give up (no match), as in Redis")
    func nestingLimit() {
        let key = [UInt8](repeating: UInt8(ascii: "a"), count: 1001)
        let thousand = Array([[UInt8]](repeating: bytes("*a"), count: 1000).joined())
        let thousandAndOne = Array([[UInt8]](repeating: bytes("*a"), count: 1001).joined())
        #expect(GlobPattern.stringMatch(thousand, key))
        #expect(!GlobPattern.stringMatch(thousandAndOne, key))
    }

    @Test("the literal prefix resolves escapes and stops at the first wildcard", arguments: [
        ("user:*", "user:", 5), ("abc", "abc", 3), ("", "", 0), ("*", "", 0), ("?x", "", 0), ("[a]b", "", 0),
        ("a\\*b*", "a*b", 4), ("a\\[b?", "a[b", 4), ("a\\", "a\\", 2), ("\\\\x*", "\\x", 3), ("ab[", "ab", 2),
    ])
    func literalPrefix(pattern: String, prefix: String, end: Int) {
        let found = GlobPattern.literalPrefix(of: bytes(pattern))
        #expect(found.prefix == bytes(prefix))
        #expect(found.end == end)
    }

    @Test("the successor of a prefix: drop trailing 0xFF, add one to the last byte; none for empty or all-0xFF")
    func successor() {
        #expect(GlobPattern.prefixSuccessor(bytes("a")) == bytes("b"))
        #expect(GlobPattern.prefixSuccessor(bytes("user:")) == bytes("user;"))
        #expect(GlobPattern.prefixSuccessor([0x61, 0xFF]) == bytes("b"))
        #expect(GlobPattern.prefixSuccessor([0x61, 0xFF, 0xFF]) == bytes("b"))
        #expect(GlobPattern.prefixSuccessor([0x61, 0xFE]) == [0x61, 0xFF])
        #expect(GlobPattern.prefixSuccessor([0x00]) == [0x01])
        #expect(GlobPattern.prefixSuccessor([0xFF]) == nil)
        #expect(GlobPattern.prefixSuccessor([0xFF, 0xFF]) == nil)
        #expect(GlobPattern.prefixSuccessor([]) == nil)
        // Every string with the prefix lies in [prefix, successor).
        var rng = SplitMix64(seed: 5)
        for _ in 0..<2000 {
            let prefix = (0..<Int.random(in: 1...4, using: &rng)).map { _ in [0x00, 0x61, 0xFE, 0xFF].randomElement(using: &rng)! as UInt8 }
            let string = prefix + (0..<Int.random(in: 0...3, using: &rng)).map { _ in [0x00, 0x61, 0xFF].randomElement(using: &rng)! as UInt8 }
            #expect(!string.lexicographicallyPrecedes(prefix))
            if let successor = GlobPattern.prefixSuccessor(prefix) {
                #expect(string.lexicographicallyPrecedes(successor), "\(string) < \(successor)")
                #expect(!successor.starts(with: prefix))
            } else {
                #expect(prefix.allSatisfy { $0 == 0xFF })
            }
        }
    }

    @Test("key ranges and when no key needs testing")
    func keyRange() {
        #expect(GlobPattern(bytes("ab*")).keyRange.lower == bytes("ab"))
        #expect(GlobPattern(bytes("ab*")).keyRange.upper == bytes("ac"))
        #expect(GlobPattern(bytes("*ab")).keyRange.lower == nil)
        #expect(GlobPattern(bytes("*ab")).keyRange.upper == nil)
        #expect(GlobPattern([0xFF, 0x2A]).keyRange.lower == [0xFF])
        #expect(GlobPattern([0xFF, 0x2A]).keyRange.upper == nil)
        for (pattern, everything) in [("*", true), ("ab*", true), ("ab**", true), ("ab", false), ("**", false),
                                      ("ab*c", false), ("", false), ("ab?", false), ("a\\**", true)] {
            #expect(GlobPattern(bytes(pattern)).matchesEveryKeyWithPrefix == everything, "\(pattern)")
        }
    }

    // MARK: An independent reference

    /// One piece of a pattern, read with the rules of Redis's matcher.
    enum Token {
        case byte(UInt8)
        case any
        case star
        case set(negated: Bool, ranges: [ClosedRange<UInt8>])
    }

    static func tokenize(_ pattern: [UInt8]) -> [Token] {
        var tokens: [Token] = []
        var i = 0
        let n = pattern.count
        while i < n {
            switch pattern[i] {
            case UInt8(ascii: "*"):
                tokens.append(.star)
                i += 1
            case UInt8(ascii: "?"):
                tokens.append(.any)
                i += 1
            case UInt8(ascii: "["):
                i += 1
                let negated = i < n && pattern[i] == UInt8(ascii: "^")
                if negated { i += 1 }
                var ranges: [ClosedRange<UInt8>] = []
                while i < n {
                    if pattern[i] == UInt8(ascii: "\\") && i + 1 < n {
                        ranges.append(pattern[i + 1]...pattern[i + 1])
                        i += 2
                    } else if pattern[i] == UInt8(ascii: "]") {
                        i += 1
                        break
                    } else if i + 2 < n && pattern[i + 1] == UInt8(ascii: "-") {
                        ranges.append(min(pattern[i], pattern[i + 2])...max(pattern[i], pattern[i + 2]))
                        i += 3
                    } else {
                        ranges.append(pattern[i]...pattern[i])
                        i += 1
                    }
                }
                tokens.append(.set(negated: negated, ranges: ranges))
            case UInt8(ascii: "\\") where i + 1 < n:
                tokens.append(.byte(pattern[i + 1]))
                i += 2
            default:
                tokens.append(.byte(pattern[i]))
                i += 1
            }
        }
        return tokens
    }

    /// Matching by dynamic programming over the tokens (no backtracking, no early exits), plus Redis's rule
    /// that the empty string matches only the empty pattern.
    static func referenceMatch(_ pattern: [UInt8], _ string: [UInt8]) -> Bool {
        if string.isEmpty { return pattern.isEmpty }
        let tokens = tokenize(pattern)
        // matched[j]: the tokens so far match string[..<j].
        var matched = [Bool](repeating: false, count: string.count + 1)
        matched[0] = true
        for token in tokens {
            var next = [Bool](repeating: false, count: string.count + 1)
            switch token {
            case .star:
                var any = false
                for j in 0...string.count {
                    any = any || matched[j]
                    next[j] = any
                }
            default:
                for j in 0..<string.count where matched[j] {
                    let byte = string[j]
                    let accepts: Bool
                    switch token {
                    case .byte(let b): accepts = b == byte
                    case .any: accepts = true
                    case .set(let negated, let ranges): accepts = ranges.contains { $0.contains(byte) } != negated
                    case .star: accepts = false
                    }
                    if accepts { next[j + 1] = true }
                }
            }
            matched = next
        }
        return matched[string.count]
    }

    static let patternAlphabet: [[UInt8]] = ["a", "b", "c", "*", "*", "?", "[", "]", "^", "-", "\\", "ab"].map(bytes) + [[0xFF], [0x00]]
    static let keyAlphabet: [[UInt8]] = ["a", "b", "c", "]", "^", "-", "\\", "*", "[", "?"].map(bytes) + [[0xFF], [0x00]]

    static func randomBytes(from alphabet: [[UInt8]], maxParts: Int, _ rng: inout SplitMix64) -> [UInt8] {
        Array((0..<Int.random(in: 0...maxParts, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }.joined())
    }

    @Test("the matcher agrees with the reference on random patterns and keys", arguments: [1, 2, 3, 4] as [UInt64])
    func differential(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var mismatches = 0
        for _ in 0..<40_000 {
            let pattern = Self.randomBytes(from: Self.patternAlphabet, maxParts: 7, &rng)
            let key = Self.randomBytes(from: Self.keyAlphabet, maxParts: 7, &rng)
            let expected = Self.referenceMatch(pattern, key)
            if GlobPattern.stringMatch(pattern, key) != expected {
                mismatches += 1
                Issue.record("pattern \(pattern) key \(key): expected \(expected)")
                if mismatches > 5 { return }
            }
        }
    }

    @Test("every key that matches starts with the literal prefix")
    func prefixIsNecessary() {
        var rng = SplitMix64(seed: 9)
        for _ in 0..<20_000 {
            let pattern = Self.randomBytes(from: Self.patternAlphabet, maxParts: 6, &rng)
            let key = Self.randomBytes(from: Self.keyAlphabet, maxParts: 6, &rng)
            let glob = GlobPattern(pattern)
            if glob.matches(key) {
                #expect(key.starts(with: glob.literalPrefix), "pattern \(pattern) key \(key)")
            }
        }
    }
}
