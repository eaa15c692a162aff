#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What reading one log file found.
struct LogFileScan: Sendable {
    /// The sequence number the header says the first record carries.
    var firstSequence: UInt64
    /// The sequence number the next record appended to this file must carry.
    var nextSequence: UInt64
    var records = 0
    /// The offset just past the last good record: where appends continue.
    var validLength: Int
    var fileSize: Int
    /// Set when the file ends in a torn or garbage tail with no valid record after it.
    var tornTail: TornTail?
    /// Whether the file is encrypted.
    var sealed = false
}

/// A damaged end of the last log file: a write a crash interrupted, or garbage after it.
public struct TornTail: Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var offset: Int
    public var droppedBytes: Int
    public var reason: String

    public var description: String {
        "\(file): torn tail at offset \(offset) (\(reason)): cut \(droppedBytes) bytes; every record before it was kept"
    }
}

/// Reads a log file front to back, verifying every checksum and sequence number.
///
/// A record that fails its checks is either a torn tail (no valid record anywhere after it) or corruption (a
/// valid record follows, so data that was once acknowledged sits beyond the damage). Only the last log file
/// of a store may end in a torn tail; everywhere else damage is corruption, reported with file and offset.
enum LogReader {
    /// Calls `apply` for every good record of `path` in order and returns what the file holds.
    /// - Parameter tornTailAllowed: whether a damaged end may be reported as a torn tail instead of corruption.
    /// - Parameter followSymlinks: follow a link at `path`; only for logs outside a data directory (an import).
    /// - Parameter keyring: the keys an encrypted file may be sealed with; a plain file is refused when it has a current key.
    static func scan(path: String, tornTailAllowed: Bool, followSymlinks: Bool = false, keyring: Keyring = .plain,
                     fileSystem: any FileSystem, apply: (UInt64, LogRecordView) throws -> Void) throws -> LogFileScan {
        try MappedFile.withContents(of: path, followSymlinks: followSymlinks, fileSystem: fileSystem) { mapped in
            try scan(mapped, path: path, tornTailAllowed: tornTailAllowed, keyring: keyring) { _, sequence, record in try apply(sequence, record) }
        }
    }

    /// ``scan(path:tornTailAllowed:apply:)``, passing `apply` each record's offset too.
    static func scanWithOffsets(path: String, tornTailAllowed: Bool, keyring: Keyring = .plain, fileSystem: any FileSystem,
                                apply: (_ offset: Int, _ sequence: UInt64, LogRecordView) throws -> Void) throws -> LogFileScan {
        try MappedFile.withContents(of: path, followSymlinks: false, fileSystem: fileSystem) { mapped in
            try scan(mapped, path: path, tornTailAllowed: tornTailAllowed, keyring: keyring, apply: apply)
        }
    }

    /// ``scan(path:tornTailAllowed:apply:)`` on an open file, passing `apply` each record's offset too.
    static func scan(fd: Int32, path: String, tornTailAllowed: Bool, keyring: Keyring = .plain, fileSystem: any FileSystem,
                     apply: (_ offset: Int, _ sequence: UInt64, LogRecordView) throws -> Void) throws -> LogFileScan {
        try MappedFile.withContents(of: fd, path: path, fileSystem: fileSystem) { mapped in
            try scan(mapped, path: path, tornTailAllowed: tornTailAllowed, keyring: keyring, apply: apply)
        }
    }

