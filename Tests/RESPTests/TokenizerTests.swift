import KVTestSupport
import Testing
@testable import RESP

/// A byte-level port of redis-cli's `sdssplitargs` (sds.c), the reference for the quoting rules. Two deliberate
/// differences, both documented by kvsh: NUL is an ordinary byte (lines are not C strings), and VT and FF
/// separate arguments everywhere (sdssplitargs skips them between arguments but not inside an unquoted one).
func referenceSplit(_ line: [UInt8]) -> [[UInt8]]? {
    func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || (0x09...0x0D).contains(byte) }
    func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: return byte - 0x30
        case 0x61...0x66: return byte - 0x61 + 10
        case 0x41...0x46: return byte - 0x41 + 10
        default: return nil
        }
    }
    var p = 0
    let end = line.count
    func at(_ i: Int) -> UInt8? { i < end ? line[i] : nil }
    var vector: [[UInt8]] = []
    while true {
        while p < end && isSpace(line[p]) { p += 1 }
        guard p < end else { return vector }
        var inq = false, insq = false, done = false
        var current: [UInt8] = []
        while !done {
            if inq {
                if at(p) == 0x5C, at(p + 1) == UInt8(ascii: "x"), let h = at(p + 2).flatMap(hex), let l = at(p + 3).flatMap(hex) {
                    current.append(h * 16 + l)
                    p += 3
                } else if at(p) == 0x5C, let next = at(p + 1) {
                    p += 1
                    switch next {
                    case UInt8(ascii: "n"): current.append(0x0A)
                    case UInt8(ascii: "r"): current.append(0x0D)
                    case UInt8(ascii: "t"): current.append(0x09)
                    case UInt8(ascii: "b"): current.append(0x08)
                    case UInt8(ascii: "a"): current.append(0x07)
                    default: current.append(next)
                    }
                } else if at(p) == UInt8(ascii: "\"") {
                    if let next = at(p + 1), !isSpace(next) { return nil }
                    done = true
                } else if p >= end {
                    return nil
                } else {
                    current.append(line[p])
                }
            } else if insq {
                if at(p) == 0x5C, at(p + 1) == UInt8(ascii: "'") {
                    p += 1
                    current.append(UInt8(ascii: "'"))
                } else if at(p) == UInt8(ascii: "'") {
                    if let next = at(p + 1), !isSpace(next) { return nil }
                    done = true
                } else if p >= end {
                    return nil
                } else {
                    current.append(line[p])
                }
            } else {
                switch at(p) {
                case nil: done = true
                case let byte? where isSpace(byte): done = true
                case UInt8(ascii: "\"")?: inq = true
                case UInt8(ascii: "'")?: insq = true
                case let byte?: current.append(byte)
                }
            }
            if p < end { p += 1 }
        }
        vector.append(current)
    }
}

@Suite("Tokenizer")
struct TokenizerTests {
    static func split(_ line: String) throws -> [[UInt8]] { try Tokenizer.split(bytes(line)) }

