import FoundationEssentials
import KVTestSupport
import Testing
@testable import KVShell
@testable import KVCommands
@testable import RESP

@Suite("Output formats")
struct OutputFormatTests {
    static func render(_ reply: Reply, _ format: OutputFormat) -> [UInt8] {
        var output: [UInt8] = []
        format.append(reply, to: &output)
        return output
    }

    static func renderText(_ reply: Reply, _ format: OutputFormat) -> String { text(render(reply, format)) }

    @Test("the table of Docs/Commands.md: OK, value, nil, integer in each format")
    func basicReplies() {
        #expect(Self.renderText(.ok, .human) == "OK\n")
        #expect(Self.renderText(.ok, .raw) == "OK\n")
        #expect(Self.renderText(.ok, .json) == "\"OK\"\n")
        #expect(Self.renderText(.value(bytes("quoted value")), .human) == "\"quoted value\"\n")
        #expect(Self.renderText(.value(bytes("quoted value")), .raw) == "quoted value\n")
        #expect(Self.renderText(.value(bytes("json string")), .json) == "\"json string\"\n")
        #expect(Self.renderText(.null, .human) == "(nil)\n")
        #expect(Self.renderText(.null, .raw) == "\n")
        #expect(Self.renderText(.null, .json) == "null\n")
        #expect(Self.renderText(.integer(3), .human) == "(integer) 3\n")
        #expect(Self.renderText(.integer(3), .raw) == "3\n")
        #expect(Self.renderText(.integer(3), .json) == "3\n")
        #expect(Self.renderText(.integer(0), .human) == "(integer) 0\n")
        #expect(Self.renderText(.value([]), .human) == "\"\"\n")
        #expect(Self.renderText(.value([]), .raw) == "\n")
        #expect(Self.renderText(.value([]), .json) == "\"\"\n")
    }

    @Test("text replies print as-is in every format; none prints nothing", arguments: OutputFormat.allCases)
    func textAndNone(format: OutputFormat) {
        #expect(Self.renderText(.text("hello"), format) == "hello\n")
        #expect(Self.renderText(.text("two\nlines\n"), format) == "two\nlines\n")
        #expect(Self.render(.none, format).isEmpty)
        var output = bytes("before")
        format.append(.ok, to: &output)
        #expect(text(output).hasPrefix("before"), "append adds to what is there")
    }

    @Test("raw writes values byte for byte")
    func raw() {
        let value: [UInt8] = [0, 1, 0x0A, 0xFF, 0xC3, 0xA9, 0x22, 0x5C]
        #expect(Self.render(.value(value), .raw) == value + [0x0A])
    }

    @Test("human: quotes and backslashes escaped, named escapes for \\n \\r \\t \\a \\b")
    func humanEscapes() {
        #expect(Self.renderText(.value(bytes(#"a"b\c"#)), .human) == #""a\"b\\c""# + "\n")
        #expect(Self.renderText(.value([0x0A, 0x0D, 0x09, 0x07, 0x08]), .human) == #""\n\r\t\a\b""# + "\n")
        #expect(Self.renderText(.value(bytes("it's ok")), .human) == "\"it's ok\"\n")
    }

    @Test("human: other control bytes and DEL as \\xHH in lower case")
    func humanControlBytes() {
        #expect(Self.renderText(.value([0x00, 0x01, 0x0B, 0x0C, 0x1B, 0x1F, 0x7F]), .human)
                == #""\x00\x01\x0b\x0c\x1b\x1f\x7f""# + "\n")
    }