    private static func scan(_ mapped: MappedFile, path: String, tornTailAllowed: Bool, keyring: Keyring,
                             apply: (Int, UInt64, LogRecordView) throws -> Void) throws -> LogFileScan {
        let file = mapped.bytes
        let size = file.count
        guard size > 0 else {
            return try emptyOrTornHeader(path: path, size: size, tornTailAllowed: tornTailAllowed, reason: "empty file")
        }
        let header: LogFormat.FileHeader
        switch decodeHeader(file, magic: LogFormat.magic) {
        case .success(let decoded):
            header = decoded
        case .failure(let problem):
            if case .unsupported(let version) = problem { throw StoreError.unsupportedVersion(file: path, version: version) }
            // A crash while the header was being created leaves a short file; anything longer is damage.
            if isTornHeader(file) {
                return try emptyOrTornHeader(path: path, size: size, tornTailAllowed: tornTailAllowed, reason: problem.description)
            }
            throw StoreError.corruption(file: path, offset: 0, reason: problem.description)
        }
        let cipher = try keyring.cipher(for: header, path: path, magic: LogFormat.magic)

        var result = LogFileScan(firstSequence: header.sequence, nextSequence: header.sequence,
                                 validLength: header.size, fileSize: size, sealed: cipher != nil)
        var offset = header.size
        while offset < size {
            let step: (end: Int, damage: (reason: String, framing: Bool)?) = try logRecord(in: file, at: offset, cipher: cipher) { found in
                switch found {
                case .record(let sequence, let operation, let end):
                    guard sequence == result.nextSequence else {
                        throw StoreError.corruption(file: path, offset: offset,
                                                    reason: "record has sequence number \(sequence) where \(result.nextSequence) was expected")
                    }
                    try apply(offset, sequence, operation)
                    return (end: end, damage: nil)
                case .damaged(let reason, let framing):
                    return (end: offset, damage: (reason: reason, framing: framing))
                }
            }
            switch step.damage {
            case nil:
                result.records += 1
                result.nextSequence += 1
                offset = step.end
                result.validLength = step.end
            case (let reason, false)?:
                throw StoreError.corruption(file: path, offset: offset, reason: reason)
            case (let reason, true)?:
                if let next = firstValidRecord(in: file, after: offset, sequenceAtLeast: result.nextSequence, cipher: cipher) {
                    throw StoreError.corruption(file: path, offset: offset,
                                                reason: "\(reason), yet a valid record follows at offset \(next)")
                }
                guard tornTailAllowed else { throw StoreError.corruption(file: path, offset: offset, reason: reason) }
                result.tornTail = TornTail(file: path, offset: offset, droppedBytes: size - offset, reason: reason)
                return result
            }
            try mapped.releasePages(before: offset)
        }
        return result
    }

    /// Whether a log whose header does not decode is one a crash interrupted while creating it (its header is written
    /// again at open) rather than damage: no longer than a plain header, or no longer than an encrypted one and
    /// starting like one (magic, version 2). Open and the checker both decide by it.
    static func isTornHeader(_ file: UnsafeRawBufferPointer) -> Bool {
        if file.count <= LogFormat.fileHeaderSize { return true }
        return file.count <= LogFormat.encryptedHeaderSize && file.prefix(LogFormat.magic.count).elementsEqual(LogFormat.magic)
            && UInt32(littleEndian: file.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) == LogFormat.encryptedVersion
    }

    /// What the bytes at `offset` of a log file hold: a log record (framing, checksum, type and payload all good),
    /// or damage. The one decoder of log records: opening a store (which stops at damage), the importer and the
    /// checker (which records damage and looks for where good records resume) all read records through it, and
    /// differ only in what they do about sequence numbers and damage.
    enum LogStep {
        case record(sequence: UInt64, operation: LogRecordView, end: Int)
        /// `framing`: the record's framing or checksum failed (it may be a torn tail); otherwise a record that is
        /// whole but cannot be in a log.
        case damaged(reason: String, framing: Bool)
    }

    /// ``logRecord(in:at:cipher:_:)`` for a plain buffer, whose records point into `file`.
    static func logRecord(in file: UnsafeRawBufferPointer, at offset: Int) -> LogStep {
        withRecord(in: file, at: offset, cipher: nil) { logStep($0) }
    }

    /// Calls `body` with what the bytes at `offset` hold; in an encrypted file (`cipher`) the record is opened first,
    /// and the views `body` gets point into the decrypted bytes, valid only during the call.
    static func logRecord<T>(in file: UnsafeRawBufferPointer, at offset: Int, cipher: FileCipher?, _ body: (LogStep) throws -> T) rethrows -> T {
        try withRecord(in: file, at: offset, cipher: cipher) { try body(logStep($0)) }
    }

