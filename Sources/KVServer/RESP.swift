import KVShell
import NIOCore

/// A value in the Redis serialization protocol, version 2 or 3.
public enum RESPValue: Equatable, Sendable {
    case simpleString(String)
    case error(String)
    case integer(Int)
    case bulkString([UInt8])
    case null
    case array([RESPValue])
    /// RESP3 map; sent to RESP2 clients as a flat array of keys and values.
    case map([(RESPValue, RESPValue)])

    public static func == (lhs: RESPValue, rhs: RESPValue) -> Bool {
        switch (lhs, rhs) {
        case (.simpleString(let a), .simpleString(let b)): return a == b
        case (.error(let a), .error(let b)): return a == b
        case (.integer(let a), .integer(let b)): return a == b
        case (.bulkString(let a), .bulkString(let b)): return a == b
        case (.null, .null): return true
        case (.array(let a), .array(let b)): return a == b
        case (.map(let a), .map(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    static func bulk(_ text: String) -> RESPValue { .bulkString(Array(text.utf8)) }

    /// The shell's reply as the server sends it.
    init(_ reply: Reply) {
        switch reply {
        case .ok: self = .simpleString("OK")
        case .value(let bytes): self = .bulkString(bytes)
        case .null: self = .null
        case .integer(let number): self = .integer(number)
        case .array(let items): self = .array(items.map(RESPValue.init))
        case .text(let text): self = .bulk(text)
        case .none: self = .simpleString("OK")
        }
    }

    /// Appends the encoding of `self` for a client speaking `protocolVersion` (2 or 3).
    func write(to buffer: inout ByteBuffer, protocolVersion: Int) {
        switch self {
        case .simpleString(let text):
            buffer.writeStaticString("+")
            buffer.writeString(text)
            buffer.writeStaticString("\r\n")
        case .error(let text):
            buffer.writeStaticString("-")
            buffer.writeString(text)
            buffer.writeStaticString("\r\n")
        case .integer(let number):
            buffer.writeStaticString(":")
            buffer.writeString(String(number))
            buffer.writeStaticString("\r\n")
        case .bulkString(let bytes):
            buffer.writeStaticString("$")
            buffer.writeString(String(bytes.count))
            buffer.writeStaticString("\r\n")
            buffer.writeBytes(bytes)
            buffer.writeStaticString("\r\n")
        case .null:
            if protocolVersion >= 3 { buffer.writeStaticString("_\r\n") } else { buffer.writeStaticString("$-1\r\n") }
        case .array(let items):
            buffer.writeStaticString("*")
            buffer.writeString(String(items.count))
            buffer.writeStaticString("\r\n")
            for item in items { item.write(to: &buffer, protocolVersion: protocolVersion) }
        case .map(let pairs):
            buffer.writeString(protocolVersion >= 3 ? "%\(pairs.count)\r\n" : "*\(pairs.count * 2)\r\n")
            for (key, value) in pairs {
                key.write(to: &buffer, protocolVersion: protocolVersion)
                value.write(to: &buffer, protocolVersion: protocolVersion)
            }
        }
    }
}

/// What the decoder makes of the bytes a client sends.
public enum RESPRequest: Equatable, Sendable {
    /// A command: its name and arguments.
    case command([[UInt8]])
    /// Bytes that are not RESP; the text follows `Protocol error: ` and the connection is then closed.
    case protocolError(String)
}

/// Decodes RESP requests (multibulk arrays of bulk strings) and inline commands (a line of text split with the
/// shell's quoting rules, as telnet sends), with Redis's limits. It never allocates what a client merely
/// announces: arrays grow as their elements arrive, and a bulk string is copied once all of it is there.
public struct RESPRequestDecoder: ByteToMessageDecoder {
    public typealias InboundOut = RESPRequest

    /// Redis's `proto-max-bulk-len`.
    public var maxBulkLength = 512 << 20
    /// Redis's limit on the element count of one request.
    public var maxArrayLength = 1 << 20
    /// Redis's limit on an inline request, and on the header lines of a multibulk one.
    public var maxInlineLength = 64 << 10

    private enum State {
        case idle
        /// Inside `*N`: `remaining` elements to go, and the length of the bulk string whose header was read.
        case array(remaining: Int, arguments: [[UInt8]], bulkLength: Int?)
        /// A protocol error was reported; everything after it is ignored until the connection closes.
        case failed
    }

    private var state = State.idle

    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let request = next(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(request))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }

    /// The next complete request in `buffer` (consuming its bytes), or nil if more bytes are needed.
    public mutating func next(_ buffer: inout ByteBuffer) -> RESPRequest? {
        while true {
            switch state {
            case .failed:
                buffer.moveReaderIndex(to: buffer.writerIndex)
                return nil
            case .idle:
                guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
                if first == UInt8(ascii: "*") {
                    let line: Substring
                    switch headerLine(&buffer) {
                    case .incomplete: return nil
                    case .tooLong: return fail("too big mbulk count string")
                    case .line(let text): line = text
                    }
                    guard let count = Int(line), count <= maxArrayLength else { return fail("invalid multibulk length") }
                    if count <= 0 { continue }  // `*0` and `*-1` are no command, as in Redis
                    var arguments: [[UInt8]] = []
                    arguments.reserveCapacity(min(count, 1024))
                    state = .array(remaining: count, arguments: arguments, bulkLength: nil)
                } else {
                    guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
                        if buffer.readableBytes > maxInlineLength { return fail("too big inline request") }
                        return nil
                    }
                    let length = newline - buffer.readerIndex
                    guard length <= maxInlineLength else { return fail("too big inline request") }
                    let arguments: [[UInt8]]
                    do {
                        arguments = try buffer.readableBytesView.prefix(length).withContiguousStorageIfAvailable {
                            try Tokenizer.split(UnsafeRawBufferPointer($0))
                        } ?? Tokenizer.split(Array(buffer.readableBytesView.prefix(length)))
                    } catch {
                        return fail("unbalanced quotes in request")
                    }
                    buffer.moveReaderIndex(forwardBy: length + 1)
                    if !arguments.isEmpty { return .command(arguments) }
                }
            case .array(var remaining, var arguments, let bulkLength):
                let length: Int
                if let bulkLength {
                    length = bulkLength
                } else {
                    guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
                    guard first == UInt8(ascii: "$") else {
                        return fail("expected '$', got '\(Character(Unicode.Scalar(first)))'")
                    }
                    let line: Substring
                    switch headerLine(&buffer) {
                    case .incomplete: return nil
                    case .tooLong: return fail("too big bulk count string")
                    case .line(let text): line = text
                    }
                    guard let parsed = Int(line), parsed >= 0, parsed <= maxBulkLength else { return fail("invalid bulk length") }
                    length = parsed
                    state = .array(remaining: remaining, arguments: arguments, bulkLength: length)
                }
                guard buffer.readableBytes >= length + 2 else { return nil }
                guard let bytes = buffer.readBytes(length: length) else { return nil }
                guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { return fail("expected CRLF after a bulk string") }
                arguments.append(bytes)
                remaining -= 1
                if remaining == 0 {
                    state = .idle
                    return .command(arguments)
                }
                state = .array(remaining: remaining, arguments: arguments, bulkLength: nil)
            }
        }
    }

    private mutating func fail(_ message: String) -> RESPRequest {
        state = .failed
        return .protocolError(message)
    }

    private enum HeaderLine {
        case incomplete, tooLong
        case line(Substring)
    }

    /// Reads a header line (`*3` or `$5`, without its marker and CRLF) if all of it is there.
    private func headerLine(_ buffer: inout ByteBuffer) -> HeaderLine {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            return buffer.readableBytes > maxInlineLength ? .tooLong : .incomplete
        }
        let length = newline - buffer.readerIndex
        guard length <= maxInlineLength, var line = buffer.readString(length: length) else { return .tooLong }
        buffer.moveReaderIndex(forwardBy: 1)
        if line.hasSuffix("\r") { line.removeLast() }
        return .line(line.dropFirst())
    }
}
