#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

// Checkpoints, compaction, backups, rebuild and the replay that opening a store runs.
//
// A checkpoint N writes `N.image`, the whole key space as of sequence S, and starts log file `N.log` at S + 1.
// Opening a store loads the newest image and replays the log files numbered from it on. The steps, in an order
// that leaves an openable store with nothing acknowledged lost after a crash at any point:
//   1. (log lock) write and fsync every pending record through S into the old log file;
//   2. (log lock) create `N.log` with first sequence S + 1, fsync it and the directory, switch writes to it;
//   3. (no lock) write the image from a copy-on-write snapshot of the index: `N.image.tmp`, fsync, rename, fsync
//      the directory;
//   4. delete the log files and images numbered below N, then fsync the directory.
// Before 3 completes, opening uses the older image (if any) and replays every log file, the new one included;
// after it, the leftovers of 4 are covered by the image and deleted at open.

/// The steps of a checkpoint, in order; tests stop a checkpoint after each to check that a crash there
/// loses nothing.
enum CheckpointStep: CaseIterable, Sendable {
    case oldLogSynced, newLogCreated, imageWritten, coveredFilesRemoved
}

extension KVStore {
    /// What opening (or rebuilding) the store found.
    public struct ReplayReport: Sendable {
        public var keys: Int
        /// The image loaded, if any, and its size.
        public var imageFile: String?
        public var imageBytes: Int
        public var records: Int
        public var logFiles: Int
        public var logBytes: Int
        /// The damaged end that was cut, if any.
        public var tornTail: TornTail?
        public var duration: Duration
    }

    /// Counters for `:stats`.
    public struct Statistics: Sendable {
        public var keys: Int
        public var payloadBytes: Int
        public var logFile: String
        public var logBytes: Int
        public var imageBytes: Int
        public var checkpoints: Int
        public var lastSequence: UInt64
        public var syncedSequence: UInt64
        public var syncPolicy: SyncPolicy
        public var fsyncs: Int
        public var hardwareCRC: Bool
    }

    /// What a checkpoint (`:compact`) did.
    public struct CheckpointReport: Sendable {
        /// The last write the new image covers.
        public var sequence: UInt64
        public var keys: Int
        public var logBytesBefore: Int
        public var imageBytesBefore: Int
        public var imageBytesAfter: Int
        public var imagePath: String
        /// How long committers waited for the log lock while the log file was switched.
        public var stall: Duration
        public var duration: Duration
    }

    // MARK: Checkpoints and compaction

    /// Writes an image of the whole store and starts a new log file, then deletes the files the image makes
    /// unnecessary. Reads and writes go on meanwhile; commits wait only while the log file is switched.
    public func checkpoint() throws -> CheckpointReport {
        try observed({ .checkpoint($0, succeeded: $1) }) {
            try maintenance.withLock { _ in try cancellable { try checkpointLocked(rekey: nil) } }
        }
    }

    /// Re-encrypts the store under `newKey` by checkpointing into it: the new log file and image are sealed with
    /// `newKey`, then every file sealed with the old key is deleted, the replication backlog's too (a replica that was
    /// away then needs a full copy). Reads and writes go on meanwhile. Once it returns, the old key opens nothing of
    /// the store; backups made before stay sealed with the old key. nil decrypts the store.
    /// If it fails part way, the store needs both keys until a rekey succeeds (`Keyring/others`).
    public func rekey(to newKey: EncryptionKey?) throws -> CheckpointReport {
        try observed({ .checkpoint($0, succeeded: $1) }) {
            try maintenance.withLock { _ in try cancellable { try checkpointLocked(rekey: .some(newKey)) } }
        }
    }

    /// The key files are sealed with now (nil: the store is plain).
    public var encryptionKey: EncryptionKey? { log.withLock { $0.keyring.current } }

