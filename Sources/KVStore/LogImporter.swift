import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Replays a foreign log into a store as new writes: another kvsh log (or data directory), or the JSON-lines
/// log of kvsh's ancestor, the Go StorageEngine (`{"operation":"SET","key":"k","value":"v"}` per line).
///
/// All or nothing, in bounded memory, whatever the source's size. Two passes over the mapped source:
///
/// 1. **Check**: every record (checksums, sequence numbers) or line (JSON syntax, operation names) is parsed,
///    and every key and value is checked against the store's limits; only counts and a checksum of what was
///    read are kept. Any problem throws, naming the line (JSON) or the offset (kvsh log): nothing is written.
/// 2. **Apply**: the source is read again, each record or line is parsed and checked again and applied at once.
///    The second pass must read exactly what the first checked (same size and modification time before it
///    starts, same checksum and count at its end); a file that changed in between is refused before anything is
///    written, or, if it changes during the second pass, reported as an incomplete import.
///
/// Memory: the source is mapped (not read into memory), and its pages are handed back to the kernel behind
/// the reader (`MappedFile.releasePages`). At any time the import holds one decoded operation: for a JSON
/// line its key and value (at most `maxKeySize + maxValueSize`), for a kvsh record its payload's keys and
/// values (at most `maxPayloadSize`). A JSON line is scanned byte by byte before it is decoded, and bytes that
/// cannot be in an entry (a NUL, a control byte, anything but `{` to start it) refuse it at once, so a huge
/// file with no newline (a sparse file, say) is refused at line 1 without being read; a line longer than any
/// valid entry can be (``maxJSONLineLength``) is refused too.
///
/// What the second pass cannot rule out, the store's own write failures (a full disk, which disables writes)
/// and a shutdown (``KVStore/cancelMaintenance()``), stops it part way: it then throws
/// ``StoreError/importIncomplete(file:applied:total:cause:)``, and the store keeps the operations applied so far
/// (durable once committed). Running the same import again completes it: an import only sets and deletes keys
/// it names, so replaying all of it after a prefix of it ends with the same contents as replaying it once.
public enum LogImporter {
    public struct Summary: Sendable {
        public var source: String
        public var format: String
        /// Keys set: one per SET record, one per pair of a MULTI-SET record.
        public var sets = 0
        /// DELETE records (each deletes one key or more).
        public var deletes = 0
        /// Entries that change nothing (`GET`/`EXISTS` in a Go log).
        public var skipped = 0
        public var tornTail: TornTail?
        public var duration: Duration = .zero
    }

    /// The longest JSON line that can hold a valid entry: the largest key and value with every byte escaped as
    /// `\u00XX` (6 bytes each, as Go's encoder writes `<`, `>` and `&`), plus room for names and other fields.
    static let maxJSONLineLength = 6 * (LogFormat.maxKeySize + LogFormat.maxValueSize) + (64 << 10)

    public static func importLog(at path: String, into store: KVStore) throws -> Summary {
        try Paths.validate(path)
        let clock = ContinuousClock()
        let start = clock.now
        let fs = store.fileSystem
        var files = try openSources(path, fileSystem: fs)
        defer { for file in files { fs.close(file.fd) } }
        // A log sealed with one of the store's keys reads; a plain one too, into an encrypted store.
        let keys = store.log.withLock { $0.keyring }
        var importKeys = Keyring(current: nil, others: [keys.current].compactMap { $0 } + keys.others)
        importKeys.missingKeyAdvice = "this store is not opened with that key: import it into a store opened with "
            + "--encryption-key-file and that key (kvsh rekey --new-key-file FILE seals a store with it)"
        for index in files.indices { files[index].keyring = importKeys }
        let isKVSHLog = try startsWithKVSHMagic(files[0])
        var summary = Summary(source: path, format: isKVSHLog ? "kvsh log" : "Go StorageEngine JSON lines")
        // Pass 1: check everything, write nothing.
        let control = OperationControl.current
        control?.setFileStage("checking")
        var total = 0
        do {
            try store.cancellable {
                for index in files.indices {
                    let isLast = index == files.count - 1
                    total += isKVSHLog ? try checkKVSHLog(&files[index], isLast: isLast, summary: &summary)
                                       : try checkJSONLines(&files[index], summary: &summary)
                }
            }
        } catch StoreError.cancelled {
            throw StoreError.cancelled(operation: "the import of '\(path)'")
        } catch StoreError.interrupted {
            throw StoreError.interrupted(operation: "the import of '\(path)'", undone: nil)
        } catch StoreError.corruption(let file, let offset, let reason) {
            throw StoreError.badImportRecord(file: file, offset: offset, reason: reason)
        }
        for file in files where try identity(file) != file.identity {
            throw StoreError.badImport(file: file.path, line: nil,
                                       reason: "the file changed while it was being checked; import it once nothing writes to it")
        }
        // Pass 2: apply what pass 1 checked. A caller that can interrupt it gets back the store as it was.
        control?.setFileStage("applying")
        let before = control.map { _ in store.snapshot() }
        var applied = 0
        do {
            try store.cancellable {
                for index in files.indices {
                    let file = files[index]
                    var digest: UInt32 = 0
                    let before = applied
                    if isKVSHLog {
                        try applyKVSHLog(file, isLast: index == files.count - 1, digest: &digest, applied: &applied, total: total, store: store)
                    } else {
                        try applyJSONLines(file, digest: &digest, applied: &applied, total: total, store: store)
                    }
                    guard digest == file.digest, applied - before == file.operations else {
                        throw ImportChanged(reason: "\(file.path) changed while it was imported: what was applied may mix its old and new contents")
                    }
                }
            }
        } catch StoreError.interrupted where before != nil {
            let reverted = try before.map { try store.revert(to: $0) }
            throw StoreError.interrupted(operation: "the import of '\(path)'",
                                         undone: "the \(applied) of \(total) operations it had applied were undone"
                                             + " (\(reverted?.keys ?? 0) keys put back)")
        } catch {
            let cause: String = switch error {
            case StoreError.cancelled: "kvsh is shutting down"
            case let changed as ImportChanged: changed.reason
            default: "\(error)"
            }
            throw StoreError.importIncomplete(file: path, applied: applied, total: total, cause: cause)
        }
        summary.duration = clock.now - start
        return summary
    }

