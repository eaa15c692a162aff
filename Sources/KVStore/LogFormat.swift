/// The on-disk formats of log files and images (checkpoints and backups): the one place their constants and
/// encodings are defined. `Docs/LogFormat.md` describes the same bytes in prose.
///
/// Both kinds of file are a 28-byte header followed by records, back to back:
///
///     header:  magic (8) | version u32 | flags u32 (0) | sequence u64 | CRC32C of the 24 bytes before u32
///     record:  CRC32C u32 | payload length u32 | type u8 | sequence u64 | payload
///
/// A log's magic is "KVSH-LOG", its header sequence the sequence number of its first record, and its records
/// are writes (SET, DELETE, MULTI-SET) numbered one by one. An image's magic is "KVSH-IMG", its header sequence the last
/// write it covers, and its records are blocks of key-value entries numbered from 1, then an end record.
///
/// Integers are little-endian. A record's CRC covers everything after the CRC field (length, type,
/// sequence and payload), so a damaged length is caught like damaged data.
public enum LogFormat {
    public static let magic: [UInt8] = Array("KVSH-LOG".utf8)
    public static let imageMagic: [UInt8] = Array("KVSH-IMG".utf8)
    public static let version: UInt32 = 1
    /// The version of encrypted files (flags bit 0 set): a kvsh that predates encryption refuses them as newer.
    public static let encryptedVersion: UInt32 = 2
    /// The plain header's size. An encrypted file's header is ``encryptedHeaderSize``: see ``FileHeader/size``.
    public static let fileHeaderSize = 28
    /// magic | version u32 (2) | flags u32 (1) | sequence u64 | key id [8] | salt [16] | CRC32C of the 48 bytes before
    public static let encryptedHeaderSize = 52
    static let flagEncrypted: UInt32 = 1

    /// How an encrypted file is sealed: which key (``EncryptionKey/id``) and the salt its file key is derived from.
    struct Sealing: Equatable, Sendable {
        var keyID: [UInt8]
        var salt: [UInt8]
    }

    /// A decoded file header.
    struct FileHeader: Sendable {
        /// A log's first sequence number, or the last write an image covers.
        var sequence: UInt64
        /// nil for a plain file.
        var sealing: Sealing?
        /// Where the records start.
        var size: Int { sealing == nil ? LogFormat.fileHeaderSize : LogFormat.encryptedHeaderSize }
    }

    /// The header size of a file sealed with `cipher` (nil: plain).
    static func headerSize(_ cipher: FileCipher?) -> Int { cipher == nil ? fileHeaderSize : encryptedHeaderSize }

    /// The bytes a record with a payload of `payloadLength` takes in a file sealed with `cipher` (nil: plain).
    static func recordSize(payloadLength: Int, _ cipher: FileCipher?) -> Int {
        recordHeaderSize + payloadLength + (cipher == nil ? 0 : FileCipher.overhead)
    }
    public static let recordHeaderSize = 17
    /// The largest payload a record may carry. Bigger lengths in a header are treated as damage.
    public static let maxPayloadSize = 1 << 30
    /// Keys and values above these sizes are refused before anything is logged (Redis's own limit is 512 MB).
    public static let maxKeySize = 64 << 20
    public static let maxValueSize = 512 << 20