    @Test("human: well-formed UTF-8 prints as text, invalid UTF-8 and C1 controls as \\xHH")
    func humanUTF8() {
        #expect(Self.renderText(.value(bytes("héllo 日本 🙂")), .human) == "\"héllo 日本 🙂\"\n")
        let cases: [([UInt8], String)] = [
            ([0xFF], #"\xff"#),
            ([0xC3, 0x28], #"\xc3("#),                       // a lead byte without its continuation
            ([0xA9], #"\xa9"#),                               // a lone continuation byte
            ([0xC2, 0x85], #"\xc2\x85"#),                     // U+0085, a C1 control
            ([0xC2, 0xA0], "\u{A0}"),                         // U+00A0, printable
            ([0xC0, 0x80], #"\xc0\x80"#),                     // overlong NUL
            ([0xE0, 0x80, 0x80], #"\xe0\x80\x80"#),           // overlong
            ([0xED, 0xA0, 0x80], #"\xed\xa0\x80"#),           // a UTF-16 surrogate
            ([0xF4, 0x90, 0x80, 0x80], #"\xf4\x90\x80\x80"#), // above U+10FFFF
            ([0xF5, 0x80, 0x80, 0x80], #"\xf5\x80\x80\x80"#),
            ([0xE6, 0x97], #"\xe6\x97"#),                     // truncated at the end
            ([0xE6, 0x97, 0xA5], "日"),
            ([0xF0, 0x9F, 0x99, 0x82], "🙂"),
            ([0x61, 0xE6, 0x41], #"a\xe6A"#),
        ]
        for (value, expected) in cases {
            #expect(Self.renderText(.value(value), .human) == "\"\(expected)\"\n", "value \(value)")
        }
    }

    @Test("json: escapes, control characters as \\u00XX, UTF-8 as is")
    func jsonStrings() {
        #expect(Self.renderText(.value(bytes("a\"b\\c\nd\re\tf")), .json) == #""a\"b\\c\nd\re\tf""# + "\n")
        #expect(Self.renderText(.value([0x00, 0x01, 0x08, 0x0C, 0x1F, 0x7F]), .json)
                == #""\u0000\u0001\u0008\u000c\u001f\u007f""# + "\n")
        #expect(Self.renderText(.value(bytes("é/日🙂\u{2028}")), .json) == "\"é/日🙂\u{2028}\"\n")
    }

    @Test("json: values that are not UTF-8 become {\"base64\":...}")
    func jsonBase64() {
        #expect(Self.renderText(.value([0xFF]), .json) == #"{"base64":"/w=="}"# + "\n")
        #expect(Self.renderText(.value([0xFF, 0xFE]), .json) == #"{"base64":"//4="}"# + "\n")
        #expect(Self.renderText(.value([0xC3, 0x28]), .json) == #"{"base64":"wyg="}"# + "\n")
        #expect(Self.renderText(.value([0x66, 0x6F, 0x80, 0x62, 0x61, 0x72]), .json) == #"{"base64":"Zm+AYmFy"}"# + "\n")
        #expect(Self.renderText(.value([0xED, 0xA0, 0x80]), .json) == #"{"base64":"7aCA"}"# + "\n", "surrogates are not UTF-8")
    }

    /// Random byte strings biased towards the bytes the quoting rules care about, and towards UTF-8.
    static func randomValue(_ rng: inout SplitMix64) -> [UInt8] {
        let special: [UInt8] = [0x00, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x22, 0x27, 0x5C, 0x78, 0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xED, 0xF4, 0xFF]
        var value: [UInt8] = []
        for _ in 0..<Int.random(in: 0...24, using: &rng) {
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: value.append(special.randomElement(using: &rng)!)
            case 1: value.append(UInt8.random(in: 0...255, using: &rng))
            case 2: value.append(contentsOf: bytes(["é", "日", "🙂", "\u{85}", "\u{A0}", "\\x41", "\\", "\""].randomElement(using: &rng)!))
            default: value.append(UInt8.random(in: 0x20...0x7E, using: &rng))
            }
        }
        return value
    }

    @Test("human output tokenizes back to the same bytes", arguments: [1, 2, 3] as [UInt64])
    func humanRoundTrip(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        for _ in 0..<5000 {
            let value = Self.randomValue(&rng)
            let printed = Self.render(.value(value), .human)
            #expect(printed.last == 0x0A)
            #expect(!printed.dropLast().contains(0x0A), "a value prints on one line")
            let parsed = try Tokenizer.split(printed)
            #expect(parsed == [value], "value \(value) printed as \(text(printed).debugDescription)")
            if parsed != [value] { return }
        }
    }

    @Test("a line of several human-printed values tokenizes back to them")
    func humanRoundTripLine() throws {
        var rng = SplitMix64(seed: 77)
        for _ in 0..<500 {
            let values = (0..<Int.random(in: 1...5, using: &rng)).map { _ in Self.randomValue(&rng) }
            var line: [UInt8] = []
            for value in values {
                OutputFormat.human.append(.value(value), to: &line)
                line[line.count - 1] = [0x20, 0x09].randomElement(using: &rng)!
            }
            #expect(try Tokenizer.split(line) == values)
        }
    }

    @Test("json output parses back to the same string, or base64 to the same bytes", arguments: [1, 2] as [UInt64])
    func jsonRoundTrip(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        for i in 0..<2000 {
            let value: [UInt8]
            if i % 2 == 0 {
                // A valid UTF-8 string of random scalars, control characters included.
                var scalars = String.UnicodeScalarView()
                for _ in 0..<Int.random(in: 0...12, using: &rng) {
                    let ranges: [ClosedRange<UInt32>] = [0...0x7F, 0x80...0x7FF, 0x800...0xD7FF, 0xE000...0xFFFF, 0x10000...0x10FFFF]
                    scalars.append(Unicode.Scalar(UInt32.random(in: ranges.randomElement(using: &rng)!, using: &rng))!)
                }
                value = Array(String(scalars).utf8)
            } else {
                value = Self.randomValue(&rng)
            }
            let printed = Self.render(.value(value), .json)
            #expect(printed.last == 0x0A)
            let document = Data(bytes("[") + printed.dropLast() + bytes("]"))
            if let string = String(validating: value, as: UTF8.self) {
                let decoded = try JSONDecoder().decode([String].self, from: document)
                #expect(decoded == [string], "printed \(text(printed).debugDescription)")
            } else {
                let decoded = try JSONDecoder().decode([[String: String]].self, from: document)
                let base64 = try #require(decoded.first?["base64"])
                #expect(Data(base64Encoded: base64).map(Array.init) == value)
            }
        }
    }

    // MARK: Arrays

    static func values(_ items: String...) -> Reply { .array(items.map { .value(bytes($0)) }) }

    @Test("arrays: flat, nested (pairs), empty, nested empty, in each format")
    func arrays() {
        let flat = Self.values("a", "b c")
        #expect(Self.renderText(flat, .human) == "1) \"a\"\n2) \"b c\"\n")
        #expect(Self.renderText(flat, .raw) == "a\nb c\n")
        #expect(Self.renderText(flat, .json) == #"["a","b c"]"# + "\n")

        let pairs = Reply.array([Self.values("a", "1"), Self.values("b", "2")])
        #expect(Self.renderText(pairs, .human) == "1) 1) \"a\"\n   2) \"1\"\n2) 1) \"b\"\n   2) \"2\"\n")
        #expect(Self.renderText(pairs, .raw) == "a\n1\nb\n2\n")
        #expect(Self.renderText(pairs, .json) == #"[["a","1"],["b","2"]]"# + "\n")

        #expect(Self.renderText(.array([]), .human) == "(empty array)\n")
        #expect(Self.renderText(.array([]), .raw) == "", "no items, no lines")
        #expect(Self.renderText(.array([]), .json) == "[]\n")

        let scan = Reply.array([.value(bytes("0")), .array([])])
        #expect(Self.renderText(scan, .human) == "1) \"0\"\n2) (empty array)\n")
        #expect(Self.renderText(scan, .raw) == "0\n")
        #expect(Self.renderText(scan, .json) == #"["0",[]]"# + "\n")
    }

    @Test("arrays: every kind of item; values escaped as on their own")
    func arrayItems() {
        let items = Reply.array([.value([0x00, 0x0A, 0xFF]), .value(bytes("é\"")), .integer(-4), .null, .ok, .value([]), .none])
        #expect(Self.renderText(items, .human) == #"""
            1) "\x00\n\xff"
            2) "é\""
            3) (integer) -4
            4) (nil)
            5) OK
            6) ""
            7) (nil)

            """#)
        #expect(Self.render(items, .raw) == [0x00, 0x0A, 0xFF, 0x0A] + bytes("é\"\n-4\n\nOK\n\n\n"))
        #expect(Self.renderText(items, .json) == #"[{"base64":"AAr/"},"é\"",-4,null,"OK","",null]"# + "\n")
        // Items print exactly as they print alone (less the newline).
        for item in [Reply.value(bytes("tab\there")), .integer(7), .null, .ok] {
            #expect(Self.renderText(.array([item]), .human) == "1) " + Self.renderText(item, .human))
            #expect(Self.renderText(.array([item]), .raw) == Self.renderText(item, .raw))
            #expect(Self.renderText(.array([item]), .json) == "[" + Self.renderText(item, .json).dropLast() + "]\n")
        }
    }

    @Test("human: with 10 items or more the numbers are right-aligned, and nested lines indented past them")
    func humanWidths() {
        let ten = Reply.array((1...10).map { .value(bytes("k\($0)")) })
        #expect(Self.renderText(ten, .human) == (1...10).map { ($0 < 10 ? " " : "") + "\($0)) \"k\($0)\"\n" }.joined())

        let tenPairs = Reply.array((1...10).map { Self.values("k\($0)", "\($0)") })
        #expect(Self.renderText(tenPairs, .human) == (1...10).map {
            ($0 < 10 ? " " : "") + "\($0)) 1) \"k\($0)\"\n    2) \"\($0)\"\n"
        }.joined())

        let innerTen = Reply.array([.array((1...10).map { .integer($0) }), .value(bytes("x"))])
        #expect(Self.renderText(innerTen, .human) == """
            1)  1) (integer) 1
                2) (integer) 2
                3) (integer) 3
                4) (integer) 4
                5) (integer) 5
                6) (integer) 6
                7) (integer) 7
                8) (integer) 8
                9) (integer) 9
               10) (integer) 10
            2) "x"

            """)

        let hundred = Reply.array((1...100).map { .integer($0) })
        let lines = Self.renderText(hundred, .human).split(separator: "\n")
        #expect(lines.count == 100)
        #expect(lines[0] == "  1) (integer) 1")
        #expect(lines[9] == " 10) (integer) 10")
        #expect(lines[99] == "100) (integer) 100")
    }

    @Test("nesting three deep, with empty arrays inside")
    func deepNesting() {
        let deep = Reply.array([.array([.array([.value(bytes("x"))]), .array([])]), .array([])])
        #expect(Self.renderText(deep, .human) == """
            1) 1) 1) "x"
               2) (empty array)
            2) (empty array)

            """)
        #expect(Self.renderText(deep, .raw) == "x\n")
        #expect(Self.renderText(deep, .json) == #"[[["x"],[]],[]]"# + "\n")
    }

    @Test("json arrays parse back to the same values", arguments: [1, 2] as [UInt64])
    func jsonArraysRoundTrip(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        for _ in 0..<300 {
            let pairs = (0..<Int.random(in: 0...6, using: &rng)).map { _ in
                (Self.randomValue(&rng).filter { $0 < 0x80 }, Self.randomValue(&rng).filter { $0 < 0x80 })
            }
            let reply = Reply.array(pairs.map { .array([.value($0.0), .value($0.1)]) })
            let printed = Self.render(reply, .json)
            #expect(printed.last == 0x0A)
            let decoded = try JSONDecoder().decode([[String]].self, from: Data(printed))
            #expect(decoded.map { $0.map { Array($0.utf8) } } == pairs.map { [$0.0, $0.1] })
        }
    }

    @Test("formatMilliseconds: three decimals, in milliseconds")
    func milliseconds() {
        #expect(formatMilliseconds(.zero) == "0.000 ms")
        #expect(formatMilliseconds(.microseconds(1500)) == "1.500 ms")
        #expect(formatMilliseconds(.microseconds(5)) == "0.005 ms")
        #expect(formatMilliseconds(.milliseconds(1234)) == "1234.000 ms")
        #expect(formatMilliseconds(.seconds(2) + .microseconds(42)) == "2000.042 ms")
    }
}