    /// One file of the source, open from the first pass to the end of the second (so a file renamed over it
    /// meanwhile does not matter), with what the first pass found.
    struct SourceFile {
        let path: String
        let fd: Int32
        let fileSystem: any FileSystem
        var identity: FileIdentity
        /// The keys an encrypted kvsh log may be sealed with: the store's.
        var keyring = Keyring.plain
        /// A CRC32C over what the first pass read (the keys and values of the records, or the lines).
        var digest: UInt32 = 0
        /// Store operations the first pass found: records, or SET and DELETE lines.
        var operations = 0
    }

    /// What says a file was not rewritten: its size, modification and change times.
    struct FileIdentity: Equatable {
        var size: Int
        var modified: timespec
        var changed: timespec

        static func == (a: FileIdentity, b: FileIdentity) -> Bool {
            a.size == b.size && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
                && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
        }
    }

    private struct ImportChanged: Error {
        let reason: String
    }

    private static func identity(_ file: SourceFile) throws -> FileIdentity {
        try identity(fd: file.fd, path: file.path, fileSystem: file.fileSystem)
    }

    private static func identity(fd: Int32, path: String, fileSystem: any FileSystem) throws -> FileIdentity {
        let info = try fileSystem.status(of: fd, path: path)
        return FileIdentity(size: info.size, modified: info.modified, changed: info.changed)
    }

    /// Opens the file at `path`, or every `*.log` of the data directory at `path`: regular files only.
    private static func openSources(_ path: String, fileSystem fs: any FileSystem) throws -> [SourceFile] {
        let paths: [String]
        if (try? fs.status(ofPath: path))?.isDirectory == true {
            paths = try DataDirectory.logFiles(in: path, fileSystem: fs).map(\.path)
            guard !paths.isEmpty else { throw StoreError.badImport(file: path, line: nil, reason: "no *.log files in this directory") }
        } else {
            paths = [path]
        }
        var files: [SourceFile] = []
        do {
            for path in paths {
                let fd = try fs.openRegularFile(path, followSymlinks: true)
                files.append(SourceFile(path: path, fd: fd, fileSystem: fs,
                                        identity: FileIdentity(size: 0, modified: timespec(), changed: timespec())))
                files[files.count - 1].identity = try identity(fd: fd, path: path, fileSystem: fs)
            }
        } catch {
            for file in files { fs.close(file.fd) }
            throw error
        }
        return files
    }

    private static func startsWithKVSHMagic(_ file: SourceFile) throws -> Bool {
        var head = [UInt8](repeating: 0, count: LogFormat.magic.count)
        let count = try head.withUnsafeMutableBytes { try file.fileSystem.read(file.fd, into: $0, at: 0, path: file.path) }
        return count == head.count && head == LogFormat.magic
    }

    // MARK: kvsh logs

    /// The reason a key and value cannot be imported, if any.
    private static func refusal(key: Int, value: Int) -> String? {
        if key > LogFormat.maxKeySize { return StoreError.tooLarge(what: "key", size: key, limit: LogFormat.maxKeySize).description }
        if value > LogFormat.maxValueSize { return StoreError.tooLarge(what: "value", size: value, limit: LogFormat.maxValueSize).description }
        return nil
    }

