#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOCore

/// A value in the Redis serialization protocol, version 2 or 3: what the server sends, what a client reads (the
/// shell's `--connect`, the replication link, the tests) and what the command layer replies.
///
/// RESP3's sets and pushes are read as arrays, verbatim strings as bulk strings and bulk errors as errors: kvsh
/// treats them alike, so one case each is enough.
public enum RESPValue: Equatable, Sendable {
    /// `+text`
    case simpleString(String)
    /// `-CODE text` (and RESP3's `!`)
    case error(String)
    /// `:n`
    case integer(Int)
    /// `$n` and n bytes
    case bulkString([UInt8])
    /// `$-1` / `*-1` in RESP2, `_` in RESP3
    case null
    /// `*n`
    case array([RESPValue])
    /// RESP3 map (`%n`); sent to RESP2 clients as a flat array of keys and values.
    case map([(RESPValue, RESPValue)])
    /// RESP3 boolean (`#t`, `#f`); `:1` / `:0` in RESP2.
    case boolean(Bool)
    /// RESP3 double (`,`) or big number (`(`), kept as the text sent (`1.5`, `inf`, `3492890328409238509324850943850943825024385`).
    case number(String)

    public static func == (lhs: RESPValue, rhs: RESPValue) -> Bool {
        switch (lhs, rhs) {
        case (.simpleString(let a), .simpleString(let b)): return a == b
        case (.error(let a), .error(let b)): return a == b
        case (.integer(let a), .integer(let b)): return a == b
        case (.bulkString(let a), .bulkString(let b)): return a == b
        case (.null, .null): return true
        case (.array(let a), .array(let b)): return a == b
        case (.map(let a), .map(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.boolean(let a), .boolean(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        default: return false
        }
    }

    /// A bulk string holding `text`'s UTF-8 bytes.
    public static func bulk(_ text: String) -> RESPValue { .bulkString(Array(text.utf8)) }

    /// Redis's `+OK`.
    public static let ok = RESPValue.simpleString("OK")

    /// The error code of an error reply: its first word (`ERR`, `WRONGTYPE`, `NOPERM`, ...); nil for other values.
    public var errorCode: Substring? {
        guard case .error(let text) = self else { return nil }
        return text.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).first
    }

    /// Appends the encoding of `self` for a client speaking `protocolVersion` (2 or 3).
    public func write(to buffer: inout ByteBuffer, protocolVersion: Int) {
        switch self {
        case .simpleString(let text):
            buffer.writeStaticString("+")
            Self.writeLine(text, to: &buffer)
        case .error(let text):
            buffer.writeStaticString("-")
            Self.writeLine(text, to: &buffer)
        case .integer(let number):
            buffer.writeStaticString(":")
            buffer.writeDecimal(number)
            buffer.writeStaticString("\r\n")
        case .bulkString(let bytes):
            bytes.withUnsafeBytes { Self.writeBulkString($0, to: &buffer) }
        case .null:
            if protocolVersion >= 3 { buffer.writeStaticString("_\r\n") } else { buffer.writeStaticString("$-1\r\n") }
        case .array(let items):
            buffer.writeStaticString("*")
            buffer.writeDecimal(items.count)
            buffer.writeStaticString("\r\n")
            for item in items { item.write(to: &buffer, protocolVersion: protocolVersion) }
        case .map(let pairs):
            buffer.writeString(protocolVersion >= 3 ? "%\(pairs.count)\r\n" : "*\(pairs.count * 2)\r\n")
            for (key, value) in pairs {
                key.write(to: &buffer, protocolVersion: protocolVersion)
                value.write(to: &buffer, protocolVersion: protocolVersion)
            }
        case .boolean(let value):
            if protocolVersion >= 3 { buffer.writeStaticString(value ? "#t\r\n" : "#f\r\n") } else { buffer.writeStaticString(value ? ":1\r\n" : ":0\r\n") }
        case .number(let text):
            if protocolVersion >= 3 {
                buffer.writeStaticString(Double(text) != nil || ["inf", "-inf", "nan"].contains(text) ? "," : "(")
                Self.writeLine(text, to: &buffer)
            } else {
                Array(text.utf8).withUnsafeBytes { Self.writeBulkString($0, to: &buffer) }
            }
        }
    }

    /// `arguments` as a client sends a command (and as a primary sends its command stream): an array of bulk strings.
    public static func writeCommand(_ arguments: [[UInt8]], to buffer: inout ByteBuffer) {
        buffer.writeStaticString("*")
        buffer.writeDecimal(arguments.count)
        buffer.writeStaticString("\r\n")
        for argument in arguments { argument.withUnsafeBytes { writeBulkString($0, to: &buffer) } }
    }

    /// ``writeCommand(_:to:)`` appending to an array of bytes, for the blocking client.
    public static func appendCommand(_ arguments: [[UInt8]], to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "*"))
        RedisInteger.append(arguments.count, to: &bytes)
        bytes.append(contentsOf: [0x0D, 0x0A])
        for argument in arguments {
            bytes.append(UInt8(ascii: "$"))
            RedisInteger.append(argument.count, to: &bytes)
            bytes.append(contentsOf: [0x0D, 0x0A])
            bytes.append(contentsOf: argument)
            bytes.append(contentsOf: [0x0D, 0x0A])
        }
    }

    /// Writes a simple string's or an error's text and its CRLF. The text can echo what a client sent (an unknown
    /// command's name, a path): a CR or LF in it would end the line early and let the rest pass for another reply,
    /// so, as Redis does, each becomes a space.
    public static func writeLine(_ text: String, to buffer: inout ByteBuffer) {
        if text.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A }) {
            buffer.writeBytes(text.utf8.map { $0 == 0x0D || $0 == 0x0A ? UInt8(ascii: " ") : $0 })
        } else {
            buffer.writeString(text)
        }
        buffer.writeStaticString("\r\n")
    }

    /// Appends `bytes` as a bulk string (the same in RESP2 and RESP3). Fills the whole encoding in one reserved
    /// run of bytes: each separate ByteBuffer write costs a capacity check and an exclusivity check, and GET
    /// replies are written millions of times a second.
    @inline(__always)
    public static func writeBulkString(_ bytes: UnsafeRawBufferPointer, to buffer: inout ByteBuffer) {
        var digits = 1
        var rest = bytes.count / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        let total = 1 + digits + 2 + bytes.count + 2
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
            out[0] = UInt8(ascii: "$")
            var length = bytes.count
            for index in stride(from: digits, through: 1, by: -1) {
                out[index] = UInt8(ascii: "0") + UInt8(length % 10)
                length /= 10
            }
            out[digits + 1] = 0x0D
            out[digits + 2] = 0x0A
            if let base = bytes.baseAddress, let target = out.baseAddress {
                (target + digits + 3).copyMemory(from: base, byteCount: bytes.count)
            }
            out[total - 2] = 0x0D
            out[total - 1] = 0x0A
            return total
        }
    }
}

extension ByteBuffer {
    /// Writes `value` in decimal ASCII without building a String (lengths and integers in every reply).
    @inline(__always)
    public mutating func writeDecimal(_ value: Int) {
        if value >= 0 && value < 10 {
            writeInteger(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for Int.min
        withUnsafeMutableBytes(of: &digits) { scratch in
            var magnitude = value.magnitude
            var index = scratch.count
            repeat {
                index -= 1
                scratch[index] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 {
                index -= 1
                scratch[index] = UInt8(ascii: "-")
            }
            writeBytes(UnsafeRawBufferPointer(rebasing: scratch[index...]))
        }
    }
}