    /// What a record does. The raw values are on disk: never renumber them.
    public enum RecordType: UInt8, Sendable {
        /// payload: key length u32 | key | value (the rest of the payload)
        case set = 1
        /// payload: key count u32 | (key length u32 | key) × count. One record, so a multi-key delete is atomic.
        case delete = 2
        /// Images only. payload: entry count u32 | (key length u32 | value length u32 | key | value) × count,
        /// keys in increasing bytewise order across the whole image.
        case imageEntries = 3
        /// Images only, last: payload: total entry count u64. Without it the image is incomplete.
        case imageEnd = 4
        /// payload: pair count u32 | (key length u32 | value length u32 | key | value) × count, applied in order.
        /// One record, so a multi-key set (MSET) is atomic, also across a crash. Keys in any order, repeats allowed
        /// (the last wins).
        case multiSet = 5
        /// Where the replication stream stands (see ``ReplicationPosition``): written when a store first serves
        /// replicas, at the start of every later log file, when a replica records how far it has applied its
        /// primary's stream, and on promotion. Changes no data.
        /// payload: format u8 (1) | role u8 (0 primary, 1 replica) | replid [40] | offset i64 | replid2 [40] |
        /// second offset i64
        case replicationPosition = 6
        /// Bytes of the replication stream that change no data (`ping`, `REPLCONF GETACK *`, `SELECT 0`), logged so
        /// that the stream's byte offsets can be derived from the log alone. payload: the RESP bytes.
        case streamBytes = 7
        /// Encrypted files only, in place of every other type: the record's type and payload sealed with AES-256-GCM.
        /// payload: AES-GCM ciphertext of (inner type u8 | inner payload), then the 16-byte tag.
        case sealed = 8

        var isLogRecord: Bool {
            self == .set || self == .delete || self == .multiSet || self == .replicationPosition || self == .streamBytes
        }
    }

    /// Encodes a file header for a log whose first record will carry `firstSequence`.
    static func fileHeader(firstSequence: UInt64, cipher: FileCipher? = nil) -> [UInt8] {
        fileHeader(magic: magic, sequence: firstSequence, cipher: cipher)
    }

    /// Encodes a file header with `magic` (a log's or an image's) and its sequence field; an encrypted one (version 2)
    /// when `cipher` is given.
    static func fileHeader(magic: [UInt8], sequence: UInt64, cipher: FileCipher? = nil) -> [UInt8] {
        var header = magic
        header.reserveCapacity(encryptedHeaderSize)
        appendLittleEndian(cipher == nil ? version : encryptedVersion, to: &header)
        appendLittleEndian(cipher == nil ? 0 : flagEncrypted, to: &header)
        appendLittleEndian(sequence, to: &header)
        if let cipher {
            header.append(contentsOf: cipher.keyID)
            header.append(contentsOf: cipher.salt)
        }
        appendLittleEndian(CRC32C.checksum(header), to: &header)
        return header
    }

