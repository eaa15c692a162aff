#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where a store stands in a replication stream, in Redis's terms: the stream's id (`replid`, 40 hex characters),
/// the byte offset of the stream applied so far (`master_repl_offset`), and the id and last offset of the stream
/// before the last promotion (`replid2`, `second_repl_offset`), so replicas of the old primary continue partially.
///
/// A store that has never replicated has none. Once it has one, the log carries it: a position record starts
/// every log file, and a primary's offset grows by the bytes of each write's canonical command (see
/// ``ReplicationStream``), so the offset of every record is known from the log alone. A replica's offset is the
/// primary's: it comes only from the position records it writes after applying what it received, and replay
/// drops whatever a replica applied after its last such record (the crash came before it recorded the offset, so
/// its primary sends those commands again).
public struct ReplicationPosition: Sendable, Equatable, CustomStringConvertible {
    public enum Role: UInt8, Sendable {
        case primary = 0
        case replica = 1
    }

    public var role: Role
    public var replid: [UInt8]
    public var offset: Int64
    public var replid2: [UInt8]
    public var secondOffset: Int64

    /// Redis's "no previous stream": forty zeros, offset -1.
    public static let noReplid = [UInt8](repeating: UInt8(ascii: "0"), count: 40)
    static let encodedSize = 2 + 40 + 8 + 40 + 8

    public init(role: Role, replid: [UInt8], offset: Int64, replid2: [UInt8] = noReplid, secondOffset: Int64 = -1) {
        precondition(replid.count == 40 && replid2.count == 40, "a replication id has 40 characters")
        self.role = role
        self.replid = replid
        self.offset = offset
        self.replid2 = replid2
        self.secondOffset = secondOffset
    }

    /// A new random replication id: 40 lowercase hex characters, as Redis's `getRandomHexChars`.
    public static func randomReplid() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        return (0..<40).map { _ in digits[Int(generator.next() % 16)] }
    }

    public var replidText: String { String(decoding: replid, as: UTF8.self) }
    public var replid2Text: String { String(decoding: replid2, as: UTF8.self) }

    public var description: String {
        "\(role == .primary ? "primary" : "replica") \(replidText):\(offset)"
            + (secondOffset >= 0 ? " (previously \(replid2Text) up to \(secondOffset))" : "")
    }

    /// Whether a replica that has applied stream `replid` through `offset` can continue from here without a full
    /// copy, by Redis's rule: the same stream, or the stream before the last promotion up to where it ended.
    public func canContinue(replid wanted: [UInt8], offset wantedOffset: Int64) -> Bool {
        (wanted == replid && wantedOffset <= offset) || (wanted == replid2 && wantedOffset <= secondOffset)
    }

    func encode(to buffer: inout [UInt8]) {
        buffer.append(1)
        buffer.append(role.rawValue)
        buffer.append(contentsOf: replid)
        LogFormat.appendLittleEndian(offset, to: &buffer)
        buffer.append(contentsOf: replid2)
        LogFormat.appendLittleEndian(secondOffset, to: &buffer)
    }

    init?(decoding payload: UnsafeRawBufferPointer) {
        guard payload.count == Self.encodedSize, payload[0] == 1, let role = Role(rawValue: payload[1]) else { return nil }
        var cursor = ByteCursor(payload)
        _ = cursor.readSlice(2)
        guard let replid = cursor.readSlice(40), let offset = cursor.readUInt64(), let replid2 = cursor.readSlice(40),
              let second = cursor.readUInt64() else { return nil }
        let isHex = { (bytes: UnsafeRawBufferPointer) in
            bytes.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
        }
        guard isHex(replid), isHex(replid2) else { return nil }
        self.role = role
        self.replid = Array(replid)
        self.offset = Int64(bitPattern: offset)
        self.replid2 = Array(replid2)
        self.secondOffset = Int64(bitPattern: second)
    }
}

/// The replication stream a primary's log stands for: each write record as the Redis command that has its effect
/// (`SET key value`, `DEL key ...`, `MSET key value ...`, as RESP arrays), and stream-bytes records as they are.
/// The same bytes go to live replicas and are regenerated from the log for a replica that comes back, so an offset
/// means the same whichever way the bytes were sent.
public enum ReplicationStream {
    /// The length of a SET record's command, without building it (every write of a primary advances its offset).
    @inline(__always)
    static func setLength(keyCount: Int, valueCount: Int) -> Int {
        // *3\r\n $3\r\nSET\r\n $<k>\r\n<key>\r\n $<v>\r\n<value>\r\n
        4 + 9 + bulkLength(keyCount) + bulkLength(valueCount)
    }

    @inline(__always)
    static func bulkLength(_ count: Int) -> Int { 1 + decimalDigits(count) + 2 + count + 2 }

