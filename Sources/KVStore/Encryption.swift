#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Crypto
import Foundation  // Data, and the DataProtocol conformance of raw buffer pointers that Crypto's API takes

/// A store's master key: 32 random bytes kept in a key file (`kvsh keygen`), never in the store.
///
/// Files are not sealed with it directly: each file derives its own AES-256-GCM key from it and a random salt in the
/// file's header (``FileCipher``), so nonces only need to be unique within one file. See `Docs/LogFormat.md`.
public struct EncryptionKey: Sendable {
    public static let size = 32
    /// How many bytes of SHA-256(key) a file header carries to name its key.
    public static let idSize = 8

    let key: SymmetricKey
    /// The first bytes of SHA-256 of the key: recognises a wrong key before anything is decrypted.
    public let id: [UInt8]
    /// The key file it came from, for messages; empty for a key made in memory.
    public let path: String

    /// A key from its 32 bytes.
    public init(bytes: [UInt8], path: String = "") throws {
        guard bytes.count == Self.size else {
            throw StoreError.encryptionKeyFile(path: path, reason: "holds \(bytes.count) bytes where a key has \(Self.size); make one with kvsh keygen FILE")
        }
        key = SymmetricKey(data: bytes)
        id = Array(SHA256.hash(data: bytes).prefix(Self.idSize))
        self.path = path
    }

    /// A new random key (for tests and `keygen`).
    public static func random() -> EncryptionKey {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return EncryptionKey(unchecked: bytes)
    }

    private init(unchecked bytes: [UInt8]) {
        key = SymmetricKey(data: bytes)
        id = Array(SHA256.hash(data: bytes).prefix(Self.idSize))
        path = ""
    }

    /// The key id as hex, as messages show it.
    public var idHex: String { hexString(id) }

    /// Reads a key file. Refuses, as ssh does with private keys, a file that its group or other users may read or
    /// write, and anything but a regular file of exactly 32 bytes.
    public static func load(from path: String) throws -> EncryptionKey {
        try Paths.validate(path)
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let hint = code == ENOENT ? " (make one with kvsh keygen FILE)" : ""
            throw StoreError.encryptionKeyFile(path: path, reason: "cannot be opened: \(systemErrorMessage(code))\(hint)")
        }
        defer { Glibc.close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw StoreError.encryptionKeyFile(path: path, reason: "cannot be examined: \(systemErrorMessage(errno))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw StoreError.encryptionKeyFile(path: path, reason: "is not a regular file")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw StoreError.encryptionKeyFile(path: path, reason: "can be read or written by other users (mode \(String(info.st_mode & 0o7777, radix: 8))); "
                + "run chmod 600 '\(path)' (and consider the key exposed)")
        }
        guard Int(info.st_size) == size else {
            throw StoreError.encryptionKeyFile(path: path, reason: "holds \(info.st_size) bytes where a key has \(size); make one with kvsh keygen FILE")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, size) }
        guard count == size else {
            throw StoreError.encryptionKeyFile(path: path, reason: count < 0 ? "cannot be read: \(systemErrorMessage(errno))" : "changed while it was read")
        }
        return try EncryptionKey(bytes: bytes, path: path)
    }

    /// Writes a new random key to `path` with mode 0600, durably. Never replaces a file already there.
    @discardableResult
    public static func generate(at path: String) throws -> EncryptionKey {
        try Paths.validate(path)
        let key = random()
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            if code == EEXIST { throw StoreError.encryptionKeyFile(path: path, reason: "already exists; kvsh keygen never replaces a key (a store sealed with it would be lost)") }
            throw StoreError.encryptionKeyFile(path: path, reason: "cannot be created: \(systemErrorMessage(code))")
        }
        var failure: Int32 = 0
        // fchmod too: the mode given to open is narrowed by the umask, never widened, but be exact.
        if fchmod(fd, 0o600) != 0 { failure = errno }
        let bytes = key.key.withUnsafeBytes { Array($0) }
        if failure == 0, bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) != size { failure = errno == 0 ? EIO : errno }
        if failure == 0, Glibc.fsync(fd) != 0 { failure = errno }
        Glibc.close(fd)
        guard failure == 0 else {
            unlink(path)
            throw StoreError.encryptionKeyFile(path: path, reason: "could not be written: \(systemErrorMessage(failure))")
        }
        return try EncryptionKey(bytes: bytes, path: path)
    }
}

/// The keys a store is opened with: the one new files are sealed with (nil: they are plain), and others that may
/// also open files (during a rekey, the new key for files it already wrote).
public struct Keyring: Sendable {
    public var current: EncryptionKey?
    public var others: [EncryptionKey]
    /// What to do about an encrypted file when no key of these opens it and none is current: said for opening a
    /// store; an import, whose store is already open, says something else.
    var missingKeyAdvice = "pass --encryption-key-file with the key it was sealed with"

    public init(current: EncryptionKey? = nil, others: [EncryptionKey] = []) {
        self.current = current
        self.others = others
    }

    public static let plain = Keyring()

    /// The cipher of a file whose header is `header`, checking that its key is one of these: an encrypted file needs
    /// its key, and a plain file is refused once a key is given (unless no current key is, as in a rekey of a plain
    /// store).
    func cipher(for header: LogFormat.FileHeader, path: String, magic: [UInt8]) throws -> FileCipher? {
        guard let sealing = header.sealing else {
            guard let current else { return nil }
            throw StoreError.encryption(file: path, reason: "is not encrypted, but an encryption key was given (\(current.path)); "
                + "open the store without --encryption-key-file, or encrypt it with kvsh rekey --new-key-file FILE")
        }
        if let key = ([current].compactMap { $0 } + others).first(where: { $0.id == sealing.keyID }) {
            return FileCipher(master: key, salt: sealing.salt, magic: magic)
        }
        guard let current else {
            throw StoreError.encryption(file: path, reason: "is encrypted (key id \(hexString(sealing.keyID))); \(missingKeyAdvice)")
        }
        throw StoreError.encryption(file: path, reason: "is encrypted with another key (key id \(hexString(sealing.keyID))) than \(current.path) "
            + "(key id \(current.idHex)); pass the key file the store was sealed with")
    }
}