    static func expectSplit(_ line: String, _ expected: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let actual = try split(line)
            #expect(actual == expected.map(bytes), "line: \(line.debugDescription)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("line \(line.debugDescription): unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    static func expectUnbalanced(_ line: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: Tokenizer.UnbalancedQuotes.self, "line: \(text(line).debugDescription)", sourceLocation: sourceLocation) {
            try Tokenizer.split(line)
        }
    }

    @Test("blanks of every kind separate arguments; leading and trailing blanks are ignored")
    func blanks() {
        Self.expectSplit("", [])
        Self.expectSplit(" \t\n\u{0B}\u{0C}\r ", [])
        Self.expectSplit("SET a b", ["SET", "a", "b"])
        Self.expectSplit("  SET\ta\u{0B}b\u{0C}c\rd\ne   \t", ["SET", "a", "b", "c", "d", "e"])
        Self.expectSplit("a    b", ["a", "b"])
        Self.expectSplit("a b \r\n", ["a", "b"])
    }

    @Test("unquoted arguments are literal, backslashes included")
    func unquoted() {
        Self.expectSplit(#"a\nb \x41 \"#, [#"a\nb"#, #"\x41"#, #"\"#])
        Self.expectSplit("key:1 {json} $x=1", ["key:1", "{json}", "$x=1"])
    }

    @Test("double quotes: named escapes")
    func doubleQuoteEscapes() throws {
        #expect(try Self.split(#""\n\r\t\a\b\"\\""#) == [[0x0A, 0x0D, 0x09, 0x07, 0x08, 0x22, 0x5C]])
        Self.expectSplit(#""a b" "c\"d""#, ["a b", "c\"d"])
    }

    @Test("double quotes: \\xHH with upper- and lower-case hex digits")
    func hexEscapes() throws {
        #expect(try Self.split(#""\x41\x7a\xFF\xfF\x00\x0a\xAb""#) == [[0x41, 0x7A, 0xFF, 0xFF, 0x00, 0x0A, 0xAB]])
        #expect(try Self.split(#""\x41BC""#) == [bytes("ABC")], "only two digits belong to the escape")
    }

    @Test("double quotes: \\x not followed by two hex digits is the letter x, as in sdssplitargs")
    func badHexEscapes() throws {
        #expect(try Self.split(#""\xZZ""#) == [bytes("xZZ")])
        #expect(try Self.split(#""\x4""#) == [bytes("x4")])
        #expect(try Self.split(#""\x4G""#) == [bytes("x4G")])
        #expect(try Self.split(#""\xG4""#) == [bytes("xG4")])
        #expect(try Self.split(#""\x""#) == [bytes("x")])
        #expect(try Self.split(#""\X41""#) == [bytes("X41")], "only a lower-case x starts a hex escape")
    }

    @Test("double quotes: any other escaped byte stands for itself")
    func otherEscapes() throws {
        #expect(try Self.split(#""\q\0\ \'\z\N""#) == [bytes("q0 'zN")])
        #expect(try Self.split("\"\\é\"") == [bytes("é")], "an escaped multi-byte character keeps all its bytes")
        #expect(try Self.split("\"\\\u{0}\"") == [[0]])
    }

    @Test("single quotes are literal except \\'")
    func singleQuotes() throws {
        #expect(try Self.split(#"'a b'"#) == [bytes("a b")])
        #expect(try Self.split(#"'\n\x41"\"'"#) == [bytes(#"\n\x41"\""#)])
        #expect(try Self.split(#"'it\'s'"#) == [bytes("it's")])
        #expect(try Self.split(#"'a\\b'"#) == [bytes(#"a\\b"#)])
        #expect(try Self.split(#"'\'' x"#) == [bytes("'"), bytes("x")])
    }

    @Test("a quote may open in the middle of an argument")
    func quoteMidArgument() throws {
        #expect(try Self.split(#"a"b c""#) == [bytes("ab c")])
        #expect(try Self.split(#"a'b c' d"#) == [bytes("ab c"), bytes("d")])
        #expect(try Self.split(#"key"\x00""#) == [bytes("key") + [0]])
        #expect(try Self.split(#"x"" y"#) == [bytes("x"), bytes("y")])
    }

    @Test("empty quoted arguments")
    func emptyQuoted() throws {
        #expect(try Self.split(#""""#) == [[]])
        #expect(try Self.split(#"'' """#) == [[], []])
        #expect(try Self.split(#"SET k """#) == [bytes("SET"), bytes("k"), []])
        #expect(try Self.split("SET \"\" v\t") == [bytes("SET"), [], bytes("v")])
    }

    @Test("unbalanced quotes", arguments: [
        #""abc"#, #"'abc"#, #"""#, #"'"#, #"SET k "v"#, #""abc"def"#, #"'abc'def"#, #"a"b c"d"#,
        #""a""b""#, #"'a''b'"#, #""abc\""#, #""abc\"#, #"'abc\'"#, #""\x4"#, #"'a'"b""#,
    ])
    func unbalanced(line: String) {
        Self.expectUnbalanced(bytes(line))
    }

    @Test("a closing quote followed by any blank is fine")
    func closingQuoteThenBlank() throws {
        for blank in [" ", "\t", "\n", "\r", "\u{0B}", "\u{0C}"] {
            #expect(try Self.split("\"a\"\(blank)b") == [bytes("a"), bytes("b")], "blank \(blank.debugDescription)")
            #expect(try Self.split("'a'\(blank)b") == [bytes("a"), bytes("b")])
        }
    }

    @Test("UTF-8 and NUL bytes pass through")
    func utf8AndNUL() throws {
        #expect(try Self.split("SET 日本 \"😀 é\" 'ü'") == [bytes("SET"), bytes("日本"), bytes("😀 é"), bytes("ü")])
        #expect(try Tokenizer.split([0x53, 0x00, 0x20, 0x00]) == [[0x53, 0x00], [0x00]])
        #expect(try Tokenizer.split([0x22, 0x00, 0x20, 0x00, 0x22]) == [[0x00, 0x20, 0x00]])
        #expect(try Tokenizer.split([0xFF, 0xFE, 0x20, 0xC3]) == [[0xFF, 0xFE], [0xC3]], "invalid UTF-8 is just bytes")
    }

    @Test("many arguments, and long ones")
    func manyArguments() throws {
        let words = (0..<5000).map { "w\($0)" }
        #expect(try Self.split(words.joined(separator: " ")) == words.map(bytes))
        let long = String(repeating: "x", count: 100_000)
        #expect(try Self.split("SET k \"\(long)\"") == [bytes("SET"), bytes("k"), bytes(long)])
    }

    @Test("the buffer-pointer entry point agrees with the array one")
    func pointerEntryPoint() throws {
        let line = bytes(#"SET "a b" 'c' d"#)
        let viaPointer = try line.withUnsafeBytes { try Tokenizer.split($0) }
        #expect(viaPointer == [bytes("SET"), bytes("a b"), bytes("c"), bytes("d")])
    }

    @Test("random lines agree with a port of redis-cli's sdssplitargs", arguments: [1, 2, 3] as [UInt64])
    func differential(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        // Bytes that matter to the rules, and a few that do not.
        let alphabet: [UInt8] = Array(#" "'\xAf0nrtab"#.utf8) + [0x09, 0x00, 0xC3, 0xA9, UInt8(ascii: "\"")]
        for _ in 0..<20_000 {
            let line = (0..<Int.random(in: 0...12, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            let expected = referenceSplit(line)
            let actual = try? Tokenizer.split(line)
            #expect(actual == expected, "line: \(line) = \(text(line).debugDescription)")
            if actual != expected { return }
        }
    }
}
