#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// An embedded, durable key-value store: an ordered in-memory index in front of a write-ahead log.
///
/// Every write is appended to the log (in memory first) and applied to the index under one lock, so the
/// log's order is the order in which writes took effect. Writes become durable through ``commit()``:
/// callers that commit together share one `write(2)` and one `fsync` (group commit). Reads never wait for
/// an fsync. All methods may be called from any thread.
///
/// Keys and values are arbitrary bytes.
public final class KVStore: Sendable {
    /// When written records reach stable storage.
    public enum SyncPolicy: String, Sendable, CaseIterable {
        /// ``commit()`` returns only once the writes are on stable storage (fsync).
        case always
        /// ``commit()`` hands writes to the kernel; a background thread fsyncs at least once a second.
        case everysec
        /// ``commit()`` hands writes to the kernel; the OS decides when they reach the disk.
        case none
    }

    /// How a store behaves; the defaults suit most uses.
    public struct Options: Sendable {
        public var syncPolicy: SyncPolicy
        /// Compact in the background once the active log is larger than `compactionMinimumLogBytes` and
        /// `compactionRatio` times the last image. A ratio of 0 turns automatic compaction off.
        public var compactionMinimumLogBytes: Int
        public var compactionRatio: Double
        /// Told about problems nobody is waiting for, such as a failed background compaction.
        public var warningHandler: (@Sendable (String) -> Void)?
        /// Where every file and directory operation goes: the kernel's, or a test's faulty disk.
        public var fileSystem: any FileSystem
        /// Log files a checkpoint covers are kept (in `replication-backlog/`) while they add up to at most this many
        /// bytes, so that a replica away for longer than the in-memory backlog covers can still continue from the log.
        /// 0 (the default) deletes them.
        public var replicationBacklogBytes = 0
        /// Told about log writes, fsyncs, checkpoints and backups (for metrics); see ``StoreEvent``.
        public var eventObserver: (@Sendable (StoreEvent) -> Void)?
        /// Encryption at rest: with a current key, every file the store writes is sealed with it (AES-256-GCM) and every
        /// file it reads must be; without one, the store is plain (and refuses encrypted files). See `Docs/LogFormat.md`.
        public var keyring = Keyring()

        public init(syncPolicy: SyncPolicy = .always, compactionMinimumLogBytes: Int = 64 << 20,
                    compactionRatio: Double = 2, warningHandler: (@Sendable (String) -> Void)? = nil,
                    fileSystem: any FileSystem = POSIXFileSystem()) {
            self.syncPolicy = syncPolicy
            self.compactionMinimumLogBytes = compactionMinimumLogBytes
            self.compactionRatio = compactionRatio
            self.warningHandler = warningHandler
            self.fileSystem = fileSystem
        }
    }

    public let directory: String
    public let options: Options
    public var syncPolicy: SyncPolicy { options.syncPolicy }
    /// ``Options/fileSystem``, held apart so the commit path reaches it without copying the options.
    let fileSystem: any FileSystem
    /// What the replay at open found (records, bytes, a torn tail that was cut).
    public let openReport: ReplayReport
    /// Why the store was opened read-only (a read-only file system, or a directory this user may not write);
    /// nil when it can be written. A read-only store answers reads and refuses every write.
    public let readOnlyReason: String?