    private static func logStep(_ check: RecordCheck) -> LogStep {
        switch check {
        case .invalid(let damage):
            return .damaged(reason: damage.description, framing: true)
        case .valid(let type, let sequence, let payload, let end):
            guard type.isLogRecord else {
                return .damaged(reason: "image record (type \(type.rawValue)) in a log file", framing: false)
            }
            guard let operation = LogRecordView.decode(type: type, payload: payload) else {
                return .damaged(reason: "record payload lengths do not add up", framing: false)
            }
            return .record(sequence: sequence, operation: operation, end: end)
        }
    }

    /// Checks the record at `offset` of a file sealed with `cipher` (nil: plain) and calls `body` with it, opened: the
    /// inner type and payload of a sealed record. In an encrypted file a record that fails authentication, or one that
    /// is not sealed, is damage like a checksum mismatch; in a plain file a sealed record is an unknown type.
    static func withRecord<T>(in file: UnsafeRawBufferPointer, at offset: Int, cipher: FileCipher?, _ body: (RecordCheck) throws -> T) rethrows -> T {
        let check = record(in: file, at: offset)
        guard case .valid(let type, let sequence, _, let end) = check else { return try body(check) }
        guard let cipher else {
            return try body(type == .sealed ? .invalid(.unknownType(type.rawValue)) : check)
        }
        guard type == .sealed else { return try body(.invalid(.notSealed(type.rawValue))) }
        guard let inner = cipher.open(file, at: offset, end: end, sequence: sequence) else { return try body(.invalid(.authenticationFailed)) }
        return try inner.withUnsafeBytes { (inner: UnsafeRawBufferPointer) in
            guard let innerType = LogFormat.RecordType(rawValue: inner[0]), innerType != .sealed else {
                return try body(.invalid(.unknownType(inner[0])))
            }
            return try body(.valid(type: innerType, sequence: sequence, payload: UnsafeRawBufferPointer(rebasing: inner[1...]), end: end))
        }
    }

    private static func emptyOrTornHeader(path: String, size: Int, tornTailAllowed: Bool, reason: String) throws -> LogFileScan {
        guard tornTailAllowed else { throw StoreError.corruption(file: path, offset: 0, reason: reason) }
        var scan = LogFileScan(firstSequence: 0, nextSequence: 0, validLength: 0, fileSize: size)
        if size > 0 { scan.tornTail = TornTail(file: path, offset: 0, droppedBytes: size, reason: "incomplete file header") }
        return scan
    }

    enum HeaderProblem: Error, CustomStringConvertible {
        case tooShort, badMagic, badChecksum, unsupported(UInt32)
        var description: String {
            switch self {
            case .tooShort: return "file is shorter than a log header"
            case .badMagic: return "bad magic bytes (not a kvsh file of this kind)"
            case .badChecksum: return "log header checksum mismatch"
            case .unsupported(let version): return "unsupported log format version \(version)"
            }
        }
    }