    /// Folds what a record does into `digest`.
    private static func fold(_ record: LogRecordView, into digest: inout UInt32) {
        switch record {
        case .set(let key, let value):
            digest = CRC32C.checksum(value, extending: CRC32C.checksum(key, extending: digest ^ 1))
        case .delete(let keys):
            for key in keys { key.withUnsafeBytes { digest = CRC32C.checksum($0, extending: digest ^ 2) } }
        case .multiSet(let pairs):
            for pair in pairs { digest = CRC32C.checksum(pair.value, extending: CRC32C.checksum(pair.key, extending: digest ^ 3)) }
        case .replicationPosition, .streamBytes:
            break  // another store's replication bookkeeping: nothing to import
        }
    }

    /// Pass 1 over a kvsh log: checksums and sequence numbers (by `LogReader`), then the store's limits.
    private static func checkKVSHLog(_ file: inout SourceFile, isLast: Bool, summary: inout Summary) throws -> Int {
        var digest: UInt32 = 0
        let path = file.path
        let scan = try LogReader.scan(fd: file.fd, path: path, tornTailAllowed: isLast, keyring: file.keyring,
                                      fileSystem: file.fileSystem) { offset, _, record in
            switch record {
            case .set(let key, let value):
                if let reason = refusal(key: key.count, value: value.count) {
                    throw StoreError.badImportRecord(file: path, offset: offset, reason: reason)
                }
                summary.sets += 1
            case .multiSet(let pairs):
                for pair in pairs {
                    if let reason = refusal(key: pair.key.count, value: pair.value.count) {
                        throw StoreError.badImportRecord(file: path, offset: offset, reason: reason)
                    }
                }
                summary.sets += pairs.count
            case .delete:
                summary.deletes += 1  // its payload is within a record's, so within the limit of a DELETE record
            case .replicationPosition, .streamBytes:
                break
            }
            fold(record, into: &digest)
        }
        summary.tornTail = summary.tornTail ?? scan.tornTail
        file.digest = digest
        file.operations = scan.records
        return scan.records
    }

    /// Pass 2 over a kvsh log: each record, checked again by `LogReader`, applied as a new write.
    private static func applyKVSHLog(_ file: SourceFile, isLast: Bool, digest: inout UInt32, applied: inout Int, total: Int,
                                     store: KVStore) throws {
        _ = try LogReader.scan(fd: file.fd, path: file.path, tornTailAllowed: isLast, keyring: file.keyring,
                               fileSystem: file.fileSystem) { offset, _, record in
            try store.maintenanceCancellation.check()
            try OperationControl.current?.check()
            guard applied < total else { throw ImportChanged(reason: "\(file.path) holds more records than when it was checked") }
            switch record {
            case .set(let key, let value): _ = try store.set(key, value)
            case .delete(let keys): _ = try store.delete(keys)
            case .multiSet(let pairs): _ = try store.multiSet(pairs.map { (Array($0.key), Array($0.value)) })
            case .replicationPosition, .streamBytes: break
            }
            fold(record, into: &digest)
            applied += 1
        }
    }

    // MARK: Go StorageEngine JSON lines

    private struct GoEntry: Decodable {
        var operation: String
        var key: String
        var value: String?
    }

    private enum JSONOperation {
        case set(key: [UInt8], value: [UInt8])
        case delete(key: [UInt8])
        case skip
    }

