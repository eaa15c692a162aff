#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A streaming encoder of an RDB version 10 file holding string keys, as Redis 7.0 writes it.
///
/// The file is produced in pieces so that a snapshot of a million keys never sits in memory whole: each call encodes
/// into an internal buffer, and the caller drains it (``drain(_:)`` or ``takeBytes()``) whenever
/// ``pendingByteCount`` is large enough to be worth a write. The CRC is extended as bytes are drained.
///
///     var writer = RDBWriter(auxFields: RDBWriter.replicationAuxFields(replicationID: id, replicationOffset: offset))
///     writer.selectDB(0)
///     writer.resizeDB(keys: count, expires: expiring)
///     for (key, value) in entries {
///         writer.append(key: key, value: value)
///         if writer.pendingByteCount >= 1 << 16 { try writer.drain { try socket.write($0) } }
///     }
///     writer.finish()
///     try writer.drain { try socket.write($0) }
///
/// Strings are encoded as Redis encodes them, so a real Redis loads the same objects it would have saved: the
/// canonical decimal text of an int32 as an integer, a string longer than 20 bytes LZF-compressed when that saves
/// at least 4 bytes (and compression is on), any other string raw.
public struct RDBWriter: Sendable {
    /// Encoded bytes not yet drained: `buffer[0..<pending]`. The array only grows (to the largest batch the caller
    /// lets accumulate), so steady-state encoding allocates nothing.
    private var buffer: [UInt8]
    private var pending = 0
    /// The CRC of every byte drained so far, and how many of the pending bytes it already covers (all of them after
    /// ``finish()``, whose last 8 bytes are the CRC itself).
    private var crc = CRC64()
    private var checksummed = 0
    private let compression: Bool
    private var compressor = LZF.Compressor()
    /// Where LZF output goes before it is copied behind its lengths (which depend on its size).
    private var scratch: [UInt8] = []
    private var drained = 0
    public private(set) var isFinished = false

    /// Starts a file: the magic `REDIS0010` and the AUX fields in order (for a replication stream,
    /// ``replicationAuxFields(replicationID:replicationOffset:creationTime:usedMemory:)``; none is required).
    /// - Parameter compression: LZF-compress strings longer than 20 bytes where it pays, as `rdbcompression yes`
    ///   (Redis's default) does. Off, the writer is faster and the file larger.
    public init(auxFields: [(key: String, value: String)] = [], compression: Bool = true) {
        buffer = [UInt8](repeating: 0, count: 1 << 16)
        self.compression = compression
        write(RDBFormat.magicPrefix + Array(format4(RDBFormat.version).utf8))
        for (key, value) in auxFields {
            write([RDBFormat.Opcode.aux])
            appendString(Array(key.utf8))
            appendString(Array(value.utf8))
        }
    }

    /// The AUX fields a Redis 7.0.15 primary sends ahead of a full sync's snapshot, in its order. The replica keeps
    /// `repl-id` and `repl-offset` as its primary's; the others are informational.
    /// - Parameters:
    ///   - creationTime: Unix seconds (`ctime`); now if nil.
    ///   - usedMemory: bytes (`used-mem`).
    public static func replicationAuxFields(replicationID: String, replicationOffset: Int64, creationTime: Int64? = nil,
                                            usedMemory: Int = 0) -> [(key: String, value: String)] {
        [
            ("redis-ver", "7.0.15"),
            ("redis-bits", String(MemoryLayout<Int>.size * 8)),
            ("ctime", String(creationTime ?? Int64(time(nil)))),
            ("used-mem", String(usedMemory)),
            ("repl-stream-db", "0"),
            ("repl-id", replicationID),
            ("repl-offset", String(replicationOffset)),
            ("aof-base", "0"),
        ]
    }

    /// Starts database `index`: the keys appended next belong to it.
    public mutating func selectDB(_ index: Int) {
        precondition(!isFinished && index >= 0, "selectDB after finish() or with a negative index")
        ensureRoom(10)
        let start = pending
        pending = buffer.withUnsafeMutableBytes { bytes in
            bytes[start] = RDBFormat.Opcode.selectDB
            return RDBFormat.storeLength(UInt64(index), in: bytes, at: start + 1)
        }
    }

    /// The hint a loader uses to size its tables: the number of keys in the database and how many have an expiry.
    /// Optional; when given it should be exact.
    public mutating func resizeDB(keys: Int, expires: Int) {
        precondition(!isFinished && keys >= 0 && expires >= 0, "resizeDB after finish() or with a negative count")
        ensureRoom(19)
        let start = pending
        pending = buffer.withUnsafeMutableBytes { bytes in
            bytes[start] = RDBFormat.Opcode.resizeDB
            let next = RDBFormat.storeLength(UInt64(keys), in: bytes, at: start + 1)
            return RDBFormat.storeLength(UInt64(expires), in: bytes, at: next)
        }
    }

    /// Appends one string key, with its absolute expiry time in Unix milliseconds if it has one.
    public mutating func append(key: [UInt8], value: [UInt8], expireAtMs: Int64? = nil) {
        key.withUnsafeBytes { key in value.withUnsafeBytes { value in append(key: key, value: value, expireAtMs: expireAtMs) } }
    }