    /// - Parameter rekey: when set, the key the new files are sealed with (and the store's from then on).
    private func checkpointLocked(rekey: EncryptionKey??) throws -> CheckpointReport {
        let clock = ContinuousClock()
        let start = clock.now
        var stall = Duration.zero
        // `replicaApply` too: a replica's writes and the stream position they reach go into one image, or neither.
        let (snapshot, sequence, number, logBytesBefore, imageBytesBefore) = try replicaApply.withLock { _ in try log.withLock { file in
            guard file.lock != nil else { throw StoreError.closed }
            let switchStart = clock.now
            var buffer = file.spare
            let (snapshot, sequence, position) = try state.withLock { state in
                try state.checkWritable()
                swap(&state.pending, &buffer)
                let sequence = state.nextSequence - 1
                // The new log file starts with the replication position as of the snapshot, so that its offsets are
                // known without older files: that record takes the next sequence number.
                if state.replication != nil { state.nextSequence += 1 }
                // A copy-on-write copy: it shares every entry with the live index, which copies a chunk only
                // when a write touches it, so taking it costs next to nothing.
                return (state.index, sequence, state.replication)
            }
            let logBytesBefore = file.size + buffer.count
            try write(&buffer, through: sequence, fsync: true, to: &file)
            let number = file.number + 1
            let path = DataDirectory.join(directory, DataDirectory.logFileName(number))
            let key: EncryptionKey? = rekey ?? file.keyring.current
            let fd: Int32
            let created: (cipher: FileCipher?, size: Int)
            do {
                try checkpointHook.withLock { $0 }?(.oldLogSynced)
                created = try Self.createLogFile(path, firstSequence: sequence + 1, position: position, key: key,
                                                 directory: directory, fileSystem: fileSystem)
                fd = try fileSystem.open(path, O_WRONLY | O_APPEND | O_NOFOLLOW)
            } catch {
                // Writes carry on in the old file: a new file left behind would disagree with it at open. The position
                // record's sequence number is taken: the record goes to the old file, before the writes made since.
                fileSystem.unlink(path)
                if let position {
                    var record: [UInt8] = []
                    LogFormat.appendPosition(position, sequence: sequence + 1, to: &record)
                    state.withLock { $0.pending.insert(contentsOf: record, at: 0) }
                }
                throw error
            }
            fileSystem.close(file.fd)
            file.fd = fd
            file.number = number
            file.path = path
            file.size = created.size
            file.cipher = created.cipher
            if let rekey {
                // Files sealed with the old key stay readable until they are deleted below.
                file.keyring = Keyring(current: rekey, others: ([file.keyring.current].compactMap { $0 } + file.keyring.others)
                    .filter { $0.id != rekey?.id })
            }
            if position != nil {
                // The position record (sequence + 1) is written and fsynced with the file's header.
                state.withLock { state in
                    state.writtenThrough = max(state.writtenThrough, sequence + 1)
                    state.syncedThrough = max(state.syncedThrough, sequence + 1)
                }
            }
            stall = clock.now - switchStart
            try checkpointHook.withLock { $0 }?(.newLogCreated)
            return (snapshot, sequence, number, logBytesBefore, file.imageBytes)
        } }
        let imagePath = DataDirectory.join(directory, DataDirectory.imageFileName(number))
        let key = log.withLock { $0.keyring.current }
        let image = try ImageFile.write(snapshot, sequence: sequence, to: imagePath, key: key, fileSystem: fileSystem)
        try checkpointHook.withLock { $0 }?(.imageWritten)
        if rekey != nil {
            // Nothing sealed with the old key may stay: covered files are deleted, not kept for replicas.
            try removeFilesCovered(byImage: number, keepLogBytes: 0)
            let backlog = DataDirectory.join(directory, DataDirectory.backlogDirectoryName)
            if let kept = try? DataDirectory.logFiles(in: backlog, fileSystem: fileSystem), !kept.isEmpty {
                for file in kept { fileSystem.unlink(file.path) }
                try fileSystem.fsyncDirectory(backlog)
            }
            log.withLock { $0.keyring.others = [] }
        } else {
            try removeFilesCovered(byImage: number)
        }
        try checkpointHook.withLock { $0 }?(.coveredFilesRemoved)
        log.withLock { file in
            file.imageBytes = image.bytes
            file.checkpoints += 1
        }
        return CheckpointReport(sequence: sequence, keys: image.entries, logBytesBefore: logBytesBefore,
                                imageBytesBefore: imageBytesBefore, imageBytesAfter: image.bytes, imagePath: imagePath,
                                stall: stall, duration: clock.now - start)
    }

