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

    /// What opening (or rebuilding) the store found in its log.
    public struct ReplayReport: Sendable {
        public var keys: Int
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
        public var lastSequence: UInt64
        public var syncedSequence: UInt64
        public var syncPolicy: SyncPolicy
        public var fsyncs: Int
        public var hardwareCRC: Bool
    }

    public let directory: String
    public let syncPolicy: SyncPolicy
    /// What the replay at open found (records, bytes, a torn tail that was cut).
    public let openReport: ReplayReport

    /// The index and the not-yet-written tail of the log. Held briefly by every read and write.
    private let state: Mutex<State>
    /// The open log file. Held while writing and fsyncing it, so writers can keep appending to `state`
    /// meanwhile. Lock order: `log`, then `state`.
    private let log: Mutex<LogFile>
    private let backgroundSync: BackgroundSync?

    private struct State: ~Copyable {
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

        /// Throws if writes are refused.
        func checkWritable() throws {
            if closed { throw StoreError.closed }
            if let failure { throw StoreError.writesDisabled(cause: failure) }
        }
    }

    private struct LogFile: ~Copyable {
        var fd: Int32
        var path: String
        var size: Int
        var fsyncs = 0
        /// The buffer `pending` is swapped with, kept to reuse its capacity.
        var spare: [UInt8] = []
        var lock: DirectoryLock?
    }

    /// Pending bytes that make a writer flush on its own, to bound memory when nobody commits.
    private static let flushThreshold = 16 << 20

    /// Opens (creating if needed) the store in `directory`, takes its lock and replays its log.
    ///
    /// - Throws: ``StoreError/locked(directory:holderPID:)`` if another process has it open,
    ///   ``StoreError/corruption(file:offset:reason:)`` if a log is damaged anywhere but its tail, and
    ///   ``StoreError/io(operation:path:errno:)`` when the file system refuses.
    public init(directory: String, syncPolicy: SyncPolicy = .always) throws {
        self.directory = directory
        self.syncPolicy = syncPolicy
        try DataDirectory.prepare(directory)
        let lock = try DirectoryLock(directory: directory)
        do {
            var index = OrderedIndex()
            let replay = try Self.replay(directory: directory, into: &index)
            let fd = try POSIX.open(replay.activePath, O_WRONLY | O_APPEND)
            openReport = replay.report
            state = Mutex(State(index: index, nextSequence: replay.nextSequence,
                                writtenThrough: replay.nextSequence - 1, syncedThrough: replay.nextSequence - 1))
            log = Mutex(LogFile(fd: fd, path: replay.activePath, size: replay.activeSize, lock: lock))
        } catch {
            lock.release()
            throw error
        }
        backgroundSync = syncPolicy == .everysec ? BackgroundSync() : nil
        // A failed fsync here marks the store failed; the next write or commit reports it.
        backgroundSync?.start { [weak self] in
            guard let self else { return }
            try? self.flush(through: self.lastSequence, fsync: true)
        }
    }

    deinit {
        close()
    }

    // MARK: Reads

    /// The value stored under `key`, or nil.
    public func get(_ key: [UInt8]) -> [UInt8]? {
        state.withLock { $0.index.value(for: key) }
    }

    /// How many of `keys` exist, counting a key named twice twice (as Redis's EXISTS does).
    public func countExisting(_ keys: [[UInt8]]) -> Int {
        state.withLock { state in keys.reduce(0) { $0 + (state.index.contains($1) ? 1 : 0) } }
    }

    /// The number of keys.
    public var count: Int { state.withLock { $0.index.count } }

    /// Up to `limit` key-value pairs with `lower` ≤ key < `upper` in bytewise order; nil bounds are open.
    public func range(from lower: [UInt8]?, to upper: [UInt8]?, limit: Int = .max) -> [(key: [UInt8], value: [UInt8])] {
        state.withLock { $0.index.range(from: lower, to: upper, limit: limit) }
    }

    // MARK: Writes

    /// Sets `key` to `value`. The write is visible at once and durable after ``commit()``.
    /// - Returns: the write's sequence number in the log.
    @discardableResult
    public func set(_ key: [UInt8], _ value: [UInt8]) throws -> UInt64 {
        guard key.count <= LogFormat.maxKeySize else { throw StoreError.tooLarge(what: "key", size: key.count, limit: LogFormat.maxKeySize) }
        guard value.count <= LogFormat.maxValueSize else { throw StoreError.tooLarge(what: "value", size: value.count, limit: LogFormat.maxValueSize) }
        let (sequence, mustFlush) = try state.withLock { state in
            try state.checkWritable()
            let sequence = state.nextSequence
            state.nextSequence += 1
            LogFormat.appendSet(key: key, value: value, sequence: sequence, to: &state.pending)
            state.index.set(key, value)
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
            for key in keys where state.index.contains(key) && !present.contains(key) { present.append(key) }
            guard !present.isEmpty else { return (0, 0, false) }
            let sequence = state.nextSequence
            state.nextSequence += 1
            LogFormat.appendDelete(keys: present, sequence: sequence, to: &state.pending)
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
    public func close() {
        backgroundSync?.stop()
        // Refuse new writes first, so none can slip in between the last flush and closing the file.
        state.withLock { $0.closed = true }
        try? flush(through: lastSequence, fsync: true)
        log.withLock { file in
            guard let lock = file.lock else { return }
            Glibc.close(file.fd)
            lock.release()
            file.lock = nil
        }
    }

    private var lastSequence: UInt64 { state.withLock { $0.nextSequence - 1 } }

    /// Group commit: whoever holds `log` writes everyone's pending records; those who waited for the lock
    /// find their records already written (and fsynced) and return at once.
    private func flush(through sequence: UInt64, fsync: Bool) throws {
        try log.withLock { file in
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
            do {
                try buffer.withUnsafeBytes { try POSIX.writeAll(file.fd, $0, path: file.path) }
                file.size += buffer.count
                if fsync {
                    try POSIX.fsync(file.fd, path: file.path)
                    file.fsyncs += 1
                }
            } catch {
                state.withLock { $0.failure = "\(error)" }
                throw error
            }
            state.withLock { state in
                state.writtenThrough = max(state.writtenThrough, target)
                if fsync { state.syncedThrough = max(state.syncedThrough, target) }
            }
            buffer.removeAll(keepingCapacity: buffer.capacity <= 2 * Self.flushThreshold)
            file.spare = buffer
        }
    }

    // MARK: Maintenance

    /// Drops the in-memory index and replays the store's own log from disk, verifying every checksum again.
    /// Reads and writes wait while it runs.
    public func rebuild() throws -> ReplayReport {
        try flush(through: lastSequence, fsync: false)
        return try log.withLock { file in
            try state.withLock { state in
                var index = OrderedIndex()
                let replay = try Self.replay(directory: directory, into: &index)
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

    /// Counters describing the store right now.
    public var statistics: Statistics {
        log.withLock { file in
            state.withLock { state in
                Statistics(keys: state.index.count, payloadBytes: state.index.payloadBytes, logFile: file.path,
                           logBytes: file.size + state.pending.count, lastSequence: state.nextSequence - 1,
                           syncedSequence: state.syncedThrough, syncPolicy: syncPolicy, fsyncs: file.fsyncs,
                           hardwareCRC: CRC32C.isHardwareAccelerated)
            }
        }
    }

    // MARK: Replay

    private struct Replay {
        var report: ReplayReport
        var activePath: String
        var activeSize: Int
        var nextSequence: UInt64
    }

    /// Replays every log file of `directory` into `index`, cutting a torn tail off the last one (and creating
    /// the first log file of a new store).
    private static func replay(directory: String, into index: inout OrderedIndex) throws -> Replay {
        let clock = ContinuousClock()
        let start = clock.now
        var files = try DataDirectory.logFiles(in: directory)
        if files.isEmpty {
            let path = DataDirectory.join(directory, DataDirectory.logFileName(1))
            try createLogFile(path, firstSequence: 1, directory: directory)
            files = [(1, path)]
        }
        var report = ReplayReport(keys: 0, records: 0, logFiles: files.count, logBytes: 0, tornTail: nil, duration: .zero)
        var nextSequence: UInt64?
        var activeSize = 0
        for (position, file) in files.enumerated() {
            let isLast = position == files.count - 1
            var scan = try LogReader.scan(path: file.path, tornTailAllowed: isLast) { _, operation in
                switch operation {
                case .set(let key, let value): index.set(key, value)
                case .delete(let keys): for key in keys { index.remove(key) }
                }
            }
            if scan.validLength == 0 {
                // Only the last file can get here: its header never made it to disk. Write it again.
                try createLogFile(file.path, firstSequence: nextSequence ?? 1, directory: directory)
                scan.firstSequence = nextSequence ?? 1
                scan.nextSequence = scan.firstSequence
                scan.validLength = LogFormat.fileHeaderSize
            } else if let tail = scan.tornTail {
                let fd = try POSIX.open(file.path, O_WRONLY)
                defer { Glibc.close(fd) }
                try POSIX.truncate(fd, to: tail.offset, path: file.path)
                try POSIX.fsync(fd, path: file.path)
            }
            if let expected = nextSequence, scan.firstSequence != expected {
                throw StoreError.corruption(file: file.path, offset: 0,
                                            reason: "log starts at sequence \(scan.firstSequence) but the previous file ended before \(expected)")
            }
            report.tornTail = report.tornTail ?? scan.tornTail
            report.records += scan.records
            report.logBytes += scan.validLength
            nextSequence = scan.nextSequence
            activeSize = scan.validLength
        }
        report.keys = index.count
        report.duration = clock.now - start
        return Replay(report: report, activePath: files[files.count - 1].path, activeSize: activeSize,
                      nextSequence: nextSequence ?? 1)
    }

    /// Creates (or overwrites) a log file holding just a header, durably: file fsync, then directory fsync.
    private static func createLogFile(_ path: String, firstSequence: UInt64, directory: String) throws {
        let fd = try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC)
        defer { Glibc.close(fd) }
        try LogFormat.fileHeader(firstSequence: firstSequence).withUnsafeBytes { try POSIX.writeAll(fd, $0, path: path) }
        try POSIX.fsync(fd, path: path)
        try POSIX.fsyncDirectory(directory)
    }
}

/// Calls a function about once a second on a private queue until stopped.
/// `@unchecked`: dispatch sources are thread-safe, but Dispatch does not mark them Sendable.
private final class BackgroundSync: @unchecked Sendable {
    private let timer: any DispatchSourceTimer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "kvsh.background-fsync"))

    func start(_ tick: @escaping @Sendable () -> Void) {
        timer.schedule(deadline: .now() + .seconds(1), repeating: .seconds(1), leeway: .milliseconds(50))
        timer.setEventHandler(handler: tick)
        timer.resume()
    }

    func stop() {
        timer.cancel()
    }
}
