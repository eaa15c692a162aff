/// A glob-style pattern as `KEYS` and `SCAN ... MATCH` take it, with the semantics of Redis's `stringmatchlen`
/// (util.c), on bytes:
///
/// - `*` matches any run of bytes, `?` any one byte;
/// - `[abc]` one of the bytes listed, `[^abc]` any other byte, `[a-z]` a range (either way round: `[z-a]` is
///   the same), `\x` inside brackets the byte `x`; an unclosed `[` takes the rest of the pattern as its list;
/// - `\x` is the byte `x` itself (a backslash at the very end is a backslash);
/// - everything else is itself, compared byte for byte (no case folding, no UTF-8 decoding).
///
/// As in Redis, the empty key matches only the empty pattern, except that the pattern `*` alone matches every
/// key (Redis's KEYS and SCAN make the same exception).
public struct GlobPattern: Sendable {
    public let pattern: [UInt8]
    /// The bytes every matching key starts with: the pattern up to its first `*`, `?` or `[`, escapes resolved.
    public let literalPrefix: [UInt8]
    /// Whether every key (with the literal prefix) matches, so no key needs testing: `*`, or `prefix*`.
    public let matchesEveryKeyWithPrefix: Bool

    public init(_ pattern: [UInt8]) {
        self.pattern = pattern
        let (prefix, rest) = Self.literalPrefix(of: pattern)
        literalPrefix = prefix
        let onlyStars = rest < pattern.count && pattern[rest...].allSatisfy { $0 == UInt8(ascii: "*") }
        // `**` alone does not match the empty key (only `*` does), so it still needs testing.
        matchesEveryKeyWithPrefix = pattern == [UInt8(ascii: "*")] || (!prefix.isEmpty && onlyStars)
    }

    /// Whether `key` matches, with the exception for `*`.
    public func matches(_ key: [UInt8]) -> Bool {
        key.withUnsafeBytes { matches($0) }
    }

    /// Matches key bytes in place (the engine lends them without copying).
    public func matches(_ key: UnsafeRawBufferPointer) -> Bool {
        if matchesEveryKeyWithPrefix {  // `*`, or `app:*`: a prefix comparison (an ACL's usual pattern, on the hot path)
            return key.count >= literalPrefix.count
                && literalPrefix.withUnsafeBytes { prefix in prefix.elementsEqual(UnsafeRawBufferPointer(rebasing: key[..<prefix.count])) }
        }
        return pattern.withUnsafeBufferPointer { pattern in
            var skipLongerMatches = false
            return Self.match(pattern, 0, key.assumingMemoryBound(to: UInt8.self), 0, &skipLongerMatches, nesting: 0)
        }
    }

    /// The bounds of the part of the key space where matching keys can be: [prefix, successor of prefix).
    /// Both are nil (the whole key space) when the pattern has no literal prefix.
    public var keyRange: (lower: [UInt8]?, upper: [UInt8]?) {
        literalPrefix.isEmpty ? (nil, nil) : (literalPrefix, Self.prefixSuccessor(literalPrefix))
    }

    // MARK: The pieces

    /// The literal bytes the pattern starts with, and the index of the first byte after them.
    public static func literalPrefix(of pattern: [UInt8]) -> (prefix: [UInt8], end: Int) {
        var prefix: [UInt8] = []
        var index = 0
        while index < pattern.count {
            switch pattern[index] {
            case UInt8(ascii: "*"), UInt8(ascii: "?"), UInt8(ascii: "["):
                return (prefix, index)
            case UInt8(ascii: "\\") where index + 1 < pattern.count:
                prefix.append(pattern[index + 1])
                index += 2
            default:
                prefix.append(pattern[index])
                index += 1
            }
        }
        return (prefix, index)
    }

    /// The smallest byte string greater than every string that starts with `prefix`: drop trailing 0xFF bytes
    /// and add one to the last byte left. Nil if there is none (`prefix` is empty or all 0xFF): an open end.
    public static func prefixSuccessor(_ prefix: [UInt8]) -> [UInt8]? {
        var successor = prefix
        while let last = successor.last {
            if last < 0xFF {
                successor[successor.count - 1] = last + 1
                return successor
            }
            successor.removeLast()
        }
        return nil
    }

    /// Redis's `stringmatchlen(pattern, string, nocase: 0)`, byte for byte, without the `*` exception.
    public static func stringMatch(_ pattern: [UInt8], _ string: [UInt8]) -> Bool {
        pattern.withUnsafeBufferPointer { pattern in
            string.withUnsafeBufferPointer { string in
                var skipLongerMatches = false
                return match(pattern, 0, string, 0, &skipLongerMatches, nesting: 0)
            }
        }
    }

    /// Redis gives up (no match) beyond this many nested `*`, to bound the work an abusive pattern can cause.
    static let maxNesting = 1000

    /// A port of `stringmatchlen_impl`. Where C reads the terminating NUL past the pattern's end, this reads 0.
    private static func match(_ pattern: UnsafeBufferPointer<UInt8>, _ patternStart: Int,
                              _ string: UnsafeBufferPointer<UInt8>, _ stringStart: Int,
                              _ skipLongerMatches: inout Bool, nesting: Int) -> Bool {
        if nesting > maxNesting { return false }
        let patternEnd = pattern.count, stringEnd = string.count
        var p = patternStart, s = stringStart
        @inline(__always) func at(_ index: Int) -> UInt8 { index < patternEnd ? pattern[index] : 0 }

        while p < patternEnd && s < stringEnd {
            switch pattern[p] {
            case UInt8(ascii: "*"):
                while at(p + 1) == UInt8(ascii: "*") { p += 1 }
                if patternEnd - p == 1 { return true }
                while s < stringEnd {
                    if match(pattern, p + 1, string, s, &skipLongerMatches, nesting: nesting + 1) { return true }
                    if skipLongerMatches { return false }
                    s += 1
                }
                // The rest of the pattern matches no suffix of the string, so a longer match for an earlier
                // `*` cannot help either: stop the whole search.
                skipLongerMatches = true
                return false
            case UInt8(ascii: "?"):
                s += 1
            case UInt8(ascii: "["):
                p += 1
                let negated = at(p) == UInt8(ascii: "^")
                if negated { p += 1 }
                let byte = string[s]
                var matched = false
                while true {
                    if at(p) == UInt8(ascii: "\\") && patternEnd - p >= 2 {
                        p += 1
                        if pattern[p] == byte { matched = true }
                    } else if at(p) == UInt8(ascii: "]") {
                        break
                    } else if p >= patternEnd {
                        p -= 1  // unclosed: the loop below steps past the pattern's last byte
                        break
                    } else if patternEnd - p >= 3 && pattern[p + 1] == UInt8(ascii: "-") {
                        let low = min(pattern[p], pattern[p + 2]), high = max(pattern[p], pattern[p + 2])
                        p += 2
                        if byte >= low && byte <= high { matched = true }
                    } else if pattern[p] == byte {
                        matched = true
                    }
                    p += 1
                }
                if negated { matched.toggle() }
                if !matched { return false }
                s += 1
            case UInt8(ascii: "\\"):
                if patternEnd - p >= 2 { p += 1 }
                if pattern[p] != string[s] { return false }
                s += 1
            default:
                if pattern[p] != string[s] { return false }
                s += 1
            }
            p += 1
            if s == stringEnd {
                while at(p) == UInt8(ascii: "*") { p += 1 }
                break
            }
        }
        return p == patternEnd && s == stringEnd
    }
}