    /// Appends one framed record to `buffer`; `writePayload` appends the payload bytes.
    @inline(__always)
    static func appendRecord(type: RecordType, sequence: UInt64, payloadLength: Int, to buffer: inout [UInt8],
                             writePayload: (inout [UInt8]) -> Void) {
        let start = buffer.count
        appendLittleEndian(UInt32(0), to: &buffer)  // CRC, filled in below once the rest is known
        appendLittleEndian(UInt32(payloadLength), to: &buffer)
        buffer.append(type.rawValue)
        appendLittleEndian(sequence, to: &buffer)
        writePayload(&buffer)
        assert(buffer.count - start == recordHeaderSize + payloadLength, "payload length does not match the bytes written")
        buffer.withUnsafeMutableBytes { bytes in
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(start + 4)...]))
            bytes.storeBytes(of: crc.littleEndian, toByteOffset: start, as: UInt32.self)
        }
    }

    static func appendSet(key: [UInt8], value: [UInt8], sequence: UInt64, to buffer: inout [UInt8]) {
        key.withUnsafeBytes { key in value.withUnsafeBytes { value in appendSet(key: key, value: value, sequence: sequence, to: &buffer) } }
    }

    /// The hottest encoder (every SET): fills the record in one reserved run of bytes instead of appending
    /// field by field through `appendRecord`'s closure.
    static func appendSet(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, sequence: UInt64, to buffer: inout [UInt8]) {
        let payloadLength = 4 + key.count + value.count
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: recordHeaderSize + payloadLength))
        buffer.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(of: UInt32(payloadLength).littleEndian, toByteOffset: start + 4, as: UInt32.self)
            bytes[start + 8] = RecordType.set.rawValue
            bytes.storeBytes(of: sequence.littleEndian, toByteOffset: start + 9, as: UInt64.self)
            bytes.storeBytes(of: UInt32(key.count).littleEndian, toByteOffset: start + recordHeaderSize, as: UInt32.self)
            let keyStart = start + recordHeaderSize + 4
            UnsafeMutableRawBufferPointer(rebasing: bytes[keyStart..<(keyStart + key.count)]).copyMemory(from: key)
            UnsafeMutableRawBufferPointer(rebasing: bytes[(keyStart + key.count)...]).copyMemory(from: value)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(start + 4)...]))
            bytes.storeBytes(of: crc.littleEndian, toByteOffset: start, as: UInt32.self)
        }
    }

    /// The payload length of a DELETE record naming `keys`.
    static func deletePayloadLength(_ keys: [[UInt8]]) -> Int {
        keys.reduce(4) { $0 + 4 + $1.count }
    }

    static func appendDelete(keys: [[UInt8]], sequence: UInt64, to buffer: inout [UInt8]) {
        let length = deletePayloadLength(keys)
        appendRecord(type: .delete, sequence: sequence, payloadLength: length, to: &buffer) {
            appendLittleEndian(UInt32(keys.count), to: &$0)
            for key in keys {
                appendLittleEndian(UInt32(key.count), to: &$0)
                $0.append(contentsOf: key)
            }
        }
    }

    /// The payload length of a MULTI-SET record holding `pairs`.
    static func multiSetPayloadLength(_ pairs: [(key: [UInt8], value: [UInt8])]) -> Int {
        pairs.reduce(4) { $0 + 8 + $1.key.count + $1.value.count }
    }

    static func appendMultiSet(pairs: [(key: [UInt8], value: [UInt8])], sequence: UInt64, to buffer: inout [UInt8]) {
        appendRecord(type: .multiSet, sequence: sequence, payloadLength: multiSetPayloadLength(pairs), to: &buffer) {
            appendLittleEndian(UInt32(pairs.count), to: &$0)
            for (key, value) in pairs {
                appendLittleEndian(UInt32(key.count), to: &$0)
                appendLittleEndian(UInt32(value.count), to: &$0)
                $0.append(contentsOf: key)
                $0.append(contentsOf: value)
            }
        }
    }

    static func appendPosition(_ position: ReplicationPosition, sequence: UInt64, to buffer: inout [UInt8]) {
        appendRecord(type: .replicationPosition, sequence: sequence, payloadLength: ReplicationPosition.encodedSize, to: &buffer) {
            position.encode(to: &$0)
        }
    }

    static func appendStreamBytes(_ bytes: [UInt8], sequence: UInt64, to buffer: inout [UInt8]) {
        appendRecord(type: .streamBytes, sequence: sequence, payloadLength: bytes.count, to: &buffer) { $0.append(contentsOf: bytes) }
    }

    @inline(__always)
    static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }
}

/// One operation decoded from a record's payload, owning its bytes.
public enum LogOperation: Equatable, Sendable {
    case set(key: [UInt8], value: [UInt8])
    case delete(keys: [[UInt8]])
    /// Several keys set at once, in order (a MULTI-SET record).
    case multiSet(pairs: [(key: [UInt8], value: [UInt8])])
    /// Where the replication stream stands; changes no data.
    case replicationPosition(ReplicationPosition)
    /// Replication stream bytes that change no data.
    case streamBytes([UInt8])

    init(_ view: LogRecordView) {
        switch view {
        case .set(let key, let value): self = .set(key: Array(key), value: Array(value))
        case .delete(let keys): self = .delete(keys: keys)
        case .multiSet(let pairs): self = .multiSet(pairs: pairs.map { (Array($0.key), Array($0.value)) })
        case .replicationPosition(let position): self = .replicationPosition(position)
        case .streamBytes(let bytes): self = .streamBytes(Array(bytes))
        }
    }