    /// Checks a file header (of a log or an image, by `magic`), plain (version 1) or encrypted (version 2).
    static func decodeHeader(_ file: UnsafeRawBufferPointer, magic: [UInt8]) -> Result<LogFormat.FileHeader, HeaderProblem> {
        guard file.count >= LogFormat.fileHeaderSize else { return .failure(.tooShort) }
        guard file.prefix(magic.count).elementsEqual(magic) else { return .failure(.badMagic) }
        let version = UInt32(littleEndian: file.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let sequence = UInt64(littleEndian: file.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        if version == LogFormat.encryptedVersion {
            guard file.count >= LogFormat.encryptedHeaderSize else { return .failure(.tooShort) }
            let stored = UInt32(littleEndian: file.loadUnaligned(fromByteOffset: 48, as: UInt32.self))
            guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: file[0..<48])) == stored else { return .failure(.badChecksum) }
            let flags = UInt32(littleEndian: file.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
            guard flags == LogFormat.flagEncrypted else { return .failure(.unsupported(version)) }
            let sealing = LogFormat.Sealing(keyID: Array(file[24..<32]), salt: Array(file[32..<48]))
            return .success(LogFormat.FileHeader(sequence: sequence, sealing: sealing))
        }
        let stored = UInt32(littleEndian: file.loadUnaligned(fromByteOffset: 24, as: UInt32.self))
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: file[0..<24])) == stored else { return .failure(.badChecksum) }
        guard version <= LogFormat.version else { return .failure(.unsupported(version)) }
        return .success(LogFormat.FileHeader(sequence: sequence, sealing: nil))
    }

    enum RecordCheck {
        case valid(type: LogFormat.RecordType, sequence: UInt64, payload: UnsafeRawBufferPointer, end: Int)
        case invalid(RecordDamage)
    }

    /// Why a record failed its checks. An enum rather than text: the corruption scan checks every byte offset.
    enum RecordDamage: CustomStringConvertible {
        case incompleteHeader(bytes: Int)
        case lengthPastEnd(length: Int)
        case unknownType(UInt8)
        case checksumMismatch
        /// Encrypted files: the AES-GCM tag does not match (damage, or bytes sealed with another key).
        case authenticationFailed
        /// Encrypted files: a record that is not sealed (type given).
        case notSealed(UInt8)

        var description: String {
            switch self {
            case .incompleteHeader(let bytes): return "incomplete record header (\(bytes) of \(LogFormat.recordHeaderSize) bytes)"
            case .lengthPastEnd(let length): return "record length \(length) runs past the end of the file"
            case .unknownType(let type): return "unknown record type \(type)"
            case .checksumMismatch: return "record checksum mismatch"
            case .authenticationFailed: return "record fails authentication (AES-GCM tag mismatch)"
            case .notSealed(let type): return "unencrypted record (type \(type)) in an encrypted file"
            }
        }
    }

    /// Checks the framing and checksum of the record at `offset`.
    static func record(in file: UnsafeRawBufferPointer, at offset: Int) -> RecordCheck {
        let remaining = file.count - offset
        guard remaining >= LogFormat.recordHeaderSize else { return .invalid(.incompleteHeader(bytes: remaining)) }
        let storedCRC = UInt32(littleEndian: file.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        let length = Int(UInt32(littleEndian: file.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)))
        guard length <= LogFormat.maxPayloadSize, LogFormat.recordHeaderSize + length <= remaining else {
            return .invalid(.lengthPastEnd(length: length))
        }
        guard let type = LogFormat.RecordType(rawValue: file[offset + 8]) else { return .invalid(.unknownType(file[offset + 8])) }
        let end = offset + LogFormat.recordHeaderSize + length
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: file[(offset + 4)..<end])) == storedCRC else {
            return .invalid(.checksumMismatch)
        }
        let sequence = UInt64(littleEndian: file.loadUnaligned(fromByteOffset: offset + 9, as: UInt64.self))
        return .valid(type: type, sequence: sequence,
                      payload: UnsafeRawBufferPointer(rebasing: file[(offset + LogFormat.recordHeaderSize)..<end]), end: end)
    }

    /// The offset of the first well-framed record with a good checksum after `offset`, if any.
    /// Tries every byte position: after damage nothing says where the next record starts.
    ///
    /// A record that follows the damage must carry a sequence number at least `sequenceAtLeast`: that rules
    /// out most records that only look valid because they sit inside a torn value (a value holding a copy of
    /// a kvsh log, say), though a value holding records with higher sequence numbers could still fool it.
    static func firstValidRecord(in file: UnsafeRawBufferPointer, after offset: Int, sequenceAtLeast: UInt64,
                                 cipher: FileCipher? = nil) -> Int? {
        var candidate = offset + 1
        while candidate + LogFormat.recordHeaderSize <= file.count {
            // Framing and CRC first (cheap); only a candidate that passes them is decrypted.
            if case .valid(_, let sequence, _, _) = record(in: file, at: candidate), sequence >= sequenceAtLeast {
                let valid: Bool = withRecord(in: file, at: candidate, cipher: cipher) { check in
                    if case .valid = check { return true } else { return false }
                }
                if valid { return candidate }
            }
            candidate += 1
        }
        return nil
    }
}
