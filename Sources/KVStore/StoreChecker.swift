#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Verifies a data directory file by file, and repairs it.
///
/// ``check(directory:)`` reads every log file and image of a data directory and reports what opening it would
/// find: torn tails (which open cuts), corruption (which makes open refuse), gaps in sequence numbers, images
/// that do not line up with the log after them, and leftovers. It changes nothing and needs no write access.
///
/// ``repair(directory:salvage:)`` fixes what it can. A torn tail of the last log file is cut, as open would
/// do. With `salvage`, a store damaged in the middle is rebuilt from every record and image block that still
/// passes its checksum, and the report says exactly how much was lost. Every file it changes or replaces is kept
/// as `<name>.broken` (`.broken.1`, `.broken.2`, ... when that name is taken).
///
/// Both expect the caller to hold the directory's lock (``DirectoryLock``), so that no store has it open.
///
/// How a damaged log is read: when a record fails its checks, the scan looks at every later byte offset for a
/// record that passes framing and checksum, is a log record whose payload decodes, and carries a sequence number
/// above the last good one (the same condition open uses to tell a torn tail from corruption), and carries on
/// from there. Records lost are counted from the gaps in sequence numbers (within files, between files, and
/// between the image and the first log after it). Records inside a torn tail have no readable sequence number,
/// so only their bytes are counted.
public enum StoreChecker {
    // MARK: Report