    public static func == (a: LogOperation, b: LogOperation) -> Bool {
        switch (a, b) {
        case (.set(let k1, let v1), .set(let k2, let v2)): return k1 == k2 && v1 == v2
        case (.delete(let k1), .delete(let k2)): return k1 == k2
        case (.multiSet(let p1), .multiSet(let p2)):
            return p1.count == p2.count && zip(p1, p2).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.replicationPosition(let p1), .replicationPosition(let p2)): return p1 == p2
        case (.streamBytes(let b1), .streamBytes(let b2)): return b1 == b2
        default: return false
        }
    }
}

/// One operation decoded from a record's payload. The keys and values of a SET or MULTI-SET point into the log
/// buffer (valid only during the callback that receives them), so replay copies each straight into the index.
enum LogRecordView {
    case set(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)
    case delete(keys: [[UInt8]])
    case multiSet(pairs: [(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)])
    case replicationPosition(ReplicationPosition)
    case streamBytes(UnsafeRawBufferPointer)

    /// Applies the operation to `index`.
    func apply(to index: inout OrderedIndex) {
        switch self {
        case .set(let key, let value): index.set(key, value)
        case .delete(let keys): for key in keys { index.remove(key) }
        case .multiSet(let pairs): for pair in pairs { index.set(pair.key, pair.value) }
        case .replicationPosition, .streamBytes: break
        }
    }

    /// Whether the record changes data (rather than describing the replication stream).
    var changesData: Bool {
        switch self {
        case .set, .delete, .multiSet: return true
        case .replicationPosition, .streamBytes: return false
        }
    }

    /// Decodes a payload; nil when its inner lengths do not add up (the caller reports the offset).
    static func decode(type: LogFormat.RecordType, payload: UnsafeRawBufferPointer) -> LogRecordView? {
        var cursor = ByteCursor(payload)
        switch type {
        case .set:
            guard let keyLength = cursor.readUInt32(), let key = cursor.readSlice(Int(keyLength)) else { return nil }
            return .set(key: key, value: cursor.readRest())
        case .delete:
            guard let count = cursor.readUInt32(), Int(count) <= payload.count / 4 else { return nil }
            var keys: [[UInt8]] = []
            keys.reserveCapacity(Int(count))
            for _ in 0..<count {
                guard let length = cursor.readUInt32(), let key = cursor.readSlice(Int(length)) else { return nil }
                keys.append(Array(key))
            }
            return cursor.isAtEnd ? .delete(keys: keys) : nil
        case .multiSet:
            guard let count = cursor.readUInt32(), Int(count) <= payload.count / 8 else { return nil }
            var pairs: [(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)] = []
            pairs.reserveCapacity(Int(count))
            for _ in 0..<count {
                guard let keyLength = cursor.readUInt32(), let valueLength = cursor.readUInt32(),
                      let key = cursor.readSlice(Int(keyLength)), let value = cursor.readSlice(Int(valueLength)) else { return nil }
                pairs.append((key, value))
            }
            return cursor.isAtEnd ? .multiSet(pairs: pairs) : nil
        case .replicationPosition:
            return ReplicationPosition(decoding: payload).map { .replicationPosition($0) }
        case .streamBytes:
            return .streamBytes(payload)
        case .imageEntries, .imageEnd, .sealed:
            return nil
        }
    }
}

/// Reads little-endian integers and byte runs from a buffer, never past its end.
struct ByteCursor {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func readUInt32() -> UInt32? {
        guard bytes.count - offset >= 4 else { return nil }
        defer { offset += 4 }
        return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    mutating func readUInt64() -> UInt64? {
        guard bytes.count - offset >= 8 else { return nil }
        defer { offset += 8 }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    mutating func readSlice(_ count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0, bytes.count - offset >= count else { return nil }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
    }

    mutating func readRest() -> UnsafeRawBufferPointer {
        defer { offset = bytes.count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset...])
    }
}
