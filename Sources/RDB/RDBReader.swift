/// One thing an RDB stream says, in order.
public enum RDBEvent: Equatable, Sendable {
    /// An auxiliary field (`redis-ver`, `repl-id`, `repl-offset`...), its bytes read as UTF-8.
    case aux(key: String, value: String)
    /// The keys that follow belong to database `index`.
    case selectDB(Int)
    /// The writer's hint of the number of keys (and keys with an expiry) in the current database. Untrusted: a
    /// consumer must not preallocate from it without its own bound.
    case resizeDB(keys: UInt64, expires: UInt64)
    /// A string key, its value, and its absolute expiry in Unix milliseconds if it has one (possibly in the past:
    /// whether to drop it is the consumer's decision, as it is Redis's).
    case entry(key: [UInt8], value: [UInt8], expireAtMs: Int64?)
    /// EOF, after the checksum was verified (or found to be zero, which means the writer disabled it).
    case end
}

/// An incremental parser of RDB files (versions 1...10) holding string keys: feed it bytes as they arrive, in chunks
/// split anywhere, and pull events.
///
///     var reader = RDBReader()
///     while let chunk = try socket.read() {
///         reader.feed(chunk)
///         while let event = try reader.next() { ... }
///     }
///     try reader.finishInput()
///
/// Everything in the stream is untrusted. Each item (an opcode with its operands, or a whole key and value) is
/// parsed only once all its bytes have arrived, and every length is checked against ``Limits`` before anything is
/// waited for or allocated, so a forged length costs an error, not memory. Garbage yields an ``RDBError``, never a
/// crash.
///
/// Keys of other types (lists, sets, hashes, sorted sets, streams, module values) are refused: their encodings
/// (ziplists, listpacks, quicklists...) would each need a parser only to be skipped, and silently dropping keys
/// from a replica is worse than saying so. The error names the key and its type, and the reader stops there.
public struct RDBReader: Sendable {
    /// Bounds on what a stream may claim. Redis's own limits are the defaults.
    public struct Limits: Sendable, Equatable {
        /// The longest key (and AUX field name).
        public var maxKeyLength: Int
        /// The longest value (and AUX field value, and function library).
        public var maxValueLength: Int
        /// The most keys in the whole stream.
        public var maxEntries: Int
        /// The highest database index (Redis allows up to its `databases` setting, 16 by default).
        public var maxDatabaseIndex: Int

        public init(maxKeyLength: Int = 64 << 20, maxValueLength: Int = 512 << 20, maxEntries: Int = 1 << 32,
                    maxDatabaseIndex: Int = Int(Int32.max)) {
            self.maxKeyLength = maxKeyLength
            self.maxValueLength = maxValueLength
            self.maxEntries = maxEntries
            self.maxDatabaseIndex = maxDatabaseIndex
        }
    }

    public let limits: Limits
    /// The version in the magic, once read.
    public private(set) var version: Int?
    /// The keys returned so far.
    public private(set) var entryCount = 0

    private enum State: Sendable {
        case magic, body, ended
        case failed(RDBError)
    }

    private var state = State.magic
    /// Bytes fed and not yet consumed start at `readIndex`; `base` is the stream offset of `input[0]`.
    private var input: [UInt8] = []
    private var readIndex = 0
    private var base = 0
    /// The CRC of the stream up to `input[crcIndex]`, extended lazily over long spans (at compaction and EOF).
    private var crc = CRC64()
    private var crcIndex = 0
    /// An EXPIRETIME(_MS) read and waiting for its key.
    private var pendingExpire: Int64?

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Whether EOF and its checksum have been read.
    public var isFinished: Bool {
        if case .ended = state { return true }
        return false
    }

    /// The stream bytes consumed so far, the RDB's size once finished.
    public var consumedByteCount: Int { base + readIndex }

