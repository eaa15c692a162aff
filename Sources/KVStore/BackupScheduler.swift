#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// A directory of backups named by the time each was taken (`kvsh-backup-20261126T153000Z.kvbak`), of which the
/// newest `keep` are kept: where periodic backups go, and `KVSH.BACKUP` without a path.
public struct BackupDirectory: Sendable {
    public static let filePrefix = "kvsh-backup-"
    public static let fileSuffix = ".kvbak"

    public let path: String
    public let keep: Int

    public init(path: String, keep: Int) {
        self.path = path
        self.keep = max(1, keep)
    }

    /// Takes one backup of `store` now and applies the retention rule; returns the new file's path.
    public func takeBackup(of store: KVStore) throws -> (path: String, summary: ImageSummary) {
        let fs = store.options.fileSystem
        try DataDirectory.prepare(path, fileSystem: fs)
        let file = try freshPath(fileSystem: fs)
        let summary = try store.backup(to: file)
        let backups = try existingBackups(fileSystem: fs)
        for old in backups.dropLast(keep) { fs.unlink(DataDirectory.join(path, old)) }
        return (file, summary)
    }

    /// Backup file names in the directory, oldest first (the names sort by time).
    public func existingBackups(fileSystem: any FileSystem = POSIXFileSystem()) throws -> [String] {
        try fileSystem.names(in: path)
            .filter { $0.hasPrefix(Self.filePrefix) && $0.hasSuffix(Self.fileSuffix) }
            .sorted()
    }

    /// A name from the current UTC time; `_01`, `_02`... when several backups fall in the same second
    /// (`_` sorts after `.`, so names still sort by time).
    private func freshPath(fileSystem: any FileSystem) throws -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let length = strftime(&buffer, buffer.count, "%Y%m%dT%H%M%SZ", &parts)
        let stamp = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let existing = try existingBackups(fileSystem: fileSystem)
        let sameSecond = existing.filter { $0.hasPrefix(Self.filePrefix + stamp) }
        var name = Self.filePrefix + stamp + Self.fileSuffix
        var counter = 1
        // After the newest of this second, even if retention deleted older ones, so names keep sorting by time.
        while let newest = sameSecond.last, name <= newest, counter < 100 {
            name = Self.filePrefix + stamp + (counter < 10 ? "_0" : "_") + "\(counter)" + Self.fileSuffix
            counter += 1
        }
        return DataDirectory.join(path, name)
    }
}

/// Periodic backups: every `interval`, a backup of the store into a ``BackupDirectory``. A failed backup is
/// reported and tried again at the next period; it never touches the store's own files.
public final class BackupScheduler: Sendable {
    /// One periodic backup, taken or failed.
    public struct Event: Sendable {
        /// `backup PATH: N keys through sequence S, B bytes`, or why it failed.
        public var message: String
        public var failed: Bool
    }

    /// What the periodic backups did so far (`:stats` shows it).
    public struct Status: Sendable, Equatable {
        public var taken = 0
        public var failed = 0
        /// The newest backup taken.
        public var newest: String?
        /// Why the latest backup failed, if it did (cleared by the next one taken).
        public var lastFailure: String?
    }

    private let store: KVStore
    public let directory: BackupDirectory
    private let report: @Sendable (Event) -> Void
    private let timer = RepeatingTimer(label: "kvsh.backups")
    private let counters = Mutex(Status())

    public var status: Status { counters.withLock { $0 } }

    /// Starts taking backups; the first one after `interval`.
    /// - Parameter report: told about each backup taken and each failure.
    public init(store: KVStore, directory: BackupDirectory, interval: Duration, report: @escaping @Sendable (Event) -> Void) {
        self.store = store
        self.directory = directory
        self.report = report
        let (seconds, attoseconds) = interval.components
        let milliseconds = max(1, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
        timer.start(every: .milliseconds(milliseconds)) { [weak self] in
            guard let self else { return }
            do {
                let (path, summary) = try self.backupNow()
                self.counters.withLock {
                    $0.taken += 1
                    $0.newest = path
                    $0.lastFailure = nil
                }
                self.report(Event(message: "backup \(path): \(summary.entries) keys through sequence \(summary.sequence), \(summary.bytes) bytes",
                                  failed: false))
            } catch {
                let message = "backup into \(self.directory.path) failed (will try again next period): \(error)"
                self.counters.withLock {
                    $0.failed += 1
                    $0.lastFailure = "\(error)"
                }
                self.report(Event(message: message, failed: true))
            }
        }
    }

    public func stop() {
        timer.stop()
    }

    /// Takes one backup now and applies the retention rule; returns the new file's path.
    public func backupNow() throws -> (path: String, summary: ImageSummary) {
        try directory.takeBackup(of: store)
    }
}