    /// Deletes log files and images numbered below `number`: the image numbered `number` covers them.
    func removeFilesCovered(byImage number: Int, keepLogBytes: Int? = nil) throws {
        let stale = try DataDirectory.logFiles(in: directory, fileSystem: fileSystem).filter { $0.number < number }
            + DataDirectory.imageFiles(in: directory, fileSystem: fileSystem).filter { $0.number < number }
        guard !stale.isEmpty else { return }
        try Self.retireCoveredFiles(stale.map(\.path), directory: directory, fileSystem: fileSystem,
                                    keepLogBytes: keepLogBytes ?? options.replicationBacklogBytes)
    }

    /// Deletes files an image covers; with `keepLogBytes`, covered log files move to the replication backlog
    /// directory instead (the stream of a primary is rebuilt from them for a replica that was away), and the
    /// oldest there are deleted while the rest add up to more than that.
    static func retireCoveredFiles(_ paths: [String], directory: String, fileSystem fs: any FileSystem, keepLogBytes: Int = 0) throws {
        let backlog = DataDirectory.join(directory, DataDirectory.backlogDirectoryName)
        var moved = false
        for path in paths {
            if keepLogBytes > 0, path.hasSuffix(DataDirectory.logSuffix) {
                if !moved { try DataDirectory.prepare(backlog, fileSystem: fs) }
                let name = String(path.split(separator: "/").last ?? Substring(path))
                try fs.rename(path, to: DataDirectory.join(backlog, name))
                moved = true
            } else {
                fs.unlink(path)
            }
        }
        try fs.fsyncDirectory(directory)
        guard moved else { return }
        var kept = try DataDirectory.logFiles(in: backlog, fileSystem: fs)
        var sizes = kept.map { (try? fs.status(ofPath: $0.path).size) ?? 0 }
        while kept.count > 1, sizes.reduce(0, +) > keepLogBytes {
            fs.unlink(kept.removeFirst().path)
            sizes.removeFirst()
        }
        try fs.fsyncDirectory(backlog)
    }

    /// Whether the active log has outgrown the image enough to compact. Called with `log` held.
    func isCompactionDue(_ file: borrowing LogFile) -> Bool {
        options.compactionRatio > 0 && file.size > options.compactionMinimumLogBytes
            && Double(file.size) > options.compactionRatio * Double(file.imageBytes)
    }