    /// The index and the not-yet-written tail of the log. Held briefly by every read and write.
    let state: Mutex<State>
    /// The open log file. Held while writing and fsyncing it, so writers can keep appending to `state`
    /// meanwhile. Lock order: `maintenance`, then `log`, then `state`.
    let log: Mutex<LogFile>
    /// Held for a whole checkpoint or rebuild, so that only one runs at a time. A lock rather than a serial
    /// queue's `sync`, because the store's deinit (which closes it) may run on the maintenance queue.
    let maintenance = Mutex<Void>(())
    /// Held by a replica while it applies what it received and records the stream offset reached, and by a checkpoint
    /// while it takes its snapshot, so that an image never holds a replica's writes without their offset. Lock order:
    /// `maintenance`, then `replicaApply`, then `log`.
    let replicaApply = Mutex<Void>(())
    /// Runs automatic compactions, one at a time.
    let maintenanceQueue = DispatchQueue(label: "kvsh.compaction")
    let compactionScheduled = Atomic<Bool>(false)
    /// Called after each step of a checkpoint; a test throws from it to stop a checkpoint there.
    let checkpointHook = Mutex<(@Sendable (CheckpointStep) throws -> Void)?>(nil)
    /// Set by ``cancelMaintenance()``: long maintenance work stops at its next record or block.
    let maintenanceCancellation = MaintenanceCancellation()
    private let backgroundSync: RepeatingTimer?

    struct State: ~Copyable {
        var index = OrderedIndex()
        /// Encoded records not yet handed to `write(2)`.
        var pending: [UInt8] = []
        var nextSequence: UInt64
        var writtenThrough: UInt64
        var syncedThrough: UInt64
        /// Set by the first failed write or fsync; from then on writes are refused.
        var failure: String?
        /// Set by `close()`; from then on writes are refused.
        var closed = false
        /// Set for a store opened read-only: every write is refused with it.
        var readOnly: StoreError?
        /// Where the replication stream stands (nil until the store first replicates); see ``ReplicationPosition``.
        var replication: ReplicationPosition?
        /// Whether each write advances `replication`'s offset: a primary's does, a replica's comes from its primary.
        var streamAdvances = false

        /// Accounts for `bytes` of replication stream written by a write of this store.
        @inline(__always)
        mutating func advanceStream(_ bytes: @autoclosure () -> Int) {
            if streamAdvances { replication?.offset += Int64(bytes()) }
        }

        /// Throws if writes are refused.
        func checkWritable() throws {
            if closed { throw StoreError.closed }
            if let readOnly { throw readOnly }
            if let failure { throw StoreError.writesDisabled(cause: failure) }
        }
    }

    struct LogFile: ~Copyable {
        /// The active log file, open for appending; -1 in a read-only store.
        var fd: Int32
        /// The active log file's number and path, and its size including records not yet written.
        var number: Int
        var path: String
        var size: Int
        /// The newest image's size; 0 without one.
        var imageBytes: Int
        var fsyncs = 0
        var checkpoints = 0
        /// The buffer `pending` is swapped with, kept to reuse its capacity.
        var spare: [UInt8] = []
        var lock: DirectoryLock?
        /// Told about every run of records written to the log, in log order (the replication feed).
        var writeObserver: (@Sendable (UnsafeRawBufferPointer) -> Void)?
        /// The keys files are read with; its current key seals new files (a rekey changes it).
        var keyring: Keyring
        /// The active log file's cipher: nil in a plain store. Records are sealed as they are written.
        var cipher: FileCipher?
        /// Buffers reused by sealing.
        var sealed: [UInt8] = []
        var scratch: [UInt8] = []

        /// Writes `buffer`'s records to the active file, sealed first in an encrypted store; returns the bytes written.
        mutating func append(_ buffer: UnsafeRawBufferPointer, fileSystem: any FileSystem) throws -> Int {
            guard let cipher else {
                try fileSystem.write(fd, buffer, path: path)
                return buffer.count
            }
            var output = sealed
            var work = scratch
            defer { (sealed, scratch) = (output, work) }
            output.removeAll(keepingCapacity: true)
            try cipher.sealRecords(buffer, to: &output, scratch: &work)
            try output.withUnsafeBytes { try fileSystem.write(fd, $0, path: path) }
            return output.count
        }
    }

    /// Pending bytes that make a writer flush on its own, to bound memory when nobody commits.
    static let flushThreshold = 16 << 20