    /// Adds bytes that arrived. They are copied; parsing happens in ``next()``. After an error they are dropped:
    /// nothing will read them.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        if case .failed = state { return }
        compact()
        input.append(contentsOf: bytes)
    }

    public mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// The next event, or nil when the bytes fed so far end inside the next item (feed more), or after ``RDBEvent/end``.
    /// - Throws: ``RDBError``, and the same error on every later call.
    public mutating func next() throws(RDBError) -> RDBEvent? {
        while true {
            switch state {
            case .failed(let error): throw error
            case .ended: return nil
            case .magic:
                guard try readMagic() else { return nil }
            case .body:
                guard let version else { return nil }
                let limits = self.limits, start = readIndex
                let parsed: Result<(Item, Int), Stop>? = input.withUnsafeBytes { bytes in
                    do throws(Stop) {
                        var cursor = Cursor(bytes: bytes, position: start)
                        let item = try RDBReader.parseItem(&cursor, version: version, limits: limits)
                        return .success((item, cursor.position))
                    } catch .needMore {
                        return nil
                    } catch {
                        return .failure(error)
                    }
                }
                guard let parsed else { return nil }
                switch parsed {
                case .failure(.failed(let kind, let position)): return try fail(kind, at: base + position)
                case .failure(.needMore): return nil
                case .success(let (item, end)):
                    if let event = try consume(item, start: start, end: end) { return event }
                }
            }
        }
    }

    /// Says the input has ended, once ``next()`` has returned nil. Nothing more is expected after ``RDBEvent/end``;
    /// before it, the stream was cut. (It parses nothing itself, so no event is ever lost to it.)
    /// - Throws: ``RDBError`` with kind `.truncated` (or the error already met).
    public mutating func finishInput() throws(RDBError) {
        switch state {
        case .ended: return
        case .failed(let error): throw error
        case .magic, .body: _ = try fail(.truncated, at: base + readIndex)
        }
    }

    /// The bytes fed after the RDB's checksum, handed over once it has ended (with disk-based replication framing,
    /// the command stream follows the RDB immediately).
    public mutating func takeTrailingBytes() -> [UInt8] {
        guard isFinished else { return [] }
        let trailing = Array(input[readIndex...])
        base += input.count
        input.removeAll()
        readIndex = 0
        crcIndex = 0
        return trailing
    }

    // MARK: - Items

    /// What one complete item was.
    private enum Item {
        case event(RDBEvent)
        /// An entry's key and value; its expiry, if any, is the pending one.
        case entry(key: [UInt8], value: [UInt8])
        case expire(Int64)
        /// FREQ, IDLE, FUNCTION2: read and ignored.
        case skipped
        /// EOF at `eofIndex`, and the stored checksum when the version has one.
        case eof(eofIndex: Int, checksum: UInt64?)
    }

    /// Why parsing stopped short of an item: the bytes end inside it, or it is wrong.
    private enum Stop: Error {
        case needMore
        case failed(RDBError.Kind, position: Int)
    }

    /// Applies a parsed item spanning `input[start..<end]` and returns its event, if it has one.
    private mutating func consume(_ item: Item, start: Int, end: Int) throws(RDBError) -> RDBEvent? {
        switch item {
        case .event(let event):
            readIndex = end
            return event
        case .entry(let key, let value):
            guard entryCount < limits.maxEntries else { return try fail(.tooManyEntries(limit: limits.maxEntries), at: base + start) }
            readIndex = end
            entryCount += 1
            let expire = pendingExpire
            pendingExpire = nil
            return .entry(key: key, value: value, expireAtMs: expire)
        case .expire(let milliseconds):
            readIndex = end
            pendingExpire = milliseconds
            return nil
        case .skipped:
            readIndex = end
            return nil
        case .eof(let eofIndex, let stored):
            checksum(upTo: eofIndex + 1)
            if let stored, stored != 0, stored != crc.value {
                return try fail(.checksumMismatch(stored: stored, computed: crc.value), at: base + eofIndex + 1)
            }
            readIndex = end
            crcIndex = end
            state = .ended
            return .end
        }
    }

    /// Parses the item at the cursor: an opcode with its operands, or a value type with its key and value.
    private static func parseItem(_ cursor: inout Cursor, version: Int, limits: Limits) throws(Stop) -> Item {
        let itemStart = cursor.position
        let type = try cursor.byte()
        switch type {
        case RDBFormat.stringType:
            let key = try cursor.string(limit: limits.maxKeyLength, what: "key")
            let value = try cursor.string(limit: limits.maxValueLength, what: "value")
            return .entry(key: key, value: value)
        case RDBFormat.Opcode.expireTimeMs:
            return .expire(Int64(littleEndian: try cursor.load(Int64.self)))
        case RDBFormat.Opcode.expireTime:
            return .expire(Int64(Int32(littleEndian: try cursor.load(Int32.self))) * 1000)
        case RDBFormat.Opcode.selectDB:
            let index = try cursor.length()
            guard index <= UInt64(limits.maxDatabaseIndex) else {
                throw .failed(.tooLong(what: "database index", length: index, limit: limits.maxDatabaseIndex), position: itemStart)
            }
            return .event(.selectDB(Int(index)))
        case RDBFormat.Opcode.resizeDB:
            let keys = try cursor.length()
            let expires = try cursor.length()
            return .event(.resizeDB(keys: keys, expires: expires))
        case RDBFormat.Opcode.aux:
            let key = try cursor.string(limit: limits.maxKeyLength, what: "AUX field name")
            let value = try cursor.string(limit: limits.maxValueLength, what: "AUX field value")
            return .event(.aux(key: String(decoding: key, as: UTF8.self), value: String(decoding: value, as: UTF8.self)))
        case RDBFormat.Opcode.freq:
            _ = try cursor.byte()
            return .skipped
        case RDBFormat.Opcode.idle:
            _ = try cursor.length()
            return .skipped
        case RDBFormat.Opcode.function2:
            try cursor.skipString(limit: limits.maxValueLength, what: "function library")
            return .skipped
        case RDBFormat.Opcode.functionPreGA:
            throw .failed(.functionPreGA, position: itemStart)
        case RDBFormat.Opcode.moduleAux:
            throw .failed(.moduleAux, position: itemStart)
        case RDBFormat.Opcode.eof:
            if version >= RDBFormat.firstVersionWithChecksum {
                return .eof(eofIndex: itemStart, checksum: UInt64(littleEndian: try cursor.load(UInt64.self)))
            }
            return .eof(eofIndex: itemStart, checksum: nil)
        default:
            guard RDBFormat.typeName(type) != nil else { throw .failed(.unknownOpcode(type), position: itemStart) }
            // A known type other than string: read its key (complete) to name it, and stop.
            let key = try cursor.string(limit: limits.maxKeyLength, what: "key")
            throw .failed(.unsupportedType(key: key, type: type), position: itemStart)
        }
    }

    // MARK: - State

    /// Reads `REDIS` and the version once 9 bytes are there; refuses a wrong prefix as soon as it arrives.
    private mutating func readMagic() throws(RDBError) -> Bool {
        let available = input.count - readIndex
        let prefix = RDBFormat.magicPrefix
        for index in 0..<min(available, prefix.count) where input[readIndex + index] != prefix[index] {
            _ = try fail(.badMagic, at: base + readIndex)
        }
        guard available >= 9 else { return false }
        var number = 0
        for index in 5..<9 {
            let digit = input[readIndex + index] &- UInt8(ascii: "0")
            guard digit < 10 else { _ = try fail(.badMagic, at: base + readIndex); return false }
            number = number * 10 + Int(digit)
        }
        guard number >= 1 && number <= RDBFormat.version else {
            _ = try fail(.unsupportedVersion(number), at: base + readIndex + 5)
            return false
        }
        version = number
        readIndex += 9
        state = .body
        return true
    }

    private mutating func fail(_ kind: RDBError.Kind, at offset: Int) throws(RDBError) -> RDBEvent? {
        let error = RDBError(kind, offset: offset)
        state = .failed(error)
        throw error
    }

    private mutating func checksum(upTo index: Int) {
        guard crcIndex < index else { return }
        let (start, end) = (crcIndex, index)
        var crc = self.crc
        input.withUnsafeBytes { crc.update(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
        self.crc = crc
        crcIndex = index
    }

    /// Drops consumed bytes, after adding them to the CRC: all of them when everything was consumed (cheap), else
    /// once they are at least half the buffer, so each byte is moved a bounded number of times.
    private mutating func compact() {
        guard readIndex > 0 else { return }
        if case .body = state { checksum(upTo: readIndex) }
        if case .magic = state { return }
        if readIndex == input.count {
            input.removeAll(keepingCapacity: true)
        } else if readIndex >= 4096 && readIndex * 2 >= input.count {
            input.removeFirst(readIndex)
        } else {
            return
        }
        base += readIndex
        crcIndex -= readIndex
        readIndex = 0
    }

    // MARK: - Bytes

    /// Reads fields from the fed bytes; throws `needMore` when they end first.
    private struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var position: Int

        @inline(__always)
        mutating func byte() throws(Stop) -> UInt8 {
            guard position < bytes.count else { throw .needMore }
            let byte = bytes[position]
            position += 1
            return byte
        }

        @inline(__always)
        mutating func load<T: FixedWidthInteger>(_: T.Type) throws(Stop) -> T {
            let size = MemoryLayout<T>.size
            guard bytes.count - position >= size else { throw .needMore }
            let value = bytes.loadUnaligned(fromByteOffset: position, as: T.self)
            position += size
            return value
        }

        mutating func take(_ count: Int) throws(Stop) -> UnsafeRawBufferPointer {
            guard bytes.count - position >= count else { throw .needMore }
            let slice = UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
            position += count
            return slice
        }

        /// A length (`00`, `01`, `0x80`, `0x81` forms). A string encoding here is an error.
        mutating func length() throws(Stop) -> UInt64 {
            let start = position
            let first = try byte()
            switch first >> 6 {
            case RDBFormat.Length.sixBit: return UInt64(first & 0x3F)
            case RDBFormat.Length.fourteenBit: return UInt64(first & 0x3F) << 8 | UInt64(try byte())
            default: break
            }
            if first == RDBFormat.Length.thirtyTwoBit { return UInt64(UInt32(bigEndian: try load(UInt32.self))) }
            if first == RDBFormat.Length.sixtyFourBit { return UInt64(bigEndian: try load(UInt64.self)) }
            throw .failed(.badLengthEncoding(first), position: start)
        }

        /// A string in any of its encodings (raw, integer, LZF), decoded, at most `limit` bytes long.
        mutating func string(limit: Int, what: String) throws(Stop) -> [UInt8] {
            let start = position
            let first = try byte()
            if first >> 6 != RDBFormat.Length.encoded {
                position = start
                let length = try self.length()
                guard length <= UInt64(limit) else {
                    throw .failed(.tooLong(what: what, length: length, limit: limit), position: start)
                }
                return Array(try take(Int(length)))
            }
            switch first {
            case RDBFormat.StringEncoding.int8:
                return decimal(Int64(Int8(bitPattern: try byte())))
            case RDBFormat.StringEncoding.int16:
                return decimal(Int64(Int16(littleEndian: try load(Int16.self))))
            case RDBFormat.StringEncoding.int32:
                return decimal(Int64(Int32(littleEndian: try load(Int32.self))))
            case RDBFormat.StringEncoding.lzf:
                let compressedLength = try length()
                let length = try self.length()
                guard length <= UInt64(limit) else {
                    throw .failed(.tooLong(what: what, length: length, limit: limit), position: start)
                }
                // LZF never expands by more than 88 times, and Redis only stores a compressed form that is
                // shorter: either bound broken means damage, caught before waiting for (or allocating) anything.
                guard compressedLength <= UInt64(limit), (length + UInt64(LZF.maxExpansion - 1)) / UInt64(LZF.maxExpansion) <= compressedLength else {
                    throw .failed(.lzf(.outputTooLong(declared: Int(length))), position: start)
                }
                let compressed = try take(Int(compressedLength))
                do {
                    return try LZF.decompress(compressed, length: Int(length))
                } catch {
                    throw .failed(.lzf(error), position: start)
                }
            default:
                throw .failed(.unknownStringEncoding(first), position: start)
            }
        }

        /// Checks and passes over a string without keeping it.
        mutating func skipString(limit: Int, what: String) throws(Stop) {
            _ = try string(limit: limit, what: what)
        }

        private func decimal(_ value: Int64) -> [UInt8] { Array(String(value).utf8) }
    }
}
