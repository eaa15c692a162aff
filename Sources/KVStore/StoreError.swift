/// Everything that can go wrong opening or writing a store, each with a message a user can act on.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The data directory path exists but is not a directory.
    case notADirectory(path: String)
    /// Another process holds the data directory's lock.
    case locked(directory: String, holderPID: Int32?)
    /// A log or its header is damaged somewhere other than its tail.
    case corruption(file: String, offset: Int, reason: String)
    /// A file was written by a newer format version than this build reads.
    case unsupportedVersion(file: String, version: UInt32)
    /// A system call on a store file failed.
    case io(operation: String, path: String, errno: Int32)
    /// An earlier write or fsync failed; the store accepts no more writes in this process.
    case writesDisabled(cause: String)
    /// `restore` was pointed at a directory that already holds files.
    case notEmpty(directory: String)
    /// The store was closed; it accepts no more writes.
    case closed
    /// A key or value is larger than a log record can hold.
    case tooLarge(what: String, size: Int, limit: Int)
    /// A log given to `importLog` could not be parsed.
    case badImport(file: String, line: Int?, reason: String)
    /// A backup was asked for inside the store's own data directory.
    case backupInsideStore(path: String, directory: String)
    /// A path given by a user, a client or a file cannot be used (a NUL byte, no file name, no such directory).
    case invalidPath(path: String, reason: String)
    /// A backup would replace a file that is already there.
    case fileExists(path: String)
    /// The data directory can be written by others, who could then plant links to other files in it.
    case unsafeDirectory(path: String, reason: String)
    /// The store was opened read-only (no write permission, or a read-only file system).
    case readOnly(directory: String, reason: String)
    /// A named file to read (a script, a log to import) is a FIFO, device, socket or directory. `kind` says which.
    case notARegularFile(path: String, kind: String)
    /// A record of a kvsh log given to `importLog` is valid but cannot be imported (a key above the limit).
    case badImportRecord(file: String, offset: Int, reason: String)
    /// An import checked its whole source, then stopped part way through applying it (`cause`): the store holds
    /// the first `applied` of `total` operations.
    case importIncomplete(file: String, applied: Int, total: Int, cause: String)
    /// Maintenance work (`operation`: an import, a check, a checkpoint, a backup) was stopped because the process
    /// is shutting down; it left the store as it was (an import: see ``importIncomplete(file:applied:total:cause:)``).
    case cancelled(operation: String)
    /// A replication step the store cannot take (`reason` says which and why).
    case replication(reason: String)
    /// Work run under an ``OperationControl`` (`operation`: an import, a rebuild, a check, ...) was stopped by its
    /// caller (Ctrl-C). The store's contents are as before it: `undone` says what was put back, nil if it had
    /// changed nothing.
    case interrupted(operation: String, undone: String?)
    /// A store file's encryption does not match the keys given: encrypted without a key, sealed with another key, or
    /// plain while a key was given. `reason` says which and what to do.
    case encryption(file: String, reason: String)
    /// An encryption key file cannot be used (missing, open to other users, the wrong size).
    case encryptionKeyFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .notADirectory(let path):
            return "data directory '\(path)' exists but is not a directory (or is a symlink to nowhere); pass --data-dir with a directory path"
        case .locked(let directory, let pid):
            let holder = pid.map { "another process (pid \($0))" } ?? "another process"
            return "data directory '\(directory)' is in use by \(holder); only one kvsh can open a store at a time"
        case .corruption(let file, let offset, let reason):
            return "\(file): corrupt at offset \(offset): \(reason); the store was not opened (restore a backup or move the file aside)"
        case .unsupportedVersion(let file, let version):
            return "\(file): log format version \(version) is newer than this kvsh understands (\(LogFormat.encryptedVersion)); upgrade kvsh"
        case .io(let operation, let path, let code):
            return "\(operation) '\(path)' failed: \(systemErrorMessage(code))"
        case .writesDisabled(let cause):
            return "writes are disabled after a failed log write (\(cause)); restart kvsh once the disk is fixed"
        case .notEmpty(let directory):
            return "data directory '\(directory)' is not empty; restore into an empty directory, or pass --force to replace the store there"
        case .closed:
            return "the store is closed"
        case .tooLarge(let what, let size, let limit):
            return "\(what) of \(size) bytes is larger than the limit of \(limit) bytes"
        case .badImport(let file, let line, let reason):
            let place = line.map { "\(file): line \($0)" } ?? file
            return "\(place): \(reason); nothing was imported"
        case .backupInsideStore(let path, let directory):
            return "backup '\(Paths.printable(path))' would be written inside the data directory '\(directory)', where it could replace the store's own files; choose a path outside it"
        case .invalidPath(let path, let reason):
            return "path '\(Paths.printable(path))' \(reason)"
        case .fileExists(let path):
            return "'\(Paths.printable(path))' already exists; choose another name, or pass --force to replace it"
        case .unsafeDirectory(let path, let reason):
            return "data directory '\(path)' \(reason): another user could plant links in it that make kvsh overwrite their targets; "
                + "run chmod o-w '\(path)' (or use a directory of your own)"
        case .readOnly(let directory, let reason):
            return "the store in '\(directory)' is open read-only (\(reason)); writes are refused"
        case .notARegularFile(let path, let kind):
            return "'\(path)' is not a regular file (it is \(kind)); kvsh reads scripts and logs from regular files only"
        case .badImportRecord(let file, let offset, let reason):
            return "\(file): offset \(offset): \(reason); nothing was imported"
        case .importIncomplete(let file, let applied, let total, let cause):
            return "\(file): the import stopped after \(applied) of \(total) operations (\(cause)); the store keeps those \(applied); "
                + "running the same import again completes it (it ends with the same contents as one full import)"
        case .cancelled(let operation):
            return "\(operation) was cancelled because kvsh is shutting down; it changed nothing"
        case .replication(let reason):
            return "replication: \(reason)"
        case .interrupted(let operation, let undone):
            return "\(operation) was interrupted; " + (undone.map { "\($0); the store is as it was before" } ?? "it changed nothing")
        case .encryption(let file, let reason):
            return "\(file) \(reason)"
        case .encryptionKeyFile(let path, let reason):
            return "encryption key file '\(Paths.printable(path))' \(reason)"
        }
    }
}