    /// Opens (creating if needed) the store in `directory`, takes its lock and replays its log.
    ///
    /// - Throws: ``StoreError/locked(directory:holderPID:)`` if another process has it open,
    ///   ``StoreError/corruption(file:offset:reason:)`` if a log is damaged anywhere but its tail, and
    ///   ``StoreError/io(operation:path:errno:)`` when the file system refuses.
    public convenience init(directory: String, syncPolicy: SyncPolicy = .always) throws {
        try self.init(directory: directory, options: Options(syncPolicy: syncPolicy))
    }

    /// Opens (creating if needed) the store in `directory`, takes its lock, loads its newest image and replays
    /// the log after it. A directory that cannot be written (read-only file system, no permission) is opened
    /// read-only (see ``readOnlyReason``); one that other users can write is refused.
    public init(directory: String, options: Options) throws {
        self.directory = directory
        self.options = options
        let fs = options.fileSystem
        fileSystem = fs
        let syncPolicy = options.syncPolicy
        try DataDirectory.prepare(directory, fileSystem: fs)
        let lock = try DirectoryLock(directory: directory, allowReadOnly: true, fileSystem: fs)
        readOnlyReason = lock.readOnlyReason
        do {
            var index = OrderedIndex()
            let replay = try Self.replay(directory: directory, into: &index, readOnly: lock.isReadOnly, keyring: options.keyring,
                                         startNewLogFile: true, fileSystem: fs)
            let fd = lock.isReadOnly ? -1 : try fs.open(replay.activePath, O_WRONLY | O_APPEND | O_NOFOLLOW)
            openReport = replay.report
            var initial = State(index: index, nextSequence: replay.nextSequence,
                                writtenThrough: replay.nextSequence - 1, syncedThrough: replay.nextSequence - 1)
            initial.replication = replay.position
            initial.streamAdvances = replay.position?.role == .primary
            initial.readOnly = lock.readOnlyReason.map { StoreError.readOnly(directory: directory, reason: $0) }
            state = Mutex(initial)
            log = Mutex(LogFile(fd: fd, number: replay.activeNumber, path: replay.activePath, size: replay.activeSize,
                                imageBytes: replay.report.imageBytes, lock: lock, keyring: options.keyring, cipher: replay.cipher))
        } catch {
            lock.release()
            throw error
        }
        backgroundSync = syncPolicy == .everysec && !lock.isReadOnly ? RepeatingTimer(label: "kvsh.background-fsync") : nil
        // A failed fsync here marks the store failed; the next write or commit reports it.
        backgroundSync?.start(every: .seconds(1)) { [weak self] in
            try? self?.syncInBackground()
        }
    }

    deinit {
        try? close()
    }

    // MARK: Reads

    /// The value stored under `key`, or nil.
    public func get(_ key: [UInt8]) -> [UInt8]? {
        state.withLock { $0.index.value(for: key) }
    }

