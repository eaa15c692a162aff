#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOCore

/// A request that arrived whole in one read, lent in place by ``RESPRequestDecoder/decode(_:inPlace:decoded:)``:
/// valid only during the call it is passed to.
public struct BorrowedRequest {
    /// The request's bytes, from its `*` to the CRLF after its last argument.
    public let bytes: UnsafeRawBufferPointer
    /// Where each argument lies in `bytes`, the command name first.
    public let arguments: UnsafeBufferPointer<Range<Int>>

    /// The bytes of argument `index` (0 is the command name).
    public subscript(index: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[arguments[index]])
    }

    /// Copies of the arguments, for a request that is queued or runs on the general path.
    public func copied() -> [[UInt8]] {
        arguments.map { Array(bytes[$0]) }
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
public struct RESPRequestDecoder {
    /// The largest requests a client may send.
    public struct Limits: Sendable {
        /// Redis's `proto-max-bulk-len`.
        public var maxBulkLength = 512 << 20
        /// Redis's limit on the element count of one request.
        public var maxArrayLength = 1 << 20
        /// Redis's limit on an inline request, and on the header lines of a multibulk one.
        public var maxInlineLength = 64 << 10
        /// The most argument bytes one request may hold, as Redis's `client-query-buffer-limit` (1 GiB): a client
        /// cannot make the server buffer more for it, however many bulk strings of the maximum length it announces.
        public var maxRequestBytes = 1 << 30

        public init() {}
    }

    public var limits = Limits()

    private enum Mode {
        case idle
        /// Inside `*N`: see `remaining`, `arguments` and `bulkLength`.
        case array
        /// A protocol error was reported; everything after it is ignored until the connection closes.
        case failed
    }

    // Kept as separate properties rather than an enum with payloads, so that appending an argument mutates
    // the array in place instead of copying it out of the enum and back.
    private var mode = Mode.idle
    private var remaining = 0
    private var arguments: [[UInt8]] = []
    /// The bytes of `arguments` and of the bulk string announced by `bulkLength`, against `maxRequestBytes`.
    private var argumentBytes = 0
    /// The length of the bulk string whose `$` header has been read, if any.
    private var bulkLength: Int?
    /// How far ``firstNewline(in:)`` has searched without finding a line end: from which reader index, and how many
    /// bytes from there hold no LF.
    private var lineSearch = (readerIndex: -1, clean: 0)
    /// Every byte ``firstNewline(in:)`` has examined, for the tests: a line arriving in pieces is examined once.
    private(set) var lineSearchBytes = 0

    public init() {}

    /// Argument ranges of the request lent in place; reused, so that lending allocates nothing.
    private var lentArguments: [Range<Int>] = []

    /// Decodes every request in `buffer`, consuming all of its bytes but those of a request still arriving.
    ///
    /// A request that lies whole in the buffer (the common case: one read brings a pipeline of them) is lent to
    /// `inPlace` without copying or allocating anything; `decoded` gets the others, with their arguments copied:
    /// requests that span reads, inline commands, and protocol errors (worded by ``next(_:)``). Requests reach
    /// the two callbacks in the order they arrived.
    public mutating func decode(_ buffer: inout ByteBuffer, inPlace: (BorrowedRequest) -> Void,
                                decoded: (RESPRequest) -> Void) {
        while buffer.readableBytes > 0 {
            if mode == .idle {
                let consumed = buffer.withUnsafeReadableBytes { bytes in
                    var offset = 0
                    while let (length, argumentCount) = Self.completeRequest(in: UnsafeRawBufferPointer(rebasing: bytes[offset...]),
                                                                             limits: limits, arguments: &lentArguments) {
                        let request = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)])
                        lentArguments.withUnsafeBufferPointer {
                            inPlace(BorrowedRequest(bytes: request, arguments: UnsafeBufferPointer(rebasing: $0[..<argumentCount])))
                        }
                        offset += length
                    }
                    return offset
                }
                buffer.moveReaderIndex(forwardBy: consumed)
            }
            guard let request = next(&buffer) else { return }
            decoded(request)
        }
    }

    /// Finds the complete multibulk request at the start of `bytes`: puts each argument's range in `bytes` at the
    /// front of `arguments` and returns the request's length and how many arguments it has. What lies beyond those
    /// in `arguments` is left over from earlier requests: overwriting rather than emptying the array first saves a
    /// call per request. Returns nil when `bytes` does not start with a complete, well-formed request within the
    /// limits (an inline command, a request still arriving, a protocol error, `*0`), which ``next(_:)`` then
    /// decodes or words the error for.
    static func completeRequest(in bytes: UnsafeRawBufferPointer, limits: Limits,
                                arguments: inout [Range<Int>]) -> (length: Int, argumentCount: Int)? {
        guard bytes.count >= 4, bytes[0] == UInt8(ascii: "*") else { return nil }
        var offset = 0
        guard let count = headerNumber(bytes, at: &offset), count > 0, count <= limits.maxArrayLength else { return nil }
        var argumentBytes = 0
        for index in 0..<count {
            guard offset < bytes.count, bytes[offset] == UInt8(ascii: "$"),
                  let length = headerNumber(bytes, at: &offset), length >= 0, length <= limits.maxBulkLength,
                  bytes.count - offset >= length + 2,
                  bytes[offset + length] == 0x0D, bytes[offset + length + 1] == 0x0A else { return nil }
            argumentBytes += length
            guard argumentBytes <= limits.maxRequestBytes else { return nil }  // `next(_:)` words the error
            let range = offset..<(offset + length)
            if index < arguments.count { arguments[index] = range } else { arguments.append(range) }
            offset += length + 2
        }
        return (offset, count)
    }

    /// Parses the number of the CRLF-terminated header line (`*3`, `$5`) at `offset` and moves `offset` past
    /// the line; nil unless the line is complete, ends in CRLF and holds what ``decimal(_:from:to:)`` accepts.
    @inline(__always)
    private static func headerNumber(_ bytes: UnsafeRawBufferPointer, at offset: inout Int) -> Int? {
        var end = offset + 1  // after the marker
        while end < bytes.count, end - offset <= 20, bytes[end] != 0x0D { end += 1 }
        guard bytes.count - end >= 2, bytes[end + 1] == 0x0A, let value = decimal(bytes, from: offset + 1, to: end) else { return nil }
        offset = end + 2
        return value
    }

    /// The number written in `bytes[start..<end]`: an optional `-` and 1 to 18 decimal digits, nothing else.
    @inline(__always)
    private static func decimal(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Int? {
        var index = start
        let negative = index < end && bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        guard index < end, end - index <= 18 else { return nil }
        var value = 0
        while index < end {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit <= 9 else { return nil }
            value = value * 10 + Int(digit)
            index += 1
        }
        return negative ? -value : value
    }

    /// The next complete request in `buffer` (consuming its bytes), or nil if more bytes are needed.
    public mutating func next(_ buffer: inout ByteBuffer) -> RESPRequest? {
        while true {
            switch mode {
            case .failed:
                buffer.moveReaderIndex(to: buffer.writerIndex)
                return nil
            case .idle:
                guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
                if first == UInt8(ascii: "*") {
                    let count: Int
                    switch headerNumber(&buffer) {
                    case .incomplete: return nil
                    case .tooLong: return fail("too big mbulk count string")
                    case .invalid: return fail("invalid multibulk length")
                    case .number(let value): count = value
                    }
                    guard count <= limits.maxArrayLength else { return fail("invalid multibulk length") }
                    if count <= 0 { continue }  // `*0` and `*-1` are no command, as in Redis
                    mode = .array
                    remaining = count
                    arguments = []
                    arguments.reserveCapacity(min(count, 1024))
                    argumentBytes = 0
                    bulkLength = nil
                } else {
                    guard let length = firstNewline(in: buffer) else {
                        if buffer.readableBytes > limits.maxInlineLength { return fail("too big inline request") }
                        return nil
                    }
                    guard length <= limits.maxInlineLength else { return fail("too big inline request") }
                    let inline: [[UInt8]]
                    do {
                        inline = try buffer.readableBytesView.prefix(length).withContiguousStorageIfAvailable {
                            try Tokenizer.split(UnsafeRawBufferPointer($0))
                        } ?? Tokenizer.split(Array(buffer.readableBytesView.prefix(length)))
                    } catch {
                        return fail("unbalanced quotes in request")
                    }
                    buffer.moveReaderIndex(forwardBy: length + 1)
                    if !inline.isEmpty { return .command(inline) }
                }
            case .array:
                let length: Int
                if let bulkLength {
                    length = bulkLength
                } else {
                    guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
                    guard first == UInt8(ascii: "$") else {
                        return fail("expected '$', got '\(Character(Unicode.Scalar(first)))'")
                    }
                    switch headerNumber(&buffer) {
                    case .incomplete: return nil
                    case .tooLong: return fail("too big bulk count string")
                    case .invalid: return fail("invalid bulk length")
                    case .number(let value): length = value
                    }
                    guard length >= 0, length <= limits.maxBulkLength else { return fail("invalid bulk length") }
                    argumentBytes += length
                    guard argumentBytes <= limits.maxRequestBytes else {
                        return fail("request larger than the query buffer limit of \(limits.maxRequestBytes) bytes")
                    }
                    bulkLength = length
                }
                guard buffer.readableBytes >= length + 2, let bytes = buffer.readBytes(length: length) else { return nil }
                guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { return fail("expected CRLF after a bulk string") }
                bulkLength = nil
                arguments.append(bytes)
                remaining -= 1
                if remaining == 0 {
                    mode = .idle
                    defer { arguments = [] }
                    return .command(arguments)
                }
            }
        }
    }

    private mutating func fail(_ message: String) -> RESPRequest {
        mode = .failed
        arguments = []
        return .protocolError(message)
    }

    private enum HeaderNumber {
        case incomplete, tooLong, invalid
        case number(Int)
    }

    /// Reads a header line (`*3` or `$5`) and parses its number from the bytes in place.
    private mutating func headerNumber(_ buffer: inout ByteBuffer) -> HeaderNumber {
        guard let newline = firstNewline(in: buffer) else {
            return buffer.readableBytes > limits.maxInlineLength ? .tooLong : .incomplete
        }
        guard newline <= limits.maxInlineLength else { return .tooLong }
        let value = buffer.withUnsafeReadableBytes { bytes -> Int? in
            var end = newline
            if end > 1 && bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            return Self.decimal(bytes, from: 1, to: end)  // after the marker
        }
        guard let value else { return .invalid }
        buffer.moveReaderIndex(forwardBy: newline + 1)
        return .number(value)
    }

    /// Where the first LF of `buffer`'s readable bytes is, counted from its reader index; nil if it has none.
    ///
    /// A line that arrives a few bytes a read (an inline command or a header typed slowly, or trickled on
    /// purpose) is searched once, not from its start at every read: that was quadratic in its length, so that a
    /// client sending a 64 KB line a byte per segment cost the server seconds of CPU on its event loop. It relies
    /// on what ``decode(_:inPlace:decoded:)`` already asks: the bytes not consumed stay in the buffer, and new ones
    /// are appended after them. A buffer whose reader index moved (a caller that discards read bytes) or that
    /// shrank is searched from its start again.
    private mutating func firstNewline(in buffer: ByteBuffer) -> Int? {
        let skip = lineSearch.readerIndex == buffer.readerIndex && lineSearch.clean <= buffer.readableBytes ? lineSearch.clean : 0
        let found = buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard let base = bytes.baseAddress, bytes.count > skip, let found = memchr(base + skip, 0x0A, bytes.count - skip) else {
                return nil
            }
            return base.distance(to: UnsafeRawPointer(found))
        }
        lineSearchBytes &+= (found.map { $0 + 1 } ?? buffer.readableBytes) - skip
        lineSearch = found == nil ? (buffer.readerIndex, buffer.readableBytes) : (-1, 0)
        return found
    }
}
