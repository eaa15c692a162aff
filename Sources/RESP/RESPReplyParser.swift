/// Where a reply parser gets its bytes: a blocking socket (the shell's client, which waits for more), or a buffer
/// that throws ``RESPParseError/incomplete`` when it runs out (a NIO handler, which then waits for the next read
/// and parses again from the start, as RediStack's translator does).
public protocol RESPByteSource {
    /// The next byte.
    mutating func readByte() throws -> UInt8
    /// The bytes up to the next CRLF, which is consumed and not returned. A line longer than `limit` bytes is a
    /// protocol error (``RESPParseError/invalid(_:)``), found without waiting for its end.
    mutating func readLine(limit: Int) throws -> ArraySlice<UInt8>
    /// The next `count` bytes.
    mutating func readBytes(_ count: Int) throws -> [UInt8]
}

/// Why a reply could not be parsed.
public enum RESPParseError: Error, Equatable, Sendable {
    /// The bytes are not RESP, or exceed a limit: the connection cannot be used any more. The text says what.
    case invalid(String)
    /// A buffer source ran out of bytes before the reply ended: parse again once more have arrived.
    case incomplete
}

/// Parses replies (RESP2, and the RESP3 types a server sends after `HELLO 3`) with bounds on everything a server
/// could announce, so that a hostile or broken server cannot crash the reader or make it allocate what it merely
/// announces.
public struct RESPReplyParser: Sendable {
    /// The deepest aggregates (arrays, maps, sets, pushes) and RESP3 attributes may nest: every one of them is a
    /// level, an attribute as well, since the reply it describes follows it. The parser recurses once per level, so
    /// this bounds its stack. Redis's replies nest a few levels (hiredis allows 7); 128 leaves room for scripts'.
    public static let maxNesting = 128
    /// The most elements one aggregate may announce, as hiredis (2^32 - 1); a map's keys and values both count.
    /// Elements are stored as they arrive, never reserved for a count announced ahead of them.
    public static let maxElements = (1 << 32) - 1
    /// The longest bulk string, as Redis's `proto-max-bulk-len` (512 MiB).
    public static let maxBulkLength = 512 << 20
    /// The longest header or simple line (`+...`, `-...`, `:n`), as Redis's inline limit.
    public static let maxLineLength = 64 << 10

    public init() {}

    /// Reads one whole reply from `source`. RESP3 attributes (`|`) are skipped: the value returned is the reply they
    /// describe.
    public func parse<Source: RESPByteSource>(from source: inout Source) throws -> RESPValue {
        try parse(from: &source, depth: 0)
    }

    private func parse<Source: RESPByteSource>(from source: inout Source, depth: Int) throws -> RESPValue {
        let marker = try source.readByte()
        switch marker {
        case UInt8(ascii: "+"):
            return .simpleString(String(decoding: try source.readLine(limit: Self.maxLineLength), as: UTF8.self))
        case UInt8(ascii: "-"):
            return .error(String(decoding: try source.readLine(limit: Self.maxLineLength), as: UTF8.self))
        case UInt8(ascii: ":"):
            return .integer(try readInteger(&source))
        case UInt8(ascii: "$"), UInt8(ascii: "="), UInt8(ascii: "!"):
            let length = try readInteger(&source)
            if length == -1 { return .null }
            guard length >= 0 else { throw RESPParseError.invalid("invalid bulk string length \(length)") }
            guard length <= Self.maxBulkLength else {
                throw RESPParseError.invalid("bulk string of \(length) bytes exceeds the limit of \(Self.maxBulkLength) (512 MiB)")
            }
            var bytes = try source.readBytes(length)
            guard try source.readBytes(2) == [0x0D, 0x0A] else { throw RESPParseError.invalid("a bulk string does not end in CRLF") }
            switch marker {
            case UInt8(ascii: "!"):
                return .error(String(decoding: bytes, as: UTF8.self))
            case UInt8(ascii: "="):  // verbatim string: "txt:" then the text
                if bytes.count >= 4 && bytes[3] == UInt8(ascii: ":") { bytes.removeFirst(4) }
                return .bulkString(bytes)
            default:
                return .bulkString(bytes)
            }
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            let count = try readInteger(&source)
            if count == -1 { return .null }
            try checkAggregate(elements: count, depth: depth)
            var items: [RESPValue] = []
            items.reserveCapacity(min(count, 1 << 16))
            for _ in 0..<count { items.append(try parse(from: &source, depth: depth + 1)) }
            return .array(items)
        case UInt8(ascii: "%"):
            let count = try readInteger(&source)
            try checkAggregate(elements: count, pairs: true, depth: depth)
            var pairs: [(RESPValue, RESPValue)] = []
            pairs.reserveCapacity(min(count, 1 << 15))
            for _ in 0..<count {
                let key = try parse(from: &source, depth: depth + 1)
                pairs.append((key, try parse(from: &source, depth: depth + 1)))
            }
            return .map(pairs)
        case UInt8(ascii: "|"):  // attributes describe the reply that follows: skip them
            let count = try readInteger(&source)
            try checkAggregate(elements: count, pairs: true, depth: depth)
            for _ in 0..<(2 * count) { _ = try parse(from: &source, depth: depth + 1) }
            // The reply it describes is one level deeper: attribute after attribute cannot recurse without bound.
            return try parse(from: &source, depth: depth + 1)
        case UInt8(ascii: "_"):
            _ = try source.readLine(limit: Self.maxLineLength)
            return .null
        case UInt8(ascii: "#"):
            let line = try source.readLine(limit: Self.maxLineLength)
            guard line.count == 1, let value = line.first, value == UInt8(ascii: "t") || value == UInt8(ascii: "f") else {
                throw RESPParseError.invalid("invalid boolean")
            }
            return .boolean(value == UInt8(ascii: "t"))
        case UInt8(ascii: ","), UInt8(ascii: "("):
            return .number(String(decoding: try source.readLine(limit: Self.maxLineLength), as: UTF8.self))
        default:
            throw RESPParseError.invalid("unexpected byte 0x\(String(marker, radix: 16)) at the start of a reply")
        }
    }