    /// Calls `body` with the bytes of the value stored under `key` (nil if there is none), in place: for a reply
    /// encoded straight from the index without copying the value into an array first. `body` runs outside the
    /// store's lock; the entry it reads is immutable (a write replaces an entry, never changes one).
    public func withValue<T>(for key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) throws -> T) rethrows -> T {
        let key = Unshared(key)
        let found = state.withLock { Unshared($0.index.entry(for: key.value)) }
        guard let entry = found.value else { return try body(nil) }
        return try entry.withValueBytes(body)
    }

    /// How many of `keys` exist, counting a key named twice twice (as Redis's EXISTS does).
    public func countExisting(_ keys: [[UInt8]]) -> Int {
        state.withLock { state in keys.reduce(0) { $0 + (state.index.contains($1) ? 1 : 0) } }
    }

    /// The number of keys.
    public var count: Int { state.withLock { $0.index.count } }

    /// Up to `limit` key-value pairs with `lower` ≤ key < `upper` in bytewise order; nil bounds are open.
    /// Costs O(log n + k) for k pairs returned.
    public func range(from lower: [UInt8]?, to upper: [UInt8]?, limit: Int = .max) -> [(key: [UInt8], value: [UInt8])] {
        state.withLock { $0.index.range(from: lower, to: upper, limit: limit) }
    }

    /// Up to `limit` keys with `lower` ≤ key < `upper` that `filter` accepts, in bytewise order, and the key
    /// to continue from (nil when the range is exhausted). Keys `filter` rejects still count towards `examine`,
    /// the most keys looked at in one call, so a selective filter cannot hold the lock for a whole scan.
    /// `filter` sees each key's bytes in place; only accepted keys are copied.
    public func keys(from lower: [UInt8]?, to upper: [UInt8]?, limit: Int = .max, examine: Int = .max,
                     where filter: @Sendable (UnsafeRawBufferPointer) -> Bool = { _ in true }) -> (keys: [[UInt8]], next: [UInt8]?) {
        state.withLock { state in
            var keys: [[UInt8]] = []
            var examined = 0
            var next: [UInt8]?
            state.index.forEach(from: lower, to: upper) { entry in
                if keys.count == limit || examined == examine {
                    next = entry.key
                    return false
                }
                examined += 1
                if entry.withKeyBytes(filter) { keys.append(entry.key) }
                return true
            }
            return (keys, next)
        }
    }

    /// The number of keys with `lower` ≤ key < `upper`; nil bounds are open. Costs O(log n) plus one step per
    /// 512 keys counted.
    public func count(from lower: [UInt8]?, to upper: [UInt8]?) -> Int {
        state.withLock { $0.index.count(from: lower, to: upper) }
    }

    // MARK: Writes

    /// Sets `key` to `value`. The write is visible at once and durable after ``commit()``.
    /// - Returns: the write's sequence number in the log.
    @discardableResult
    public func set(_ key: [UInt8], _ value: [UInt8]) throws -> UInt64 {
        try key.withUnsafeBytes { key in try value.withUnsafeBytes { value in try set(key, value) } }
    }

    /// Sets `key` to `value`, copying both from borrowed bytes (a server's read buffer) into the log and the
    /// index: nothing is allocated for them beyond the index entry.
    @discardableResult
    public func set(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> UInt64 {
        guard key.count <= LogFormat.maxKeySize else { throw StoreError.tooLarge(what: "key", size: key.count, limit: LogFormat.maxKeySize) }
        guard value.count <= LogFormat.maxValueSize else { throw StoreError.tooLarge(what: "value", size: value.count, limit: LogFormat.maxValueSize) }
        let (key, value) = (Unshared(key), Unshared(value))
        let (sequence, mustFlush) = try state.withLock { state in
            try state.checkWritable()
            let sequence = state.nextSequence
            state.nextSequence += 1
            LogFormat.appendSet(key: key.value, value: value.value, sequence: sequence, to: &state.pending)
            state.advanceStream(ReplicationStream.setLength(keyCount: key.value.count, valueCount: value.value.count))
            state.index.set(key.value, value.value)
            return (sequence, state.pending.count >= Self.flushThreshold)
        }
        if mustFlush { try flush(through: sequence, fsync: false) }
        return sequence
    }

    /// Deletes those of `keys` that exist, all in one log record (so atomically).
    /// - Returns: how many keys were removed (a key named twice counts once).
    @discardableResult
    public func delete(_ keys: [[UInt8]]) throws -> Int {
        let (removed, sequence, mustFlush) = try state.withLock { state -> (Int, UInt64, Bool) in
            try state.checkWritable()
            var present: [[UInt8]] = []
            var seen = Set<[UInt8]>()
            for key in keys where state.index.contains(key) && seen.insert(key).inserted { present.append(key) }
            guard !present.isEmpty else { return (0, 0, false) }
            // One record, so that the delete is applied whole or not at all: it must fit a record.
            let length = LogFormat.deletePayloadLength(present)
            guard length <= LogFormat.maxPayloadSize else {
                throw StoreError.tooLarge(what: "multi-key delete record", size: length, limit: LogFormat.maxPayloadSize)
            }
            let sequence = state.nextSequence
            state.nextSequence += 1
            LogFormat.appendDelete(keys: present, sequence: sequence, to: &state.pending)
            state.advanceStream(ReplicationStream.length(of: .delete(keys: present)))
            for key in present { state.index.remove(key) }
            return (present.count, sequence, state.pending.count >= Self.flushThreshold)
        }
        if mustFlush { try flush(through: sequence, fsync: false) }
        return removed
    }

    /// Makes every write made so far as durable as the sync policy promises: handed to the kernel, and with
    /// ``SyncPolicy/always`` on stable storage. Threads that commit at the same time share one fsync.
    ///
    /// - Throws: ``StoreError`` if the write or fsync fails; the store then refuses further writes, because
    ///   after a failed fsync the kernel may already have dropped the data (retrying could report success falsely).
    public func commit() throws {
        try flush(through: lastSequence, fsync: syncPolicy == .always)
    }

    /// Writes and fsyncs everything, stops the background syncer and releases the directory lock.
    /// Calling it again does nothing.
    ///
    /// - Throws: the ``StoreError`` of the final write or fsync, or ``StoreError/writesDisabled(cause:)`` if an
    ///   earlier one failed: writes made since the last successful commit may then not be on disk, and whoever
    ///   closes the store must say so (the shell and the server exit with status 1). The lock is released anyway.
    public func close() throws {
        backgroundSync?.stop()
        // Refuse new writes first, so none can slip in between the last flush and closing the file; then let a
        // running checkpoint finish (a new one will not start on a closed store).
        state.withLock { $0.closed = true }
        maintenance.withLock { _ in }
        var failure: Error?
        do {
            try flush(through: lastSequence, fsync: true)  // throws writesDisabled after an earlier failure
        } catch StoreError.closed {
            return  // closed before: reported then
        } catch {
            failure = error
        }
        log.withLock { file in
            guard let lock = file.lock else { return }
            if file.fd >= 0 { fileSystem.close(file.fd) }
            lock.release()
            file.lock = nil
        }
        if let failure { throw failure }
    }

    var lastSequence: UInt64 { state.withLock { $0.nextSequence - 1 } }

    /// Stops the maintenance work running on this store (an import, a check, a checkpoint, a backup) at its next
    /// record or block, and refuses any started later, with ``StoreError/cancelled(operation:)``: for a process
    /// that shuts down and must not wait for work of unbounded length. Each leaves the store as it was (an import
    /// stopped while it applies its source reports how far it got). Reads and writes are not affected; it cannot be
    /// undone.
    public func cancelMaintenance() {
        maintenanceCancellation.cancel()
    }

    /// Runs `body` as maintenance work that ``cancelMaintenance()`` stops.
    func cancellable<T>(_ body: () throws -> T) throws -> T {
        try maintenanceCancellation.check()
        return try MaintenanceCancellation.$current.withValue(maintenanceCancellation) { try body() }
    }

    /// Whether some write made so far is not on stable storage yet but a commit can still put it there. False once a
    /// failed write or fsync has disabled writes: nothing will sync those writes any more, so nothing should wait.
    public var hasUnsyncedWrites: Bool {
        state.withLock { $0.failure == nil && $0.syncedThrough < $0.nextSequence - 1 }
    }

    /// Group commit: whoever holds `log` writes everyone's pending records; those who waited for the lock
    /// find their records already written (and fsynced) and return at once.
    func flush(through sequence: UInt64, fsync: Bool) throws {
        try log.withLock { file in try flush(through: sequence, fsync: fsync, to: &file) }
    }

    /// ``flush(through:fsync:)`` with `log` already held.
    private func flush(through sequence: UInt64, fsync: Bool, to file: inout LogFile) throws {
        guard file.lock != nil else { throw StoreError.closed }
        var buffer = file.spare
        let target = try state.withLock { state -> UInt64? in
            if let failure = state.failure { throw StoreError.writesDisabled(cause: failure) }
            let done = fsync ? state.syncedThrough : state.writtenThrough
            guard done < sequence else { return nil }
            swap(&state.pending, &buffer)
            return state.nextSequence - 1
        }
        guard let target else { return }
        try write(&buffer, through: target, fsync: fsync, to: &file)
        if isCompactionDue(file) { scheduleCompaction() }
    }

    /// The `everysec` tick: writes what is pending, then fsyncs the log *without* holding `log`, so that commits
    /// (the server's event loops) go on while the disk works, as Redis fsyncs on a background thread. Holding
    /// the lock through an fsync of a second's writes stalled every client for its duration. The fsync goes to
    /// a duplicate of the descriptor, which stays valid if a checkpoint or close switches files meanwhile.
    func syncInBackground() throws {
        let target = lastSequence
        let duplicate = try log.withLock { file -> (fd: Int32, path: String)? in
            try flush(through: target, fsync: false, to: &file)
            guard state.withLock({ $0.syncedThrough < target }) else { return nil }
            return (try fileSystem.duplicate(file.fd, path: file.path), file.path)
        }
        guard let duplicate else { return }
        defer { fileSystem.close(duplicate.fd) }
        do {
            try observed({ .fsync($0, succeeded: $1) }) { try fileSystem.fdatasync(duplicate.fd, path: duplicate.path) }
        } catch {
            state.withLock { $0.failure = "\(error)" }  // as in `write(_:through:fsync:to:)`: writes stop for good
            throw error
        }
        state.withLock { $0.syncedThrough = max($0.syncedThrough, target) }
        log.withLock { $0.fsyncs += 1 }
    }

    /// Writes `buffer` (records through `sequence`) to the active log file, fsyncs it if asked, and records
    /// how far the log is durable. Called with `log` held. A failure disables writes for good.
    func write(_ buffer: inout [UInt8], through sequence: UInt64, fsync: Bool, to file: inout LogFile) throws {
        do {
            let written = try buffer.withUnsafeBytes { try file.append($0, fileSystem: fileSystem) }
            file.size += written
            // Before the fsync: replicas get the records while this disk works, as Redis feeds them before its own.
            if let observer = file.writeObserver { buffer.withUnsafeBytes { observer($0) } }
            if fsync {
                try observed({ .fsync($0, succeeded: $1) }) { try fileSystem.fdatasync(file.fd, path: file.path) }
                file.fsyncs += 1
            }
        } catch {
            state.withLock { $0.failure = "\(error)" }
            throw error
        }
        let records = state.withLock { state in
            let records = sequence > state.writtenThrough ? Int(sequence - state.writtenThrough) : 0
            state.writtenThrough = max(state.writtenThrough, sequence)
            if fsync { state.syncedThrough = max(state.syncedThrough, sequence) }
            return records
        }
        if records > 0, let observer = options.eventObserver { observer(.logWrite(records: records, bytes: buffer.count)) }
        buffer.removeAll(keepingCapacity: buffer.capacity <= 2 * Self.flushThreshold)
        file.spare = buffer
    }
}

/// Calls a function at a fixed interval on a private queue until stopped.
/// `@unchecked`: dispatch sources are thread-safe, but Dispatch does not mark them Sendable.
final class RepeatingTimer: @unchecked Sendable {
    private let timer: any DispatchSourceTimer

    init(label: String) {
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: label))
    }

    func start(every interval: DispatchTimeInterval, _ tick: @escaping @Sendable () -> Void) {
        timer.schedule(deadline: .now() + interval, repeating: interval, leeway: .milliseconds(50))
        timer.setEventHandler(handler: tick)
        timer.resume()
    }

    func stop() {
        timer.cancel()
    }
}

/// Carries a value into or out of a lock's closure where the compiler cannot tell that it stays unshared: borrowed
/// bytes read only while the call lasts, on the caller's thread, or an ``IndexEntry``, which is immutable.
struct Unshared<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