    /// Appends one string key from borrowed bytes (copied before the call returns), so a caller iterating a store
    /// need not materialize arrays.
    public mutating func append(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, expireAtMs: Int64? = nil) {
        precondition(!isFinished, "append after finish()")
        ensureRoom(10)
        let start = pending
        pending = buffer.withUnsafeMutableBytes { bytes in
            var offset = start
            if let expireAtMs {
                bytes[offset] = RDBFormat.Opcode.expireTimeMs
                bytes.storeBytes(of: expireAtMs.littleEndian, toByteOffset: offset + 1, as: Int64.self)
                offset += 9
            }
            bytes[offset] = RDBFormat.stringType
            return offset + 1
        }
        appendString(key)
        appendString(value)
    }

    /// Ends the file: EOF and the CRC-64 of everything before it, little-endian. Nothing may be appended after.
    public mutating func finish() {
        precondition(!isFinished, "finish() twice")
        ensureRoom(9)
        buffer[pending] = RDBFormat.Opcode.eof
        pending += 1
        checksumPending()
        let (start, value) = (pending, crc.value)
        buffer.withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: start, as: UInt64.self) }
        pending += 8
        checksummed = pending
        isFinished = true
    }

    /// The number of encoded bytes waiting to be drained.
    public var pendingByteCount: Int { pending }

    /// Every byte produced so far, drained or not: the file's size once finished.
    public var totalByteCount: Int { drained + pending }

    /// Hands the pending bytes to `body` (valid only during the call) and forgets them. The buffer is reused, so a
    /// loop of append-and-drain allocates nothing. If `body` throws, the bytes stay pending.
    public mutating func drain<E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
        guard pending > 0 else { return }
        checksumPending()
        let count = pending
        let result = buffer.withUnsafeBytes { bytes in
            Result { () throws(E) in try body(UnsafeRawBufferPointer(rebasing: bytes[0..<count])) }
        }
        try result.get()
        forgetPending()
    }

    /// The pending bytes as an array, forgotten here. Simpler than ``drain(_:)``, at the cost of a copy.
    public mutating func takeBytes() -> [UInt8] {
        checksumPending()
        let bytes = Array(buffer[0..<pending])
        forgetPending()
        return bytes
    }

    // MARK: - Encoding

    private mutating func forgetPending() {
        drained += pending
        pending = 0
        checksummed = 0
    }

    /// Extends the CRC over the pending bytes it does not cover yet: once per drain, so it runs over long spans.
    private mutating func checksumPending() {
        guard checksummed < pending else { return }
        let (start, end) = (checksummed, pending)
        var crc = self.crc
        buffer.withUnsafeBytes { crc.update(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
        self.crc = crc
        checksummed = pending
    }

    /// Makes sure `count` more bytes fit after the pending ones. Grows by doubling, so a huge value costs one copy.
    @inline(__always)
    private mutating func ensureRoom(_ count: Int) {
        let needed = pending + count
        if needed > buffer.count {
            buffer.append(contentsOf: repeatElement(0, count: max(needed, 2 * buffer.count) - buffer.count))
        }
    }

    private mutating func write(_ bytes: [UInt8]) {
        ensureRoom(bytes.count)
        let start = pending
        buffer.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[start..<(start + bytes.count)]).copyBytes(from: bytes) }
        pending += bytes.count
    }

    private mutating func appendString(_ string: [UInt8]) {
        string.withUnsafeBytes { appendString($0) }
    }

    /// One string in the encoding Redis would choose (rdbSaveRawString): integer, LZF, or raw.
    private mutating func appendString(_ string: UnsafeRawBufferPointer) {
        let count = string.count
        let start = pending
        if count <= RDBFormat.maxIntEncodedLength, let integer = RDBFormat.canonicalInt32(string) {
            ensureRoom(5)
            pending = buffer.withUnsafeMutableBytes { bytes in
                if let small = Int8(exactly: integer) {
                    bytes[start] = RDBFormat.StringEncoding.int8
                    bytes[start + 1] = UInt8(bitPattern: small)
                    return start + 2
                } else if let medium = Int16(exactly: integer) {
                    bytes[start] = RDBFormat.StringEncoding.int16
                    bytes.storeBytes(of: medium.littleEndian, toByteOffset: start + 1, as: Int16.self)
                    return start + 3
                } else {
                    bytes[start] = RDBFormat.StringEncoding.int32
                    bytes.storeBytes(of: integer.littleEndian, toByteOffset: start + 1, as: Int32.self)
                    return start + 5
                }
            }
            return
        }
        if compression, count > RDBFormat.compressionThreshold,
           compressor.compress(string, limit: count - 4, into: &scratch) {
            let compressed = scratch
            ensureRoom(1 + 9 + 9 + compressed.count)
            pending = buffer.withUnsafeMutableBytes { bytes in
                bytes[start] = RDBFormat.StringEncoding.lzf
                var offset = RDBFormat.storeLength(UInt64(compressed.count), in: bytes, at: start + 1)
                offset = RDBFormat.storeLength(UInt64(count), in: bytes, at: offset)
                compressed.withUnsafeBytes {
                    UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<(offset + compressed.count)]).copyMemory(from: $0)
                }
                return offset + compressed.count
            }
            return
        }
        ensureRoom(9 + count)
        pending = buffer.withUnsafeMutableBytes { bytes in
            let offset = RDBFormat.storeLength(UInt64(count), in: bytes, at: start)
            if count > 0 {
                UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<(offset + count)]).copyMemory(from: string)
            }
            return offset + count
        }
    }
}

/// `n` as four decimal digits with leading zeros (the version in the magic).
private func format4(_ n: Int) -> String {
    let digits = String(n)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}