    /// One thing wrong with a file.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public enum Kind: String, Sendable {
            /// A damaged end of the last log file with no valid record after it: open cuts it.
            case tornTail
            /// Damage open refuses: data that was once acknowledged may lie beyond it.
            case corruption
            /// A file written by a newer kvsh: not damage, but neither check nor repair can read it.
            case newerVersion
        }

        public var kind: Kind
        /// The file's path.
        public var file: String
        /// Where in the file the problem starts.
        public var offset: Int
        public var reason: String
        /// Torn tail: the bytes open would cut. Corruption: the bytes a salvage would skip from `offset` on
        /// (0 when nothing needs skipping, as for a gap in sequence numbers).
        public var bytes: Int

        public var description: String {
            switch kind {
            case .tornTail where offset == 0:
                return "\(file): torn header (\(reason)): open would write the header again, dropping \(bytes) bytes"
            case .tornTail:
                return "\(file): torn tail at offset \(offset) (\(reason)): open would cut \(bytes) bytes at offset \(offset); every record before it is kept"
            case .corruption:
                return "\(file): corrupt at offset \(offset): \(reason)"
            case .newerVersion:
                return "\(file): \(reason)"
            }
        }
    }

    /// What one file holds.
    public struct FileReport: Sendable {
        public enum Kind: String, Sendable {
            case log, image
            /// A `*.tmp` file: an image write a crash interrupted. Open deletes it.
            case temporary
        }

        public var name: String
        public var path: String
        public var kind: Kind
        public var size: Int
        /// Log: the valid records. Image: the valid blocks of entries.
        public var records: Int = 0
        /// Image: the entries in its valid blocks.
        public var entries: Int = 0
        /// Log: the sequence numbers of its first and last valid records (nil without any).
        /// Image: `lastSequence` is the last write it covers, `firstSequence` is nil.
        public var firstSequence: UInt64?
        public var lastSequence: UInt64?
        /// The header's sequence field (a log's first sequence, an image's last covered one); nil when unreadable.
        public var headerSequence: UInt64?
        /// Set for log files numbered below the newest image and for older images: open deletes them.
        /// Their problems are listed, but they are not damage to the store.
        public var isCovered = false
        /// A remark that is not a problem ("covered by ...", "leftover temporary file ...").
        public var note: String?
        /// Problems in this file, in the order of their offsets.
        public var problems: [Problem] = []

        init(name: String, path: String, kind: Kind, size: Int) {
            (self.name, self.path, self.kind, self.size) = (name, path, kind, size)
        }
    }

    /// What a salvage loses (or lost).
    public struct Loss: Sendable, Equatable, CustomStringConvertible {
        /// Log records missing, counted from gaps in sequence numbers. Records in a torn tail are not counted
        /// (their sequence numbers are unreadable); their bytes are.
        public var records = 0
        /// Bytes skipped as damaged, in log files and the newest image.
        public var bytes = 0
        /// Entries missing from the newest image: the count its end record gives minus the entries kept; nil when
        /// unknown (the image is damaged and its end record is unreadable).
        public var imageEntries: Int? = 0

        public var description: String {
            var parts = ["\(records) record\(records == 1 ? "" : "s")", "\(bytes) byte\(bytes == 1 ? "" : "s")"]
            switch imageEntries {
            case .none: parts.append("an unknown number of image entries")
            case .some(0): break
            case .some(let count): parts.append("\(count) image entr\(count == 1 ? "y" : "ies")")
            }
            return parts.count == 2 ? "\(parts[0]) and \(parts[1])" : "\(parts[0]), \(parts[1]) and \(parts[2])"
        }
    }

    /// What ``repair(directory:salvage:)`` did.
    public struct RepairSummary: Sendable {
        public enum Outcome: String, Sendable {
            /// The store was clean: nothing was changed.
            case nothingToDo
            /// The torn tail of the last log file was cut (or its torn header written again).
            case cutTornTail
            /// The store was rebuilt from every valid record and block.
            case salvaged
            /// Nothing was changed: the damage needs `--salvage`, or a file needs a newer kvsh.
            case refused
        }

        public var outcome: Outcome
        public var salvage: Bool
        /// The first problem found before repairing.
        public var problemBefore: Problem?
        /// One line per step taken, in order.
        public var actions: [String] = []
        /// The copies kept of the files that were changed or replaced, as paths.
        public var backups: [String] = []
        /// What the salvage lost; nil unless the store was salvaged.
        public var lost: Loss?
        /// One sentence saying what happened.
        public var message: String
    }

    /// What a check found; after a repair, a fresh check plus ``repair`` saying what was done. A value: the shell
    /// renders it (`ShellText.describe(check:)`).
    public struct Report: Sendable {
        public enum Status: String, Sendable {
            case clean
            /// The only damage is a torn tail of the last log file: the store opens (open cuts it).
            case tornTail
            /// The store does not open.
            case corrupt
            /// A file was written by a newer kvsh.
            case newerVersion
        }

        public var directory: String
        /// Every log file, image and temporary file, by number (an image before the log file of its number).
        public var files: [FileReport]
        /// Remarks that are not problems.
        public var notes: [String]
        /// The valid records of the log files open would replay.
        public var records: Int
        /// The keys the store holds when loaded like open does: the newest image, then the records. When the store
        /// is corrupt, the keys a salvage would keep.
        public var keys: Int
        /// The sequence number of the last write (0 for an empty store).
        public var lastSequence: UInt64
        /// What `repair --salvage` loses (or would lose) from the store as it is.
        public var salvageLoss: Loss
        /// Set by ``StoreChecker/repair(directory:salvage:)``.
        public var repair: RepairSummary?

        /// Every problem of the files open reads, in file order, then offset order.
        public var problems: [Problem] { files.filter { !$0.isCovered }.flatMap(\.problems) }
        /// The first problem, with file, offset and reason.
        public var problem: Problem? { problems.first }
        /// No problem at all (notes such as covered files or `.tmp` leftovers are not problems).
        public var isClean: Bool { problems.isEmpty }
        public var fileCount: Int { files.count }

        public var status: Status {
            let problems = problems
            if problems.contains(where: { $0.kind == .newerVersion }) { return .newerVersion }
            if problems.contains(where: { $0.kind == .corruption }) { return .corrupt }
            return problems.isEmpty ? .clean : .tornTail
        }

        /// Whether `KVStore(directory:)` would open the store as it is.
        public var wouldOpen: Bool { status == .clean || status == .tornTail }
    }

    // MARK: Check and repair

    /// Read-only: verifies every file of `directory` without changing anything.
    ///
    /// Checks the header (magic, version, checksum) of every `NNNNNN.log` and `NNNNNN.image`, every record's
    /// framing and checksum, sequence continuity inside each log file and across them, that the first log file
    /// numbered from the newest image on starts right after the writes the image covers, the order of the keys
    /// and the end record of images; notes covered files and `*.tmp` leftovers. Needs no write access.
    /// - Throws: ``StoreError/io(operation:path:errno:)`` when the directory or a file cannot be read.
    /// - Parameter keyring: the keys of an encrypted store; a store sealed with another key is an error, not damage.
    public static func check(directory: String, keyring: Keyring = .plain, fileSystem: any FileSystem = POSIXFileSystem()) throws -> Report {
        try analyze(directory: directory, keyring: keyring, fileSystem: fileSystem).report
    }

    /// Repairs `directory` and returns a fresh check with ``Report/repair`` saying what was done.
    ///
    /// - A torn tail of the last log file is cut (truncate, fsync), after keeping a copy of the file as
    ///   `<name>.broken`; a torn header is written again.
    /// - Damage anywhere else (corruption): without `salvage`, nothing is changed and the report says to use
    ///   `--salvage`. With `salvage`, the store is rebuilt from the newest image (its valid blocks, if damaged)
    ///   and every valid record after it: a new image `M.image` numbered above every existing file, covering the
    ///   last salvaged sequence S, and an empty `M.log` starting at S + 1. Every old log file and image is kept
    ///   as `<name>.broken`. The report says how many records, bytes and image entries were lost.
    ///
    /// The salvage is crash-safe: each old file first gets its `.broken` name as a hard link (a copy where the
    /// file system has no hard links), then the new image and log file are written and made durable, and only
    /// then are the old names removed. Until the new log file exists the store is as it was; from then on, open
    /// loads the new image and deletes whatever old names are left (the `.broken` names keep the data).
    public static func repair(directory: String, salvage: Bool, keyring: Keyring = .plain,
                              fileSystem fs: any FileSystem = POSIXFileSystem()) throws -> Report {
        let analysis = try analyze(directory: directory, keyring: keyring, fileSystem: fs)
        let before = analysis.report
        var summary = RepairSummary(outcome: .nothingToDo, salvage: salvage, problemBefore: before.problem,
                                    message: "the store is clean; nothing was changed")
        switch before.status {
        case .clean:
            return before.with(repair: summary)
        case .newerVersion:
            summary.outcome = .refused
            summary.message = "nothing was changed: \(before.problem.map(\.description) ?? "a file needs a newer kvsh")"
        case .tornTail:
            try cutTornTail(analysis, directory: directory, summary: &summary, fs: fs)
        case .corrupt:
            guard salvage else {
                summary.outcome = .refused
                summary.message = "nothing was changed: the store is corrupt in the middle (\(before.problem.map(\.description) ?? "")); "
                    + "use --salvage to rebuild it from every valid record (it would lose \(before.salvageLoss))"
                return before.with(repair: summary)
            }
            try rebuild(analysis, directory: directory, summary: &summary, fs: fs)
        }
        return try check(directory: directory, keyring: keyring, fileSystem: fs).with(repair: summary)
    }

    // MARK: Repairs

    private static func cutTornTail(_ analysis: Analysis, directory: String, summary: inout RepairSummary,
                                    fs: any FileSystem) throws {
        guard let cut = analysis.tornCut else { return }
        let name = baseName(cut.path)
        let backup = try keepCopy(of: cut.path, linking: false, fs: fs)
        summary.backups.append(backup)
        summary.actions.append("kept a copy of \(name) as \(baseName(backup))")
        if let sequence = cut.rewriteHeader {
            try KVStore.createLogFile(cut.path, firstSequence: sequence, key: analysis.keyring.current, directory: directory, fileSystem: fs)
            summary.actions.append("wrote the header of \(name) again (first sequence \(sequence)), dropping \(cut.bytes) bytes")
            summary.message = "wrote the torn header of \(name) again"
        } else {
            let fd = try fs.open(cut.path, O_WRONLY | O_NOFOLLOW)
            defer { fs.close(fd) }
            try fs.truncate(fd, to: cut.offset, path: cut.path)
            try fs.fsync(fd, path: cut.path)
            summary.actions.append("cut \(cut.bytes) bytes at offset \(cut.offset) of \(name) (\(cut.reason)); every record before it was kept")
            summary.message = "cut the torn tail of \(name)"
        }
        summary.outcome = .cutTornTail
    }

    private static func rebuild(_ analysis: Analysis, directory: String, summary: inout RepairSummary, fs: any FileSystem) throws {
        let old = analysis.storeFiles
        // 1. Keep every old file under its `.broken` name; the old names stay until the new store is durable.
        for path in old {
            let backup = try keepCopy(of: path, linking: true, fs: fs)
            summary.backups.append(backup)
            summary.actions.append("kept \(baseName(path)) as \(baseName(backup))")
        }
        if !old.isEmpty { try fs.fsyncDirectory(directory) }
        for problem in analysis.report.problems where problem.bytes > 0 {
            summary.actions.append("skipped \(problem.bytes) damaged bytes at offset \(problem.offset) of \(baseName(problem.file)) (\(problem.reason))")
        }
        // 2. The new image and log file, numbered above every file in the directory.
        let number = try highestNumber(in: directory, fs: fs) + 1
        let sequence = analysis.nextSequence.map { $0 - 1 } ?? 0
        let imagePath = DataDirectory.join(directory, DataDirectory.imageFileName(number))
        let image = try ImageFile.write(analysis.index, sequence: sequence, to: imagePath, key: analysis.keyring.current, fileSystem: fs)
        summary.actions.append("wrote \(baseName(imagePath)): \(plural(image.entries, "key")) through sequence \(sequence) (\(image.bytes) bytes)")
        let logPath = DataDirectory.join(directory, DataDirectory.logFileName(number))
        try KVStore.createLogFile(logPath, firstSequence: sequence + 1, key: analysis.keyring.current, directory: directory, fileSystem: fs)
        summary.actions.append("started \(baseName(logPath)) at sequence \(sequence + 1)")
        // 3. Drop the old names: the `.broken` names keep the data.
        for path in old { fs.unlink(path) }
        if !old.isEmpty { try fs.fsyncDirectory(directory) }
        let lost = analysis.report.salvageLoss
        summary.lost = lost
        summary.actions.append("lost \(lost)")
        summary.outcome = .salvaged
        summary.message = "rebuilt the store from every valid record: kept \(plural(image.entries, "key")), lost \(lost)"
    }

    /// Keeps `path` as `path.broken` (or `.broken.1`, `.broken.2`, ...: never over an existing file), durably.
    /// With `linking`, as a hard link when the file system allows it (the file itself must then not be changed
    /// afterwards, only unlinked); otherwise as a copy.
    private static func keepCopy(of path: String, linking: Bool, fs: any FileSystem) throws -> String {
        var attempt = 0
        while true {
            let candidate = path + ".broken" + (attempt == 0 ? "" : ".\(attempt)")
            attempt += 1
            if linking {
                do {
                    try fs.link(path, to: candidate)
                    return candidate
                } catch StoreError.io(_, _, let code) {
                    switch code {
                    case EEXIST: continue
                    case EPERM, EXDEV, ENOTSUP, EMLINK, ENOSYS: break  // no hard links here: copy instead
                    default: throw StoreError.io(operation: "link", path: candidate, errno: code)
                    }
                }
            }
            let target: Int32
            do {
                target = try fs.open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW)
            } catch StoreError.io(_, _, let code) {
                if code == EEXIST { continue }
                throw StoreError.io(operation: "create", path: candidate, errno: code)
            }
            do {
                defer { fs.close(target) }
                let source = try fs.open(path, O_RDONLY | O_NOFOLLOW)
                defer { fs.close(source) }
                var buffer = [UInt8](repeating: 0, count: 1 << 20)
                var offset = 0
                while true {
                    let count = try buffer.withUnsafeMutableBytes { try fs.read(source, into: $0, at: offset, path: path) }
                    if count == 0 { break }
                    try buffer.withUnsafeBytes { try fs.write(target, UnsafeRawBufferPointer(rebasing: $0[..<count]), path: candidate) }
                    offset += count
                }
                try fs.fsync(target, path: candidate)
            } catch {
                fs.unlink(candidate)
                throw error
            }
            try fs.fsyncDirectory(DataDirectory.parentDirectory(of: path))
            return candidate
        }
    }

    /// The highest number any file name in `directory` starts with (0 without one).
    private static func highestNumber(in directory: String, fs: any FileSystem) throws -> Int {
        try fs.names(in: directory).reduce(0) { highest, name in
            max(highest, Int(name.prefix { $0.isASCII && $0.isNumber }) ?? 0)
        }
    }

    // MARK: Analysis

    /// Where and how the torn tail of the last log file is cut.
    struct TornCut {
        var path: String
        var offset: Int
        var bytes: Int
        var reason: String
        /// Set when the header itself is torn: the first sequence to write it again with.
        var rewriteHeader: UInt64?
    }

    /// Everything one pass over the directory found, including the salvaged key space.
    struct Analysis {
        var report: Report
        var index: OrderedIndex
        /// The sequence number the next write would carry; nil when unknown (nothing readable says).
        var nextSequence: UInt64?
        var tornCut: TornCut?
        /// The numbered log files and images, as paths.
        var storeFiles: [String]
        var keyring: Keyring
    }

    static func analyze(directory: String, keyring: Keyring, fileSystem fs: any FileSystem) throws -> Analysis {
        let names = try fs.names(in: directory).filter { $0 != "." && $0 != ".." }.sorted()
        let logs = try DataDirectory.logFiles(in: directory, fileSystem: fs)
        let images = try DataDirectory.imageFiles(in: directory, fileSystem: fs)
        var index = OrderedIndex()
        var loss = Loss()
        var notes: [String] = []
        var reports: [(number: Int, order: Int, file: FileReport)] = []
        var tornCut: TornCut?

        // The newest image: the starting point of open.
        var next: UInt64? = 1
        var expectation = "no image covers the writes before it"
        var firstLive = 1
        if let newest = images.last {
            let scan = try scanImage(path: newest.path, loss: &loss, keyring: keyring, fileSystem: fs) { key, value in index.set(key, value) }
            loss.imageEntries = scan.lostEntries
            next = scan.sequence.map { $0 + 1 }
            if let sequence = scan.sequence { expectation = "\(baseName(newest.path)) covers the writes through \(sequence)" }
            firstLive = newest.number
            reports.append((newest.number, 0, scan.file))
        }
        let newestName = images.last.map { baseName($0.path) } ?? ""
        for image in images.dropLast() {
            var throwaway = Loss()
            var scan = try scanImage(path: image.path, loss: &throwaway, keyring: keyring, fileSystem: fs, apply: nil)
            scan.file.isCovered = true
            scan.file.note = "covered, will be deleted at open (\(newestName) holds its writes)"
            reports.append((image.number, 0, scan.file))
        }

        // Log files below the newest image: covered. Verified, but their damage does not matter.
        for log in logs where log.number < firstLive {
            var throwaway = Loss()
            var scan = try scanLog(path: log.path, expected: nil, expectation: "", live: false, isLast: false,
                                   loss: &throwaway, keyring: keyring, fileSystem: fs, apply: { _ in })
            scan.file.isCovered = true
            scan.file.note = "covered, will be deleted at open (\(newestName) holds its writes)"
            reports.append((log.number, 1, scan.file))
        }

        // The log files open replays, in order, each continuing the one before.
        let live = logs.filter { $0.number >= firstLive }
        var records = 0
        for (position, log) in live.enumerated() {
            let scan = try scanLog(path: log.path, expected: next, expectation: expectation, live: true,
                                   isLast: position == live.count - 1, loss: &loss, keyring: keyring, fileSystem: fs) { operation in
                operation.apply(to: &index)
            }
            records += scan.file.records
            next = scan.next
            if let last = next.map({ $0 - 1 }) {
                expectation = "the writes before it end at \(last)"
            } else {
                expectation = "the writes before it end at an unknown sequence"
            }
            tornCut = scan.tornCut ?? tornCut
            reports.append((log.number, 1, scan.file))
        }
        if live.isEmpty && !(logs.isEmpty && images.isEmpty) {
            notes.append("no log file numbered from \(firstLive) on: open would create \(DataDirectory.logFileName(firstLive))"
                         + (next.map { " starting at sequence \($0)" } ?? ""))
        }
        if logs.isEmpty && images.isEmpty {
            notes.append("no log file and no image: open would create a new, empty store")
        }

        // Leftovers and files that are not the store's.
        var order = 2
        var others: [String] = []
        let canonical = Set((logs.map(\.path) + images.map(\.path)).map(baseName))
        for name in names where !canonical.contains(name) && name != DataDirectory.lockFileName {
            if name.hasSuffix(".tmp") {
                var file = FileReport(name: name, path: DataDirectory.join(directory, name), kind: .temporary,
                                      size: (try? fs.status(ofPath: DataDirectory.join(directory, name)))?.size ?? 0)
                file.note = "leftover temporary file (an image write a crash interrupted); open deletes it"
                reports.append((Int.max, order, file))
                order += 1
            } else {
                others.append(name)
            }
        }
        if !others.isEmpty {
            notes.append("not part of the store (ignored by open): " + others.joined(separator: ", "))
        }

        reports.sort { ($0.number, $0.order) < ($1.number, $1.order) }
        let report = Report(directory: directory, files: reports.map(\.file), notes: notes, records: records,
                            keys: index.count, lastSequence: next.map { $0 - 1 } ?? 0, salvageLoss: loss, repair: nil)
        return Analysis(report: report, index: index, nextSequence: next, tornCut: tornCut,
                        storeFiles: (logs.map(\.path) + images.map(\.path)), keyring: keyring)
    }

    // MARK: Log files

    struct LogScan {
        var file: FileReport
        /// The sequence number the record after this file's must carry; nil when unknown.
        var next: UInt64?
        var tornCut: TornCut?
    }

    /// Reads one log file, keeping every record it can (see the type's documentation), and classifies each
    /// damaged stretch the way open would: a torn tail (only at the end of the last live file, with no valid
    /// record after it by open's rule) or corruption.
    /// - Parameters:
    ///   - expected: the sequence number the file must start at; nil when unknown (or for covered files).
    ///   - expectation: what makes it expected, for the problem's text.
    ///   - live: whether open replays the file; `isLast`: whether it is the last one.
    static func scanLog(path: String, expected: UInt64?, expectation: String, live: Bool, isLast: Bool,
                        loss: inout Loss, keyring: Keyring = .plain, fileSystem: any FileSystem,
                        apply: (LogRecordView) -> Void) throws -> LogScan {
        try MappedFile.withContents(of: path, fileSystem: fileSystem) { mapped in
            let file = mapped.bytes
            let size = file.count
            var report = FileReport(name: baseName(path), path: path, kind: .log, size: size)
            var next = expected
            var tornCut: TornCut?
            func add(_ kind: Problem.Kind, _ offset: Int, _ reason: String, bytes: Int = 0) {
                report.problems.append(Problem(kind: kind, file: path, offset: offset, reason: reason, bytes: bytes))
            }

            // The header.
            var offset = LogFormat.fileHeaderSize
            var resuming = false  // just skipped damage: a gap in sequence numbers is part of it
            var cipher: FileCipher?
            switch LogReader.decodeHeader(file, magic: LogFormat.magic) {
            case .success(let header):
                let first = header.sequence
                cipher = try keyring.cipher(for: header, path: path, magic: LogFormat.magic)
                offset = header.size
                report.headerSequence = first
                if let expected {
                    if first != expected {
                        add(.corruption, 0, "log starts at sequence \(first) but \(expectation)")
                        if first > expected {
                            loss.records += Int(first - expected)
                            next = first
                        }
                    }
                } else {
                    next = first
                }
            case .failure(.unsupported(let version)):
                add(.newerVersion, 0, "log format version \(version) is newer than this kvsh understands (\(LogFormat.encryptedVersion)); upgrade kvsh")
                return LogScan(file: report, next: nil, tornCut: nil)
            case .failure(let problem):
                let reason = size == 0 ? "empty file" : size < LogFormat.fileHeaderSize ? "incomplete file header" : problem.description
                let tornHeader = LogReader.isTornHeader(file)
                loss.bytes += tornHeader ? size : 0
                if tornHeader {
                    // A crash while the file was being created: open writes the header again, but only in the
                    // last file (which holds no record, so nothing is lost).
                    if live && isLast {
                        add(.tornTail, 0, reason, bytes: size)
                        tornCut = TornCut(path: path, offset: 0, bytes: size, reason: reason, rewriteHeader: next ?? 1)
                    } else {
                        add(.corruption, 0, reason, bytes: size)
                    }
                    return LogScan(file: report, next: next, tornCut: tornCut)
                }
                // Nothing says where the records start or what they are numbered: look for the first one. An
                // encrypted file whose header is damaged cannot be read further (its salt is unknown).
                let resume = keyring.current != nil ? nil : findLogRecord(in: file, from: offset, next: next)
                let skipped = resume ?? size
                loss.bytes += skipped
                add(.corruption, 0, reason, bytes: skipped)
                offset = resume ?? size
                resuming = true
            }

            // The records.
            while offset < size {
                // nil when the record was kept; else why not, and whether its framing or checksum failed.
                let outcome: (failure: String, framing: Bool)? = LogReader.logRecord(in: file, at: offset, cipher: cipher) { step in
                    switch step {
                    case .record(let sequence, let operation, let end):
                        if let expected = next, sequence < expected {
                            return (failure: "record has sequence number \(sequence) where \(expected) was expected", framing: false)
                        }
                        if let expected = next, sequence > expected {
                            if !resuming {
                                add(.corruption, offset, "record has sequence number \(sequence) where \(expected) was expected")
                            }
                            loss.records += Int(sequence - expected)
                        }
                        apply(operation)
                        report.records += 1
                        report.firstSequence = report.firstSequence ?? sequence
                        report.lastSequence = sequence
                        next = sequence + 1
                        resuming = false
                        offset = end
                        return nil
                    case .damaged(let reason, let isFraming):
                        return (failure: reason, framing: isFraming)
                    }
                }
                guard let outcome else {
                    try mapped.releasePages(before: offset)
                    continue
                }
                let (failure, framing) = outcome
                let resume = findLogRecord(in: file, from: offset + 1, next: next, cipher: cipher)
                let skipped = (resume ?? size) - offset
                loss.bytes += skipped
                // Open's own rule for telling a torn tail from corruption.
                let follows = LogReader.firstValidRecord(in: file, after: offset, sequenceAtLeast: next ?? 0, cipher: cipher)
                if framing && follows == nil && live && isLast {
                    add(.tornTail, offset, failure, bytes: size - offset)
                    tornCut = TornCut(path: path, offset: offset, bytes: size - offset, reason: failure)
                } else {
                    add(.corruption, offset, failure + (follows.map { ", yet a valid record follows at offset \($0)" } ?? ""),
                        bytes: skipped)
                }
                resuming = true
                offset = resume ?? size
            }
            return LogScan(file: report, next: next, tornCut: tornCut)
        }
    }

    /// The first offset from `start` on holding a record a salvage keeps: good framing and checksum, a log
    /// record whose payload decodes, numbered `next` or above.
    static func findLogRecord(in file: UnsafeRawBufferPointer, from start: Int, next: UInt64?, cipher: FileCipher? = nil) -> Int? {
        let minimum = next ?? 0
        var candidate = start
        while candidate + LogFormat.recordHeaderSize <= file.count {
            defer { candidate += 1 }
            // Cheap tests first: most offsets fail on the type byte, the length or the sequence number.
            let type = file[candidate + 8]
            guard let kind = LogFormat.RecordType(rawValue: type), cipher == nil ? kind.isLogRecord : kind == .sealed else { continue }
            let length = Int(UInt32(littleEndian: file.loadUnaligned(fromByteOffset: candidate + 4, as: UInt32.self)))
            guard length <= file.count - candidate - LogFormat.recordHeaderSize,
                  UInt64(littleEndian: file.loadUnaligned(fromByteOffset: candidate + 9, as: UInt64.self)) >= minimum else { continue }
            let found: Bool = LogReader.logRecord(in: file, at: candidate, cipher: cipher) { step in
                if case .record = step { return true } else { return false }
            }
            if found { return candidate }
        }
        return nil
    }

    // MARK: Images

    struct ImageScan {
        var file: FileReport
        /// The last write the image covers; nil when its header is unreadable.
        var sequence: UInt64?
        /// Entries lost: 0 when the image is sound; nil when unknown.
        var lostEntries: Int?
    }

    /// Reads one image, keeping every block that passes its checks and passing its entries to `apply`.
    static func scanImage(path: String, loss: inout Loss, keyring: Keyring = .plain, fileSystem: any FileSystem,
                          apply: ((UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void)?) throws -> ImageScan {
        try MappedFile.withContents(of: path, fileSystem: fileSystem) { mapped in
            let file = mapped.bytes
            let size = file.count
            var report = FileReport(name: baseName(path), path: path, kind: .image, size: size)
            func add(_ kind: Problem.Kind, _ offset: Int, _ reason: String, bytes: Int = 0) {
                report.problems.append(Problem(kind: kind, file: path, offset: offset, reason: reason, bytes: bytes))
            }
            var offset = LogFormat.fileHeaderSize
            var expectedBlock: UInt64 = 1
            var damaged = false
            var resuming = false
            var cipher: FileCipher?
            switch LogReader.decodeHeader(file, magic: LogFormat.imageMagic) {
            case .success(let header):
                let sequence = header.sequence
                cipher = try keyring.cipher(for: header, path: path, magic: LogFormat.imageMagic)
                offset = header.size
                report.headerSequence = sequence
                report.lastSequence = sequence
            case .failure(.unsupported(let version)):
                add(.newerVersion, 0, "image format version \(version) is newer than this kvsh understands (\(LogFormat.encryptedVersion)); upgrade kvsh")
                return ImageScan(file: report, sequence: nil, lostEntries: nil)
            case .failure(let problem):
                let reason: String
                switch problem {
                case .tooShort: reason = "file is shorter than an image header"
                case .badChecksum: reason = "image header checksum mismatch"
                default: reason = problem.description
                }
                let resume = size > offset && keyring.current == nil ? findImageRecord(in: file, from: offset, block: 1) : nil
                let skipped = resume ?? size
                loss.bytes += skipped
                add(.corruption, 0, reason, bytes: skipped)
                offset = resume ?? size
                damaged = true
                resuming = true
            }

            var previousKey: [UInt8]?  // the last key of the block before (blocks of an encrypted image do not outlive their call)
            var endCount: UInt64?
            var keysOutOfOrder = false
            while offset < size {
                // nil when the block was kept.
                let failure: String? = LogReader.withRecord(in: file, at: offset, cipher: cipher) { check in
                    switch check {
                    case .valid(let type, let block, let payload, let end):
                        if block < expectedBlock {
                            return "block number \(block) where \(expectedBlock) was expected"
                        } else if type == .imageEntries, let entries = ImageFile.entries(ofBlock: payload) {
                            if block > expectedBlock && !resuming {
                                add(.corruption, offset, "block number \(block) where \(expectedBlock) was expected")
                            }
                            if block > expectedBlock { damaged = true }
                            var previousInBlock: UnsafeRawBufferPointer?
                            for (key, value) in entries {
                                let outOfOrder = previousInBlock.map { compareBytes($0, key) >= 0 }
                                    ?? previousKey.map { $0.withUnsafeBytes { compareBytes($0, key) >= 0 } } ?? false
                                if outOfOrder, !keysOutOfOrder {
                                    keysOutOfOrder = true
                                    add(.corruption, offset, "keys out of order")
                                }
                                apply?(key, value)
                                previousInBlock = key
                            }
                            if let last = previousInBlock { previousKey = Array(last) }
                            report.records += 1
                            report.entries += entries.count
                            expectedBlock = block + 1
                            resuming = false
                            offset = end
                            return nil
                        } else if type == .imageEnd, payload.count == 8 {
                            if block > expectedBlock && !resuming {
                                add(.corruption, offset, "block number \(block) where \(expectedBlock) was expected")
                            }
                            if block > expectedBlock { damaged = true }
                            let count = UInt64(littleEndian: payload.loadUnaligned(as: UInt64.self))
                            endCount = count
                            if count != UInt64(report.entries) && !damaged {
                                add(.corruption, offset, "end record counts \(count) entries but the image holds \(report.entries)")
                            }
                            if end < size {
                                loss.bytes += size - end
                                add(.corruption, end, "\(size - end) bytes after the end record", bytes: size - end)
                            }
                            offset = size
                            return nil
                        } else if type == .imageEntries {
                            return "block entry lengths do not add up"
                        } else if type == .imageEnd {
                            return "bad end record"
                        } else {
                            return "log record (type \(type.rawValue)) in an image"
                        }
                    case .invalid(let damage):
                        return damage.description
                    }
                }
                guard let failure else {
                    try mapped.releasePages(before: min(offset, size))
                    continue
                }
                let resume = findImageRecord(in: file, from: offset + 1, block: expectedBlock, cipher: cipher)
                let skipped = (resume ?? size) - offset
                loss.bytes += skipped
                add(.corruption, offset, "block \(expectedBlock): \(failure)" + (resume.map { ", yet a valid block follows at offset \($0)" } ?? ""),
                    bytes: skipped)
                damaged = true
                resuming = true
                offset = resume ?? size
            }
            if endCount == nil && report.problems.isEmpty {
                add(.corruption, size, "image ends without its end record (incomplete image)")
            }
            let lost = endCount.map { max(0, Int($0) - report.entries) }
            return ImageScan(file: report, sequence: report.headerSequence, lostEntries: lost)
        }
    }

    /// The first offset from `start` on holding a block or end record numbered `block` or above that passes
    /// its checks.
    static func findImageRecord(in file: UnsafeRawBufferPointer, from start: Int, block: UInt64, cipher: FileCipher? = nil) -> Int? {
        var candidate = start
        while candidate + LogFormat.recordHeaderSize <= file.count {
            defer { candidate += 1 }
            let type = file[candidate + 8]
            guard cipher == nil ? type == LogFormat.RecordType.imageEntries.rawValue || type == LogFormat.RecordType.imageEnd.rawValue
                : type == LogFormat.RecordType.sealed.rawValue else { continue }
            let length = Int(UInt32(littleEndian: file.loadUnaligned(fromByteOffset: candidate + 4, as: UInt32.self)))
            guard length <= file.count - candidate - LogFormat.recordHeaderSize,
                  UInt64(littleEndian: file.loadUnaligned(fromByteOffset: candidate + 9, as: UInt64.self)) >= block else { continue }
            let found: Bool = LogReader.withRecord(in: file, at: candidate, cipher: cipher) { check in
                guard case .valid(let type, _, let payload, _) = check else { return false }
                return type == .imageEnd ? payload.count == 8 : type == .imageEntries && ImageFile.entries(ofBlock: payload) != nil
            }
            if found { return candidate }
        }
        return nil
    }

    // MARK: Helpers

    static func baseName(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? path
    }
}

private func plural(_ count: Int, _ word: String, _ plural: String? = nil) -> String {
    "\(count) \(count == 1 ? word : plural ?? word + "s")"
}

extension StoreChecker.Report {
    fileprivate func with(repair: StoreChecker.RepairSummary) -> Self {
        var copy = self
        copy.repair = repair
        return copy
    }
}