/// AES-256-GCM for one file: the key derived (HKDF-SHA256) from the master key, the file's random 16-byte salt and
/// its magic. A record's nonce is its sequence number (a block's, in an image), which is unique within the file —
/// the argument that no nonce is used twice is in `Docs/LogFormat.md`.
struct FileCipher: Sendable {
    static let saltSize = 16
    static let tagSize = 16
    static let nonceSize = 12
    /// Bytes a sealed record has beyond its plain one: the inner type byte is sealed with the payload, plus the tag.
    static let overhead = 1 + tagSize

    let key: SymmetricKey
    let keyID: [UInt8]
    let salt: [UInt8]

    init(master: EncryptionKey, salt: [UInt8], magic: [UInt8]) {
        key = HKDF<SHA256>.deriveKey(inputKeyMaterial: master.key, salt: salt, info: magic, outputByteCount: 32)
        keyID = master.id
        self.salt = salt
    }

    /// A cipher for a new file: a fresh random salt, so a fresh key.
    static func fresh(master: EncryptionKey, magic: [UInt8]) -> FileCipher {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<saltSize).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return FileCipher(master: master, salt: salt, magic: magic)
    }

    var sealing: LogFormat.Sealing { LogFormat.Sealing(keyID: keyID, salt: salt) }

    @inline(__always)
    static func nonceBytes(_ sequence: UInt64) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: nonceSize)
        nonce.withUnsafeMutableBytes { $0.storeBytes(of: sequence.littleEndian, as: UInt64.self) }
        return nonce
    }

    /// Appends the sealed form of every plain record in `plain` (records framed as `LogFormat` writes them, back to
    /// back) to `output`: CRC | length | type 8 | sequence | AES-GCM(inner type | payload) | tag, the length, type and
    /// sequence authenticated as associated data.
    func sealRecords(_ plain: UnsafeRawBufferPointer, to output: inout [UInt8], scratch: inout [UInt8]) throws {
        var offset = 0
        while offset < plain.count {
            let length = Int(UInt32(littleEndian: plain.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)))
            let sequence = UInt64(littleEndian: plain.loadUnaligned(fromByteOffset: offset + 9, as: UInt64.self))
            let end = offset + LogFormat.recordHeaderSize + length
            precondition(end <= plain.count, "a plain record runs past the buffer it was encoded into")
            // The inner type and the payload are not adjacent in the plain record (the sequence is between them).
            scratch.removeAll(keepingCapacity: true)
            scratch.append(plain[offset + 8])
            scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: plain[(offset + LogFormat.recordHeaderSize)..<end]))
            try appendSealed(scratch, sequence: sequence, to: &output)
            offset = end
        }
    }

    /// Appends one sealed record holding `inner` (inner type byte, then payload) numbered `sequence`.
    func appendSealed(_ inner: [UInt8], sequence: UInt64, to output: inout [UInt8]) throws {
        let start = output.count
        let sealedLength = inner.count + Self.tagSize
        LogFormat.appendLittleEndian(UInt32(0), to: &output)  // CRC, below
        LogFormat.appendLittleEndian(UInt32(sealedLength), to: &output)
        output.append(LogFormat.RecordType.sealed.rawValue)
        LogFormat.appendLittleEndian(sequence, to: &output)
        let box = try output.withUnsafeBytes { bytes in
            try AES.GCM.seal(inner, using: key, nonce: AES.GCM.Nonce(data: Self.nonceBytes(sequence)),
                             authenticating: UnsafeRawBufferPointer(rebasing: bytes[(start + 4)..<(start + LogFormat.recordHeaderSize)]))
        }
        // Copied as bytes: appending a `Data` to an array goes element by element through its iterator.
        box.ciphertext.withUnsafeBytes { output.append(contentsOf: $0) }
        box.tag.withUnsafeBytes { output.append(contentsOf: $0) }
        output.withUnsafeMutableBytes { bytes in
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(start + 4)...]))
            bytes.storeBytes(of: crc.littleEndian, toByteOffset: start, as: UInt32.self)
        }
    }

    /// The inner type byte and payload of the sealed record at `offset` ... `end` of `file` (framing and CRC already
    /// checked), or nil when it fails authentication: damaged, or sealed with another key.
    func open(_ file: UnsafeRawBufferPointer, at offset: Int, end: Int, sequence: UInt64) -> Data? {
        let body = UnsafeRawBufferPointer(rebasing: file[(offset + LogFormat.recordHeaderSize)..<end])
        guard body.count >= Self.overhead else { return nil }
        let aad = UnsafeRawBufferPointer(rebasing: file[(offset + 4)..<(offset + LogFormat.recordHeaderSize)])
        // The box refers to the mapped file's bytes: no copy of the record before it is opened.
        let split = body.count - Self.tagSize
        guard let nonce = try? AES.GCM.Nonce(data: Self.nonceBytes(sequence)),
              let box = try? AES.GCM.SealedBox(nonce: nonce, ciphertext: UnsafeRawBufferPointer(rebasing: body[..<split]),
                                               tag: UnsafeRawBufferPointer(rebasing: body[split...])) else { return nil }
        return try? AES.GCM.open(box, using: key, authenticating: aad)
    }
}

func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}
