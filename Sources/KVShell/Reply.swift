import FoundationEssentials
import KVCommands
import RESP

/// The result of one command, before formatting.
public enum Reply: Equatable, Sendable {
    /// A write succeeded.
    case ok
    /// A value (arbitrary bytes).
    case value([UInt8])
    /// No value: the key does not exist.
    case null
    case integer(Int)
    /// An ordered list of replies (keys, key-value pairs as two-element arrays, a SCAN cursor and its keys).
    /// Items are values, integers, nil, OK or arrays; `none` in an array prints as nil.
    case array([Reply])
    /// Text from a meta-command (help, statistics, summaries), printed as-is in every format.
    case text(String)
    /// Nothing to print.
    case none
}

extension OutputFormat {
    /// Appends `reply` followed by a newline to `output`.
    public func append(_ reply: Reply, to output: inout [UInt8]) {
        switch reply {
        case .none:
            return
        case .ok:
            output.append(contentsOf: self == .json ? Self.jsonOK : Self.ok)
        case .null:
            switch self {
            case .human: output.append(contentsOf: Self.humanNil)
            case .raw: break
            case .json: output.append(contentsOf: Self.jsonNull)
            }
        case .integer(let number):
            if self == .human { output.append(contentsOf: Self.integerPrefix) }
            output.append(contentsOf: String(number).utf8)
        case .value(let bytes):
            switch self {
            case .human: Self.appendQuoted(bytes, to: &output)
            case .raw: output.append(contentsOf: bytes)
            case .json: Self.appendJSON(bytes, to: &output)
            }
        case .text(let text):
            output.append(contentsOf: text.utf8)
            if text.utf8.last == UInt8(ascii: "\n") { return }
        case .array(let items):
            switch self {
            case .human:
                Self.appendHumanArray(items, indent: 0, to: &output)
                return
            case .raw:
                for item in items { append(item == .none ? .null : item, to: &output) }
                return
            case .json:
                Self.appendJSONArray(items, to: &output)
            }
        }
        output.append(UInt8(ascii: "\n"))
    }

    private static let emptyArray = Array("(empty array)\n".utf8)

    /// As redis-cli prints an array on a terminal: `1) item` per line, the numbers right-aligned to the widest
    /// (` 9) `, `10) `); a nested array starts on its parent's line and its later lines are indented past the
    /// parent's number. Ends with a newline.
    static func appendHumanArray(_ items: [Reply], indent: Int, to output: inout [UInt8]) {
        guard !items.isEmpty else {
            output.append(contentsOf: emptyArray)
            return
        }
        let width = decimalDigits(items.count)
        for (offset, item) in items.enumerated() {
            if offset > 0 { output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent)) }
            let number = offset + 1
            output.append(contentsOf: repeatElement(UInt8(ascii: " "), count: width - decimalDigits(number)))
            output.append(contentsOf: String(number).utf8)
            output.append(contentsOf: [UInt8(ascii: ")"), UInt8(ascii: " ")])
            switch item {
            case .array(let nested): appendHumanArray(nested, indent: indent + width + 2, to: &output)
            case .none: OutputFormat.human.append(.null, to: &output)
            default: OutputFormat.human.append(item, to: &output)
            }
        }
    }

    private static func decimalDigits(_ number: Int) -> Int {
        var digits = 1, rest = number / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        return digits
    }

    /// `[item,item]`, no blanks, nested arrays nested; no newline.
    static func appendJSONArray(_ items: [Reply], to output: inout [UInt8]) {
        output.append(UInt8(ascii: "["))
        for (offset, item) in items.enumerated() {
            if offset > 0 { output.append(UInt8(ascii: ",")) }
            switch item {
            case .ok: output.append(contentsOf: jsonOK)
            case .value(let bytes): appendJSON(bytes, to: &output)
            case .null, .none: output.append(contentsOf: jsonNull)
            case .integer(let number): output.append(contentsOf: String(number).utf8)
            case .text(let text): appendJSONString(text.utf8, to: &output)
            case .array(let nested): appendJSONArray(nested, to: &output)
            }
        }
        output.append(UInt8(ascii: "]"))
    }

    private static let ok = Array("OK".utf8)
    private static let jsonOK = Array("\"OK\"".utf8)
    private static let humanNil = Array("(nil)".utf8)
    private static let jsonNull = Array("null".utf8)
    private static let integerPrefix = Array("(integer) ".utf8)
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Double-quoted, with the tokenizer's escapes, so a printed value can be pasted back as an argument.
    /// Printable ASCII and well-formed UTF-8 (other than control characters) print as they are.
    static func appendQuoted(_ bytes: [UInt8], to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\\"), UInt8(ascii: "\""):
                output.append(UInt8(ascii: "\\"))
                output.append(byte)
            case 0x0A: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x07: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "a")])
            case 0x08: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x20...0x7E:
                output.append(byte)
            case 0x80...:
                let length = printableUTF8Length(bytes, at: index)
                if length > 0 {
                    output.append(contentsOf: bytes[index..<(index + length)])
                    index += length
                    continue
                }
                appendHexEscape(byte, to: &output)
            default:
                appendHexEscape(byte, to: &output)
            }
            index += 1
        }
        output.append(UInt8(ascii: "\""))
    }

    private static func appendHexEscape(_ byte: UInt8, to output: inout [UInt8]) {
        output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "x"), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
    }

    /// The length of the well-formed UTF-8 sequence at `index` if it encodes a printable character
    /// (not a C1 control), else 0.
    static func printableUTF8Length(_ bytes: [UInt8], at index: Int) -> Int {
        let lead = bytes[index]
        let length: Int
        var scalar: UInt32
        switch lead {
        case 0xC2...0xDF: length = 2; scalar = UInt32(lead & 0x1F)
        case 0xE0...0xEF: length = 3; scalar = UInt32(lead & 0x0F)
        case 0xF0...0xF4: length = 4; scalar = UInt32(lead & 0x07)
        default: return 0
        }
        guard index + length <= bytes.count else { return 0 }
        for offset in 1..<length {
            let continuation = bytes[index + offset]
            guard continuation & 0xC0 == 0x80 else { return 0 }
            scalar = scalar << 6 | UInt32(continuation & 0x3F)
        }
        let shortest: UInt32 = length == 2 ? 0x80 : (length == 3 ? 0x800 : 0x10000)
        guard scalar >= shortest, scalar <= 0x10FFFF, !(0xD800...0xDFFF).contains(scalar), !(0x80...0x9F).contains(scalar) else {
            return 0
        }
        return length
    }

    /// A JSON string for UTF-8 values; `{"base64":"..."}` for values that are not valid UTF-8, so no byte is lost.
    static func appendJSON(_ bytes: [UInt8], to output: inout [UInt8]) {
        guard String(validating: bytes, as: UTF8.self) != nil else {
            output.append(contentsOf: Array("{\"base64\":\"".utf8))
            output.append(contentsOf: Data(bytes).base64EncodedString().utf8)
            output.append(contentsOf: Array("\"}".utf8))
            return
        }
        appendJSONString(bytes, to: &output)
    }

    /// `bytes` (valid UTF-8) as a JSON string literal.
    static func appendJSONString<Bytes: Sequence<UInt8>>(_ bytes: Bytes, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                output.append(UInt8(ascii: "\\"))
                output.append(byte)
            case 0x0A: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: output.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20, 0x7F:
                output.append(contentsOf: Array("\\u00".utf8))
                output.append(contentsOf: [hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
            default:
                output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}
