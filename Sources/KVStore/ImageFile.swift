#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What writing or reading an image (a checkpoint or a backup) found.
public struct ImageSummary: Sendable {
    /// The last write the image covers.
    public var sequence: UInt64
    public var entries: Int
    public var bytes: Int
}

/// Images: point-in-time copies of the whole key space, used as checkpoints in the data directory and as
/// backup files. See `LogFormat` and `Docs/LogFormat.md` for the bytes.
enum ImageFile {
    /// Entries are grouped into blocks of about this many payload bytes, each with its own checksum, so damage
    /// is reported at the offset of its block.
    static let blockSize = 256 << 10

    /// Writes `index` as an image covering writes through `sequence`, durably and atomically: to a temporary
    /// file, fsync, move it to `path`, fsync the directory. A crash leaves either no file at `path` or a whole one.
    /// - Parameter replace: replace whatever is at `path` (checkpoints, a restore, `--force`). Without it the
    ///   temporary is linked to `path`, which fails if anything is there, so an existing file is never replaced,
    ///   not even one that appears while the image is written.
    /// - Parameter key: seal the image with a key of its own derived from this one (nil: a plain image).
    static func write(_ index: OrderedIndex, sequence: UInt64, to path: String, replace: Bool = true, key: EncryptionKey? = nil,
                      fileSystem fs: any FileSystem) throws -> ImageSummary {
        // A fresh file, never one already there: O_EXCL | O_NOFOLLOW refuse whatever is at the name, so no link
        // can aim the write at another file (the store's log, say). A checkpoint's temporary has a fixed name,
        // which opening the store removes after a crash; a leftover is removed first (unlink removes a symlink
        // itself). Other temporaries get a name of their own, so that no file of someone else's is removed.
        let temporary: String
        let fd: Int32
        if replace {
            temporary = path + ".tmp"
            fs.unlink(temporary)
            fd = try fs.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW)
        } else {
            (temporary, fd) = try createUniqueTemporary(beside: path, fs: fs)
        }
        var summary = ImageSummary(sequence: sequence, entries: 0, bytes: 0)
        let control = OperationControl.current
        // The image's size to within its block headers: 8 bytes of lengths per entry, then key and value.
        control?.begin(stage: "writing image", item: path.split(separator: "/").last.map(String.init) ?? path,
                       total: LogFormat.fileHeaderSize + index.payloadBytes + 8 * index.count)
        do {
            defer { fs.close(fd) }
            // A fresh salt per image, so a fresh file key: block numbers (the nonces) repeat only across files.
            let cipher = key.map { FileCipher.fresh(master: $0, magic: LogFormat.imageMagic) }
            var output = LogFormat.fileHeader(magic: LogFormat.imageMagic, sequence: sequence, cipher: cipher)
            var sealed: [UInt8] = []
            var scratch: [UInt8] = []
            /// Writes `output` (plain records after the header, if any), sealing the records first in an encrypted image.
            func writeOutput(headerBytes: Int) throws {
                if let cipher {
                    sealed.removeAll(keepingCapacity: true)
                    sealed.append(contentsOf: output[..<headerBytes])
                    try output.withUnsafeBytes { try cipher.sealRecords(UnsafeRawBufferPointer(rebasing: $0[headerBytes...]), to: &sealed, scratch: &scratch) }
                    try sealed.withUnsafeBytes { try fs.write(fd, $0, path: temporary) }
                    summary.bytes += sealed.count
                } else {
                    try output.withUnsafeBytes { try fs.write(fd, $0, path: temporary) }
                    summary.bytes += output.count
                }
            }
            var headerBytes = output.count  // written with the first block
            var block: [UInt8] = []
            var blockEntries: UInt32 = 0
            var blockNumber: UInt64 = 0

            func emitBlock() throws {
                try MaintenanceCancellation.current?.check()  // a shutdown stops a long write; the .tmp is removed below
                try control?.check()  // so does Ctrl-C
                blockNumber += 1
                LogFormat.appendRecord(type: .imageEntries, sequence: blockNumber, payloadLength: 4 + block.count, to: &output) {
                    LogFormat.appendLittleEndian(blockEntries, to: &$0)
                    $0.append(contentsOf: block)
                }
                try writeOutput(headerBytes: headerBytes)
                headerBytes = 0
                control?.advance(by: output.count)
                output.removeAll(keepingCapacity: true)
                block.removeAll(keepingCapacity: true)
                blockEntries = 0
            }

            var failure: Error?
            index.forEach(from: nil, to: nil) { entry in
                entry.withUnsafeMutablePointerToElements { bytes in
                    LogFormat.appendLittleEndian(UInt32(entry.keyCount), to: &block)
                    LogFormat.appendLittleEndian(UInt32(entry.valueCount), to: &block)
                    block.append(contentsOf: UnsafeBufferPointer(start: bytes, count: entry.keyCount + entry.valueCount))
                }
                blockEntries += 1
                summary.entries += 1
                guard block.count >= blockSize else { return true }
                do { try emitBlock() } catch { failure = error }
                return failure == nil
            }
            if let failure { throw failure }
            if blockEntries > 0 { try emitBlock() }
            LogFormat.appendRecord(type: .imageEnd, sequence: blockNumber + 1, payloadLength: 8, to: &output) {
                LogFormat.appendLittleEndian(UInt64(summary.entries), to: &$0)
            }
            try writeOutput(headerBytes: headerBytes)
            try fs.fsync(fd, path: temporary)
        } catch {
            fs.unlink(temporary)
            throw error
        }
        if replace {
            do {
                try fs.rename(temporary, to: path)
            } catch {
                fs.unlink(temporary)
                throw error
            }
        } else {
            defer { fs.unlink(temporary) }
            do {
                try fs.link(temporary, to: path)
            } catch StoreError.io(_, _, let code) where code == EEXIST {
                throw StoreError.fileExists(path: path)
            }
        }
        try fs.fsyncDirectory(DataDirectory.parentDirectory(of: path))
        return summary
    }

    /// Creates `path.<random>.tmp`, a name nobody else uses, exclusively.
    private static func createUniqueTemporary(beside path: String, fs: any FileSystem) throws -> (path: String, fd: Int32) {
        var generator = SystemRandomNumberGenerator()
        while true {
            let candidate = path + "." + String(generator.next() as UInt64, radix: 36) + ".tmp"
            do {
                return (candidate, try fs.open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW))
            } catch StoreError.io(_, _, let code) where code == EEXIST {
                continue
            }
        }
    }

    /// The entries of an image block's payload (a 32-bit count, then per entry a 32-bit key length, a 32-bit value
    /// length, the key and the value), pointing into `payload`; nil when the lengths do not add up to the payload
    /// exactly. The one decoder of image blocks: opening a store and the checker both read blocks through it.
    static func entries(ofBlock payload: UnsafeRawBufferPointer) -> [(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)]? {
        var cursor = ByteCursor(payload)
        // Each entry takes at least its 8 bytes of lengths: a count beyond that is damage, not a reason to reserve.
        guard let count = cursor.readUInt32(), Int(count) <= payload.count / 8 else { return nil }
        var entries: [(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)] = []
        entries.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let keyLength = cursor.readUInt32(), let valueLength = cursor.readUInt32(),
                  let key = cursor.readSlice(Int(keyLength)), let value = cursor.readSlice(Int(valueLength)) else { return nil }
            entries.append((key, value))
        }
        return cursor.isAtEnd ? entries : nil
    }

    /// Reads the image at `path` into `index`, verifying every block. Any damage is corruption: an image is
    /// never written in place, so unlike a log it has no torn tail.
    /// - Parameter followSymlinks: follow a link at `path` (a backup the user names); a store's own image is
    ///   opened with `O_NOFOLLOW`.
    /// - Parameter keyring: the keys an encrypted image may be sealed with.
    static func read(_ path: String, into index: inout OrderedIndex, followSymlinks: Bool = false, keyring: Keyring = .plain,
                     fileSystem: any FileSystem = POSIXFileSystem()) throws -> ImageSummary {
        try MappedFile.withContents(of: path, followSymlinks: followSymlinks, fileSystem: fileSystem) { mapped in
            let file = mapped.bytes
            let header: LogFormat.FileHeader
            switch LogReader.decodeHeader(file, magic: LogFormat.imageMagic) {
            case .success(let value): header = value
            case .failure(.unsupported(let version)): throw StoreError.unsupportedVersion(file: path, version: version)
            case .failure(let problem): throw StoreError.corruption(file: path, offset: 0, reason: problem.description)
            }
            let cipher = try keyring.cipher(for: header, path: path, magic: LogFormat.imageMagic)
            var summary = ImageSummary(sequence: header.sequence, entries: 0, bytes: file.count)
            var offset = header.size
            var expectedBlock: UInt64 = 1
            // Points into the mapping, or in an encrypted image into a copy of the last key (blocks are decrypted
            // into buffers that do not outlive their block).
            var previousKey: UnsafeRawBufferPointer?
            var previousKeyCopy: [UInt8] = []
            while true {
                func corrupt(_ reason: String) -> StoreError { .corruption(file: path, offset: offset, reason: reason) }
                guard offset < file.count else { throw corrupt("image ends without its end record (incomplete image)") }
                let done: Bool = try LogReader.withRecord(in: file, at: offset, cipher: cipher) { check in
                    let type: LogFormat.RecordType, block: UInt64, payload: UnsafeRawBufferPointer, end: Int
                    switch check {
                    case .valid(let recordType, let sequence, let recordPayload, let recordEnd):
                        (type, block, payload, end) = (recordType, sequence, recordPayload, recordEnd)
                    case .invalid(let damage):
                        throw corrupt(damage.description)
                    }
                    guard block == expectedBlock else { throw corrupt("block number \(block) where \(expectedBlock) was expected") }
                    var cursor = ByteCursor(payload)
                    switch type {
                    case .imageEntries:
                        guard let entries = Self.entries(ofBlock: payload) else { throw corrupt("block entry lengths do not add up") }
                        for (key, value) in entries {
                            // Keys must be strictly increasing: checked against the previous block's last key too.
                            let outOfOrder: Bool
                            if let previousKey {
                                outOfOrder = compareBytes(previousKey, key) >= 0
                            } else if cipher != nil && summary.entries > 0 {
                                outOfOrder = previousKeyCopy.withUnsafeBytes { compareBytes($0, key) >= 0 }
                            } else {
                                outOfOrder = false
                            }
                            if outOfOrder { throw corrupt("keys out of order") }
                            index.set(key, value)
                            previousKey = key
                            summary.entries += 1
                        }
                        if cipher != nil, let last = entries.last {
                            previousKeyCopy = Array(last.key)
                            previousKey = nil
                        }
                    case .imageEnd:
                        guard let count = cursor.readUInt64(), cursor.isAtEnd else { throw corrupt("bad end record") }
                        guard count == UInt64(summary.entries) else {
                            throw corrupt("end record counts \(count) entries but the image holds \(summary.entries)")
                        }
                        guard end == file.count else { throw corrupt("\(file.count - end) bytes after the end record") }
                        return true
                    case .set, .delete, .multiSet, .replicationPosition, .streamBytes, .sealed:
                        throw corrupt("log record (type \(type.rawValue)) in an image")
                    }
                    offset = end
                    return false
                }
                if done { return summary }
                expectedBlock += 1
                try mapped.releasePages(before: offset)
            }
        }
    }
}