    /// Starts a checkpoint on the maintenance queue unless one is already scheduled.
    func scheduleCompaction() {
        guard compactionScheduled.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            return
        }
        maintenanceQueue.async { [weak self] in
            guard let self else { return }
            defer { self.compactionScheduled.store(false, ordering: .releasing) }
            do {
                _ = try self.checkpoint()
            } catch StoreError.closed, StoreError.cancelled {
                return
            } catch {
                self.options.warningHandler?("background compaction failed (the store is intact; it will be retried): \(error)")
            }
        }
    }

    // MARK: Backups

    /// Writes a consistent image of the store as it is now to `path` (one self-describing, checksummed file),
    /// while reads and writes go on. The file appears at `path` only once complete and durable.
    ///
    /// The path is resolved first (its directory's links, `.` and `..`), and a backup whose directory is the data
    /// directory or lies inside it is refused, whatever spelling reaches it.
    /// - Parameter replace: replace a file already at `path`; without it, an existing file is an error
    ///   (``StoreError/fileExists(path:)``) and is left as it was.
    public func backup(to path: String, replace: Bool = false) throws -> ImageSummary {
        try observed({ .backup($0, succeeded: $1) }) { try backupUnobserved(to: path, replace: replace) }
    }

    private func backupUnobserved(to path: String, replace: Bool) throws -> ImageSummary {
        let target = try Paths.resolveNewFile(path, fileSystem: fileSystem)
        guard let store = DataDirectory.resolved(directory, fileSystem: fileSystem) else {
            throw StoreError.io(operation: "resolve", path: directory, errno: errno)
        }
        if Paths.isWithin(target.directory, store) { throw StoreError.backupInsideStore(path: path, directory: directory) }
        let key = log.withLock { $0.keyring.current }
        let (snapshot, sequence) = state.withLock { ($0.index, $0.nextSequence - 1) }
        return try cancellable {
            try ImageFile.write(snapshot, sequence: sequence, to: target.path, replace: replace, key: key, fileSystem: fileSystem)
        }
    }

    /// Creates the store in `directory` from a backup made by ``backup(to:)``, after checking all of it.
    /// Refuses a directory that holds a store (or anything else) unless `force` is set; with `force`, the
    /// store files there are replaced and other files are left alone.
    /// - Parameter keyring: the keys the backup may be sealed with; the store is sealed with its current key.
    public static func restore(backup path: String, into directory: String, force: Bool, keyring: Keyring = .plain,
                               fileSystem fs: any FileSystem = POSIXFileSystem()) throws -> ImageSummary {
        try Paths.validate(path)
        var index = OrderedIndex()
        // A plain backup restores into an encrypted store too, and the other way round: the keyring's current key
        // only says how the store is written.
        let reading = Keyring(current: nil, others: [keyring.current].compactMap { $0 } + keyring.others)
        let backup = try ImageFile.read(path, into: &index, followSymlinks: true, keyring: reading, fileSystem: fs)
        try DataDirectory.prepare(directory, fileSystem: fs)
        let lock = try DirectoryLock(directory: directory, fileSystem: fs)
        defer { lock.release() }
        let existing = try DataDirectory.storeFiles(in: directory, fileSystem: fs)
        let others = try DataDirectory.otherFiles(in: directory, fileSystem: fs)
        guard force || (existing.isEmpty && others.isEmpty) else { throw StoreError.notEmpty(directory: directory) }
        try OperationControl.current?.check("the restore")
        for file in existing { fs.unlink(file) }
        // Once a store's files are gone, Ctrl-C would leave nothing: the write is then not interruptible.
        let control = existing.isEmpty ? OperationControl.current : nil
        let image = try OperationControl.$current.withValue(control) {
            try ImageFile.write(index, sequence: backup.sequence, to: DataDirectory.join(directory, DataDirectory.imageFileName(1)),
                                key: keyring.current, fileSystem: fs)
        }
        try createLogFile(DataDirectory.join(directory, DataDirectory.logFileName(1)), firstSequence: backup.sequence + 1,
                          key: keyring.current, directory: directory, fileSystem: fs)
        return image
    }

    // MARK: Check

    /// Verifies every file of the open store (see ``StoreChecker/check(directory:)``). Commits wait while it
    /// runs, so that no write is half on disk while it reads; reads go on.
    public func check() throws -> StoreChecker.Report {
        try flush(through: lastSequence, fsync: false)
        return try maintenance.withLock { _ in
            try log.withLock { file in
                try cancellable { try StoreChecker.check(directory: directory, keyring: file.keyring, fileSystem: fileSystem) }
            }
        }
    }

    // MARK: Rebuild and statistics

    /// Drops the in-memory index and loads the store again from its image and log, verifying every checksum.
    /// Reads and writes wait while it runs.
    public func rebuild() throws -> ReplayReport {
        try maintenance.withLock { _ in
            try log.withLock { file in
                guard file.lock != nil else { throw StoreError.closed }
                return try state.withLock { state in
                    var buffer = file.spare
                    swap(&state.pending, &buffer)
                    let written = state.nextSequence - 1
                    defer { state.writtenThrough = max(state.writtenThrough, written) }
                    // `write(_:through:fsync:to:)` takes `state` itself, so the pending records are written here.
                    do {
                        let written = try buffer.withUnsafeBytes { try file.append($0, fileSystem: fileSystem) }
                        file.size += written
                    } catch {
                        state.failure = "\(error)"
                        throw error
                    }
                    var index = OrderedIndex()
                    let replay = try Self.replay(directory: directory, into: &index, readOnly: readOnlyReason != nil,
                                                 keyring: file.keyring, startNewLogFile: false, fileSystem: fileSystem)
                    guard replay.nextSequence == state.nextSequence else {
                        throw StoreError.corruption(file: replay.activePath, offset: replay.activeSize,
                                                    reason: "log ends at sequence \(replay.nextSequence - 1) but \(state.nextSequence - 1) writes were made")
                    }
                    state.index = index
                    file.size = replay.activeSize
                    return replay.report
                }
            }
        }
    }

    /// Counters describing the store right now.
    public var statistics: Statistics {
        log.withLock { file in
            state.withLock { state in
                Statistics(keys: state.index.count, payloadBytes: state.index.payloadBytes, logFile: file.path,
                           logBytes: file.size + state.pending.count, imageBytes: file.imageBytes,
                           checkpoints: file.checkpoints, lastSequence: state.nextSequence - 1,
                           syncedSequence: state.syncedThrough, syncPolicy: syncPolicy, fsyncs: file.fsyncs,
                           hardwareCRC: CRC32C.isHardwareAccelerated)
            }
        }
    }

    // MARK: Replay

    struct Replay {
        var report: ReplayReport
        var activeNumber: Int
        var activePath: String
        var activeSize: Int
        var nextSequence: UInt64
        /// Where the replication stream stood at the end of the log; nil if the store never replicated.
        var position: ReplicationPosition?
        /// The active file's cipher, for a store that appends to it; nil when plain (or opened read-only).
        var cipher: FileCipher?
    }

    /// Loads the newest image of `directory` into `index` and replays the log files from its number on,
    /// cutting a torn tail off the last one; creates the first log file of a new store; deletes files a
    /// crash left behind that the image covers.
    ///
    /// With `readOnly`, changes nothing on disk: a torn tail is skipped rather than cut, covered files stay, and a
    /// store without a log file replays as empty.
    ///
    /// With `startNewLogFile` (an open for writing), an encrypted store never appends to a log file an earlier open
    /// wrote: writes go to a new file with a fresh salt, so no nonce of the old file's key is ever used again, not
    /// even for records cut with a torn tail (see `Docs/LogFormat.md`). A last file that holds no record is written
    /// again instead, with a fresh salt.
    static func replay(directory: String, into index: inout OrderedIndex, readOnly: Bool = false, keyring: Keyring = .plain,
                       startNewLogFile: Bool = false, fileSystem fs: any FileSystem) throws -> Replay {
        let clock = ContinuousClock()
        let start = clock.now
        if !readOnly { try DataDirectory.removeTemporaryFiles(in: directory, fileSystem: fs) }
        var report = ReplayReport(keys: 0, imageFile: nil, imageBytes: 0, records: 0, logFiles: 0, logBytes: 0,
                                  tornTail: nil, duration: .zero)
        var nextSequence: UInt64 = 1
        var firstLogNumber = 1
        let images = try DataDirectory.imageFiles(in: directory, fileSystem: fs)
        if let image = images.last {
            let summary = try ImageFile.read(image.path, into: &index, keyring: keyring, fileSystem: fs)
            nextSequence = summary.sequence + 1
            firstLogNumber = image.number
            report.imageFile = image.path
            report.imageBytes = summary.bytes
        }
        var files = try DataDirectory.logFiles(in: directory, fileSystem: fs)
        let covered = files.filter { $0.number < firstLogNumber }.map(\.path) + images.dropLast().map(\.path)
        files.removeAll { $0.number < firstLogNumber }
        if files.isEmpty {
            let path = DataDirectory.join(directory, DataDirectory.logFileName(firstLogNumber))
            if readOnly {
                report.keys = index.count
                report.duration = clock.now - start
                return Replay(report: report, activeNumber: firstLogNumber, activePath: path,
                              activeSize: LogFormat.fileHeaderSize, nextSequence: nextSequence, position: nil)
            }
            try createLogFile(path, firstSequence: nextSequence, key: keyring.current, directory: directory, fileSystem: fs)
            files = [(firstLogNumber, path)]
        }
        report.logFiles = files.count
        var activeSize = 0
        // The replication position, carried forward record by record (see ``ReplicationPosition``), and where the
        // records a replica applied after its last recorded position start in the current file.
        var stream: ReplicationPosition?
        var firstUnconfirmed: Int?
        var lastSealed = false
        var lastRecords = 0
        for (position, file) in files.enumerated() {
            let isLast = position == files.count - 1
            firstUnconfirmed = nil
            var scan = try LogReader.scanWithOffsets(path: file.path, tornTailAllowed: isLast, keyring: keyring, fileSystem: fs) { offset, _, operation in
                if case .replicationPosition(let recorded) = operation {
                    stream = recorded
                    firstUnconfirmed = nil
                } else if stream?.role == .primary {
                    stream?.offset += Int64(ReplicationStream.length(of: operation))
                } else if stream?.role == .replica, firstUnconfirmed == nil {
                    firstUnconfirmed = offset
                }
                operation.apply(to: &index)
            }
            lastSealed = scan.sealed
            lastRecords = scan.records
            if scan.validLength == 0 {
                // Only the last file can get here: its header never made it to disk. Write it again.
                var size = keyring.current == nil ? LogFormat.fileHeaderSize : LogFormat.encryptedHeaderSize
                if !readOnly {
                    size = try createLogFile(file.path, firstSequence: nextSequence, key: keyring.current, directory: directory, fileSystem: fs).size
                    lastSealed = keyring.current != nil
                }
                scan.firstSequence = nextSequence
                scan.nextSequence = nextSequence
                scan.validLength = size
            } else if let tail = scan.tornTail, !readOnly {
                let fd = try fs.open(file.path, O_WRONLY | O_NOFOLLOW)
                defer { fs.close(fd) }
                try fs.truncate(fd, to: tail.offset, path: file.path)
                try fs.fsync(fd, path: file.path)
            }
            guard scan.firstSequence == nextSequence else {
                let before = report.imageFile == nil && position == 0
                    ? "no image covers the writes before it" : "the writes before it end at \(nextSequence - 1)"
                throw StoreError.corruption(file: file.path, offset: 0,
                                            reason: "log starts at sequence \(scan.firstSequence) but \(before)")
            }
            report.tornTail = report.tornTail ?? scan.tornTail
            report.records += scan.records
            report.logBytes += scan.validLength
            nextSequence = scan.nextSequence
            activeSize = scan.validLength
        }
        if let cut = firstUnconfirmed, !readOnly {
            // A replica applied these records but crashed before recording the stream offset they reach: its
            // primary will send them again, so they go (applied twice, an INCR would count twice). Cut and replay.
            let last = files[files.count - 1]
            let fd = try fs.open(last.path, O_WRONLY | O_NOFOLLOW)
            defer { fs.close(fd) }
            try fs.truncate(fd, to: cut, path: last.path)
            try fs.fsync(fd, path: last.path)
            index = OrderedIndex()
            var again = try replay(directory: directory, into: &index, readOnly: readOnly, keyring: keyring,
                                   startNewLogFile: startNewLogFile, fileSystem: fs)
            again.report.tornTail = again.report.tornTail ?? TornTail(
                file: last.path, offset: cut, droppedBytes: activeSize - cut,
                reason: "records a replica applied after the last stream offset it recorded (its primary sends them again)")
            return again
        }
        if !covered.isEmpty && !readOnly {
            try retireCoveredFiles(covered, directory: directory, fileSystem: fs)
        }
        report.keys = index.count
        var active = files[files.count - 1]
        var cipher: FileCipher?
        if startNewLogFile && !readOnly && (lastSealed || keyring.current != nil) {
            // A file with no record is written again with a fresh salt; otherwise the next number starts.
            if lastRecords > 0 { active = (active.number + 1, DataDirectory.join(directory, DataDirectory.logFileName(active.number + 1))) }
            let created = try createLogFile(active.path, firstSequence: nextSequence, position: stream, key: keyring.current,
                                            directory: directory, fileSystem: fs)
            if stream != nil { nextSequence += 1 }  // the position record that starts the file
            activeSize = created.size
            cipher = created.cipher
        }
        report.duration = clock.now - start
        return Replay(report: report, activeNumber: active.number, activePath: active.path, activeSize: activeSize,
                      nextSequence: nextSequence, position: stream, cipher: cipher)
    }

    /// Creates (or overwrites) a log file holding just a header, and a replication position record when there is
    /// one (numbered `firstSequence`), durably: file fsync, then directory fsync.
    /// With `key`, the file is encrypted, with a fresh salt: returns its cipher, and the bytes written.
    @discardableResult
    static func createLogFile(_ path: String, firstSequence: UInt64, position: ReplicationPosition? = nil, key: EncryptionKey? = nil,
                              directory: String, fileSystem fs: any FileSystem) throws -> (cipher: FileCipher?, size: Int) {
        let fd = try fs.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW)
        defer { fs.close(fd) }
        let cipher = key.map { FileCipher.fresh(master: $0, magic: LogFormat.magic) }
        var bytes = LogFormat.fileHeader(firstSequence: firstSequence, cipher: cipher)
        if let position {
            var record: [UInt8] = []
            LogFormat.appendPosition(position, sequence: firstSequence, to: &record)
            if let cipher {
                var scratch: [UInt8] = []
                try record.withUnsafeBytes { try cipher.sealRecords($0, to: &bytes, scratch: &scratch) }
            } else {
                bytes.append(contentsOf: record)
            }
        }
        try bytes.withUnsafeBytes { try fs.write(fd, $0, path: path) }
        try fs.fsync(fd, path: path)
        try fs.fsyncDirectory(directory)
        return (cipher, bytes.count)
    }
}