    /// Calls `body` with each non-blank line of `file` (its number, its bytes and the operation it holds), checked
    /// as described on ``LogImporter``.
    private static func forEachJSONLine(_ file: SourceFile,
                                        _ body: (Int, UnsafeRawBufferPointer, JSONOperation) throws -> Void) throws {
        try MappedFile.withContents(of: file.fd, path: file.path, fileSystem: file.fileSystem) { mapped in
            let bytes = mapped.bytes
            let decoder = JSONDecoder()
            var start = 0
            var number = 0
            while start < bytes.count {
                number += 1
                let (end, blank) = try endOfJSONLine(bytes, from: start, line: number, path: file.path)
                let line = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
                if !blank, let base = line.baseAddress {
                    let entry: GoEntry
                    do {
                        let data = Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: line.count, deallocator: .none)
                        entry = try decoder.decode(GoEntry.self, from: data)
                    } catch {
                        throw StoreError.badImport(file: file.path, line: number,
                                                   reason: "not a kvsh log, and not a JSON object with \"operation\" and \"key\"")
                    }
                    try body(number, line, try operation(entry, line: number, path: file.path))
                }
                start = end + 1
                try mapped.releasePages(before: start)
            }
        }
    }

    private static func operation(_ entry: GoEntry, line: Int, path: String) throws -> JSONOperation {
        switch entry.operation.uppercased() {
        case "SET":
            guard let value = entry.value else { throw StoreError.badImport(file: path, line: line, reason: "SET entry without a \"value\"") }
            let key = Array(entry.key.utf8), bytes = Array(value.utf8)
            if let reason = refusal(key: key.count, value: bytes.count) { throw StoreError.badImport(file: path, line: line, reason: reason) }
            return .set(key: key, value: bytes)
        case "DELETE", "DEL":
            let key = Array(entry.key.utf8)
            if let reason = refusal(key: key.count, value: 0) { throw StoreError.badImport(file: path, line: line, reason: reason) }
            return .delete(key: key)
        case "GET", "EXISTS":
            return .skip
        default:
            throw StoreError.badImport(file: path, line: line, reason: "unknown operation '\(entry.operation)'")
        }
    }

    /// Where the line starting at `start` ends (its newline, or the end of the file), and whether it is blank.
    ///
    /// Reads byte by byte and stops at the first byte no valid entry can hold there: outside strings only JSON's
    /// punctuation, blanks and short runs of the letters, digits and signs of `true`, `null` or a number; inside
    /// strings no control byte; and the first non-blank byte must open an object. So garbage, a binary file or a
    /// run of NULs is refused where it starts, however long.
    static func endOfJSONLine(_ bytes: UnsafeRawBufferPointer, from start: Int, line: Int, path: String) throws -> (end: Int, blank: Bool) {
        func refuse(_ detail: String) -> StoreError {
            .badImport(file: path, line: line, reason: "not a kvsh log, and not a JSON object with \"operation\" and \"key\" (\(detail))")
        }
        func hex(_ byte: UInt8) -> String { "0x" + (byte < 16 ? "0" : "") + String(byte, radix: 16) }
        var index = start
        var blank = true
        var inString = false
        var escaped = false
        var literalRun = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x0A { return (index, blank) }
            let column = index - start + 1
            guard column <= maxJSONLineLength else {
                throw StoreError.badImport(file: path, line: line,
                                           reason: "the line is longer than \(maxJSONLineLength) bytes, more than any valid entry takes")
            }
            if column & 0xFF_FFFF == 0 { try MaintenanceCancellation.current?.check() }
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                } else if byte < 0x20 {
                    throw refuse("control byte \(hex(byte)) inside a string at column \(column)")
                }
            } else {
                switch byte {
                case 0x20, 0x09, 0x0D:
                    literalRun = 0
                case UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: ","), UInt8(ascii: ":"),
                     UInt8(ascii: "\""):
                    if blank && byte != UInt8(ascii: "{") { throw refuse("it starts with '\(Character(Unicode.Scalar(byte)))'") }
                    blank = false
                    inString = byte == UInt8(ascii: "\"")
                    literalRun = 0
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                     UInt8(ascii: "."), UInt8(ascii: "+"), UInt8(ascii: "-"):
                    if blank { throw refuse("it starts with '\(Character(Unicode.Scalar(byte)))'") }
                    literalRun += 1
                    if literalRun > 64 { throw refuse("a run of \(literalRun) bytes outside quotes at column \(column - 64)") }
                default:
                    throw refuse("byte \(hex(byte)) at column \(column)")
                }
            }
            index += 1
        }
        return (bytes.count, blank)
    }

    /// Pass 1 over a JSON-lines log.
    private static func checkJSONLines(_ file: inout SourceFile, summary: inout Summary) throws -> Int {
        var digest: UInt32 = 0
        var operations = 0
        try forEachJSONLine(file) { _, line, operation in
            digest = CRC32C.checksum(line, extending: digest)
            switch operation {
            case .set: summary.sets += 1; operations += 1
            case .delete: summary.deletes += 1; operations += 1
            case .skip: summary.skipped += 1
            }
        }
        file.digest = digest
        file.operations = operations
        return operations
    }

    /// Pass 2 over a JSON-lines log: each line, checked again, applied as a new write.
    private static func applyJSONLines(_ file: SourceFile, digest: inout UInt32, applied: inout Int, total: Int, store: KVStore) throws {
        try forEachJSONLine(file) { _, line, operation in
            try store.maintenanceCancellation.check()
            try OperationControl.current?.check()
            digest = CRC32C.checksum(line, extending: digest)
            if case .skip = operation { return }
            guard applied < total else { throw ImportChanged(reason: "\(file.path) holds more entries than when it was checked") }
            switch operation {
            case .set(let key, let value): _ = try store.set(key, value)
            case .delete(let key): _ = try store.delete([key])
            case .skip: break
            }
            applied += 1
        }
    }
}