    /// Throws for an aggregate (or attribute) at `depth` announcing `count` elements (pairs, for a map or an
    /// attribute) beyond the limits: ``maxNesting``, ``maxElements``, or a negative count.
    private func checkAggregate(elements count: Int, pairs: Bool = false, depth: Int) throws {
        guard depth < Self.maxNesting else { throw RESPParseError.invalid("reply nested more than \(Self.maxNesting) levels") }
        guard count >= 0 else { throw RESPParseError.invalid("invalid aggregate length \(count)") }
        if pairs {
            guard count <= Self.maxElements / 2 else {
                throw RESPParseError.invalid("map of \(count) pairs exceeds the limit of \(Self.maxElements / 2)")
            }
        } else {
            guard count <= Self.maxElements else {
                throw RESPParseError.invalid("aggregate of \(count) elements exceeds the limit of \(Self.maxElements)")
            }
        }
    }

    private func readInteger<Source: RESPByteSource>(_ source: inout Source) throws -> Int {
        let line = try source.readLine(limit: Self.maxLineLength)
        guard let value = RedisInteger.parseHeader(line) else {
            throw RESPParseError.invalid("invalid integer '\(String(decoding: line, as: UTF8.self))'")
        }
        return value
    }
}

/// Bytes already received, as a ``RESPByteSource``: reading past the end throws ``RESPParseError/incomplete``.
/// Parse, and on `incomplete` keep the bytes and parse again from ``start`` once more have arrived.
public struct RESPBufferSource: RESPByteSource {
    public let bytes: [UInt8]
    /// Where the next read starts; after a successful parse, where the next reply starts.
    public var position: Int

    public init(_ bytes: [UInt8], position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    public mutating func readByte() throws -> UInt8 {
        guard position < bytes.count else { throw RESPParseError.incomplete }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func readLine(limit: Int) throws -> ArraySlice<UInt8> {
        let end = min(bytes.count, position + limit + 2)
        guard let newline = bytes[position..<end].firstIndex(of: 0x0A) else {
            if end - position >= limit + 2 { throw RESPParseError.invalid("a line is longer than \(limit) bytes") }
            throw RESPParseError.incomplete
        }
        guard newline > position, bytes[newline - 1] == 0x0D else { throw RESPParseError.invalid("a line does not end in CRLF") }
        defer { position = newline + 1 }
        return bytes[position..<(newline - 1)]
    }

    public mutating func readBytes(_ count: Int) throws -> [UInt8] {
        guard count >= 0 else { throw RESPParseError.invalid("invalid length") }
        guard bytes.count - position >= count else { throw RESPParseError.incomplete }
        defer { position += count }
        return Array(bytes[position..<(position + count)])
    }
}

extension RESPReplyParser {
    /// Every whole reply in `bytes`, and how many bytes they took (the rest is the start of a reply still arriving).
    public func parseAll(_ bytes: [UInt8]) throws -> (values: [RESPValue], consumed: Int) {
        var source = RESPBufferSource(bytes)
        var values: [RESPValue] = []
        while source.position < bytes.count {
            let start = source.position
            do {
                values.append(try parse(from: &source))
            } catch RESPParseError.incomplete {
                return (values, start)
            }
        }
        return (values, source.position)
    }
}