    @inline(__always)
    static func decimalDigits(_ value: Int) -> Int {
        var digits = 1
        var rest = value
        while rest >= 10 { rest /= 10; digits += 1 }
        return digits
    }

    static func headerLength(_ count: Int) -> Int { 1 + decimalDigits(count) + 2 }

    /// The bytes of the stream `record` stands for.
    static func length(of record: LogRecordView) -> Int {
        switch record {
        case .set(let key, let value):
            return setLength(keyCount: key.count, valueCount: value.count)
        case .delete(let keys):
            return headerLength(keys.count + 1) + bulkLength(3) + keys.reduce(0) { $0 + bulkLength($1.count) }
        case .multiSet(let pairs):
            return headerLength(2 * pairs.count + 1) + bulkLength(4)
                + pairs.reduce(0) { $0 + bulkLength($1.key.count) + bulkLength($1.value.count) }
        case .replicationPosition:
            return 0
        case .streamBytes(let bytes):
            return bytes.count
        }
    }

    /// Appends the stream bytes of `record` to `buffer`.
    static func append(_ record: LogRecordView, to buffer: inout [UInt8]) {
        switch record {
        case .set(let key, let value):
            appendHeader(3, to: &buffer)
            appendBulk(UnsafeRawBufferPointer(staticString: "SET"), to: &buffer)
            appendBulk(key, to: &buffer)
            appendBulk(value, to: &buffer)
        case .delete(let keys):
            appendHeader(keys.count + 1, to: &buffer)
            appendBulk(UnsafeRawBufferPointer(staticString: "DEL"), to: &buffer)
            for key in keys { key.withUnsafeBytes { appendBulk($0, to: &buffer) } }
        case .multiSet(let pairs):
            appendHeader(2 * pairs.count + 1, to: &buffer)
            appendBulk(UnsafeRawBufferPointer(staticString: "MSET"), to: &buffer)
            for pair in pairs {
                appendBulk(pair.key, to: &buffer)
                appendBulk(pair.value, to: &buffer)
            }
        case .replicationPosition:
            break
        case .streamBytes(let bytes):
            buffer.append(contentsOf: bytes)
        }
    }

    private static func appendHeader(_ count: Int, to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "*"))
        appendDecimal(count, to: &buffer)
        buffer.append(13)
        buffer.append(10)
    }

    private static func appendBulk(_ bytes: UnsafeRawBufferPointer, to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "$"))
        appendDecimal(bytes.count, to: &buffer)
        buffer.append(13)
        buffer.append(10)
        buffer.append(contentsOf: bytes)
        buffer.append(13)
        buffer.append(10)
    }

    private static func appendDecimal(_ value: Int, to buffer: inout [UInt8]) {
        let digits = decimalDigits(value)
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: digits))
        var rest = value
        for index in stride(from: start + digits - 1, through: start, by: -1) {
            buffer[index] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
        }
    }

    /// What turning a run of written log records into stream bytes found.
    public struct Conversion: Sendable {
        /// Stream bytes appended.
        public var bytes = 0
        /// The last position record among the records, if any: the stream restarts or continues from there.
        public var position: ReplicationPosition?
        /// Stream bytes appended after that position record (all of them when there is none).
        public var bytesAfterPosition = 0
    }

    /// Appends the stream bytes of the log records in `records` (whole records, back to back, as the store writes
    /// them) to `buffer`. Records that do not decode are skipped: the store wrote them a moment ago.
    public static func convert(records: UnsafeRawBufferPointer, to buffer: inout [UInt8]) -> Conversion {
        var conversion = Conversion()
        var offset = 0
        while offset < records.count {
            guard case .record(_, let record, let end) = LogReader.logRecord(in: records, at: offset) else { break }
            if case .replicationPosition(let position) = record {
                conversion.position = position
                conversion.bytesAfterPosition = 0
            } else {
                let before = buffer.count
                append(record, to: &buffer)
                conversion.bytes += buffer.count - before
                conversion.bytesAfterPosition += buffer.count - before
            }
            offset = end
        }
        return conversion
    }
}

extension UnsafeRawBufferPointer {
    /// The bytes of a static string (which lives for the whole program).
    init(staticString: StaticString) {
        self.init(start: staticString.utf8Start, count: staticString.utf8CodeUnitCount)
    }
}

extension ReplicationStream {
    /// The length of an MSET command for `pairs` (owned arrays, as `multiSet` takes them).
    static func multiSetLength(_ pairs: [(key: [UInt8], value: [UInt8])]) -> Int {
        headerLength(2 * pairs.count + 1) + bulkLength(4) + pairs.reduce(0) { $0 + bulkLength($1.key.count) + bulkLength($1.value.count) }
    }
}
