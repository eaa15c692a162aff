#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The files of a data directory: the lock, the numbered log files (`000001.log`, ...) and images
/// (`000002.image`: everything written before log file 2).
enum DataDirectory {
    static let lockFileName = "LOCK"
    static let logSuffix = ".log"
    static let imageSuffix = ".image"
    /// Where log files an image covers are kept for replicas that come back (``KVStore/Options/replicationBacklogBytes``).
    static let backlogDirectoryName = "replication-backlog"

    /// Creates `path` (and missing parents) if needed; fails if it exists as something other than a directory.
    /// The directory itself is created readable by its owner only (`0700`): it holds every value.
    static func prepare(_ path: String, fileSystem: any FileSystem) throws {
        try Paths.validate(path)
        try prepare(path, mode: 0o700, fileSystem: fileSystem)
    }

    private static func prepare(_ path: String, mode: mode_t, fileSystem fs: any FileSystem) throws {
        do {
            guard try fs.status(ofPath: path).isDirectory else { throw StoreError.notADirectory(path: path) }
            return
        } catch StoreError.io(_, _, let code) where code == ENOENT {
        }
        let parent = parentDirectory(of: path)
        if parent != path { try prepare(parent, mode: 0o755, fileSystem: fs) }
        do {
            try fs.makeDirectory(path, mode: mode)
        } catch StoreError.io(_, _, let code) where code == EEXIST {
            // Something appeared there: another process made the directory (fine), or it is a dangling symlink.
            guard (try? fs.status(ofPath: path))?.isDirectory == true else { throw StoreError.notADirectory(path: path) }
            return
        }
        try fs.fsyncDirectory(parent)
    }

    /// Refuses a data directory that another user can write, as ssh refuses such key files: whoever can create
    /// files in it can plant a link named like a store file (`LOCK`, the next log) and aim kvsh's writes at a
    /// file of theirs choosing. Store files are also opened with `O_NOFOLLOW`, but a directory open to others
    /// leaves other ways in (replacing a file between two opens). World-writable, or owned by someone other than
    /// this user and root, is refused.
    static func checkNotWritableByOthers(_ path: String, fileSystem: any FileSystem) throws {
        let info = try fileSystem.status(ofPath: path)
        if info.mode & S_IWOTH != 0 {
            throw StoreError.unsafeDirectory(path: path, reason: "can be written by every user (mode \(String(info.mode & 0o7777, radix: 8)))")
        }
        let user = geteuid()
        if info.owner != user && info.owner != 0 {
            throw StoreError.unsafeDirectory(path: path, reason: "belongs to another user (uid \(info.owner), while kvsh runs as uid \(user))")
        }
    }

    static func parentDirectory(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    /// `path` with symbolic links, `.` and `..` resolved (`realpath(3)`), or nil if it does not exist.
    static func resolved(_ path: String, fileSystem: any FileSystem) -> String? {
        fileSystem.resolvedPath(path)
    }

    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    /// The log file numbered `number`: zero-padded so that names sort like numbers.
    static func logFileName(_ number: Int) -> String {
        numberedName(number, suffix: logSuffix)
    }

    static func imageFileName(_ number: Int) -> String {
        numberedName(number, suffix: imageSuffix)
    }

    private static func numberedName(_ number: Int, suffix: String) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 6 - digits.count)) + digits + suffix
    }

    /// Numbered log files in `directory`, oldest first, as (number, path).
    static func logFiles(in directory: String, fileSystem: any FileSystem) throws -> [(number: Int, path: String)] {
        try numberedFiles(in: directory, suffix: logSuffix, fileSystem: fileSystem)
    }

    /// Numbered images in `directory`, oldest first, as (number, path).
    static func imageFiles(in directory: String, fileSystem: any FileSystem) throws -> [(number: Int, path: String)] {
        try numberedFiles(in: directory, suffix: imageSuffix, fileSystem: fileSystem)
    }

    /// The store's own files in `directory` (logs, images, temporaries), as paths; not the lock.
    static func storeFiles(in directory: String, fileSystem: any FileSystem) throws -> [String] {
        try fileSystem.names(in: directory).filter(isStoreFile).map { join(directory, $0) }
    }

    /// Files in `directory` that are not the store's (nor `.`, `..` and the lock).
    static func otherFiles(in directory: String, fileSystem: any FileSystem) throws -> [String] {
        try fileSystem.names(in: directory).filter { !isStoreFile($0) && $0 != "." && $0 != ".." && $0 != lockFileName }
    }

    private static func isStoreFile(_ name: String) -> Bool {
        name.hasSuffix(logSuffix) || name.hasSuffix(imageSuffix) || name.hasSuffix(".tmp")
    }

    /// Removes `*.tmp` files: images a crash interrupted before they were renamed into place.
    static func removeTemporaryFiles(in directory: String, fileSystem: any FileSystem) throws {
        for name in try fileSystem.names(in: directory) where name.hasSuffix(".tmp") {
            fileSystem.unlink(join(directory, name))
        }
    }

    private static func numberedFiles(in directory: String, suffix: String,
                                      fileSystem: any FileSystem) throws -> [(number: Int, path: String)] {
        var files: [(number: Int, path: String)] = []
        for name in try fileSystem.names(in: directory) {
            // Only the canonical spelling counts, so `1.log` and `000001.log` cannot both claim number 1.
            guard name.hasSuffix(suffix), let number = Int(name.dropLast(suffix.count)), number > 0,
                  name == numberedName(number, suffix: suffix) else { continue }
            files.append((number, join(directory, name)))
        }
        return files.sorted { $0.number < $1.number }
    }
}

/// An exclusive `flock` on the data directory's LOCK file, held for as long as the store is open. The kernel
/// drops it when the process dies, so a crash never leaves a stale lock behind. The file holds the holder's pid.
///
/// A store on a read-only file system, or in a directory this user may not write, can still be opened for
/// reading: the lock is then shared (readers exclude a writer, not each other) and ``readOnlyReason`` says why.
public struct DirectoryLock: Sendable {
    /// The LOCK file's descriptor; -1 for a read-only store that has no LOCK file (nothing else writes it either).
    let fd: Int32
    /// Why the store can only be read; nil when the lock is exclusive.
    public let readOnlyReason: String?
    let fileSystem: any FileSystem

    /// Takes the lock of the data directory `directory`, which must exist and must not be writable by other users
    /// (``StoreError/unsafeDirectory(path:reason:)``).
    /// - Parameter allowReadOnly: when the directory cannot be written, take a shared lock instead of failing.
    /// - Throws: ``StoreError/locked(directory:holderPID:)`` when another process holds it.
    public init(directory: String, allowReadOnly: Bool = false, fileSystem: any FileSystem = POSIXFileSystem()) throws {
        self.fileSystem = fileSystem
        (fd, readOnlyReason) = try Self.acquire(directory: directory, allowReadOnly: allowReadOnly, fs: fileSystem)
    }

    private static func acquire(directory: String, allowReadOnly: Bool,
                                fs: any FileSystem) throws -> (fd: Int32, readOnlyReason: String?) {
        try Paths.validate(directory)
        try DataDirectory.checkNotWritableByOthers(directory, fileSystem: fs)
        let path = DataDirectory.join(directory, DataDirectory.lockFileName)
        var refusal: (operation: String, path: String, errno: Int32)
        let access = fs.writeAccess(directory)
        if access != 0 {
            refusal = ("write in", directory, access)
        } else {
            do {
                let fd = try fs.open(path, O_RDWR | O_CREAT | O_NOFOLLOW)
                try lock(fd, exclusive: true, directory: directory, path: path, fs: fs)
                try writePID(fd, path: path, fs: fs)
                return (fd, nil)
            } catch StoreError.io(let operation, let failedPath, let code) where [EROFS, EACCES, EPERM].contains(code) {
                refusal = (operation, failedPath, code)
            }
        }
        guard allowReadOnly else { throw StoreError.io(operation: refusal.operation, path: refusal.path, errno: refusal.errno) }
        let reason = "cannot \(refusal.operation) '\(refusal.path)': \(systemErrorMessage(refusal.errno))"
        let fd: Int32
        do {
            fd = try fs.open(path, O_RDONLY | O_NOFOLLOW)
        } catch StoreError.io(_, _, let code) where code == ENOENT {
            return (-1, reason)  // never opened for writing here, and nobody can create the file now
        }
        try lock(fd, exclusive: false, directory: directory, path: path, fs: fs)
        return (fd, reason)
    }

    private static func lock(_ fd: Int32, exclusive: Bool, directory: String, path: String, fs: any FileSystem) throws {
        let code = fs.tryLock(fd, exclusive: exclusive)
        guard code != 0 else { return }
        defer { fs.close(fd) }
        guard code == EWOULDBLOCK else { throw StoreError.io(operation: "lock", path: path, errno: code) }
        throw StoreError.locked(directory: directory, holderPID: readPID(fd, path: path, fs: fs))
    }

    private static func writePID(_ fd: Int32, path: String, fs: any FileSystem) throws {
        let pid = Array("\(getpid())\n".utf8)
        do {
            try fs.truncate(fd, to: 0, path: path)
            try pid.withUnsafeBytes { try fs.write(fd, $0, at: 0, path: path) }
        } catch {
            fs.close(fd)
            throw error
        }
    }

    private static func readPID(_ fd: Int32, path: String, fs: any FileSystem) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        guard let count = try? buffer.withUnsafeMutableBytes({ try fs.read(fd, into: $0, at: 0, path: path) }), count > 0 else {
            return nil
        }
        return Int32(String(decoding: buffer[..<count], as: UTF8.self).trimmingTrailingNewline())
    }

    public var isReadOnly: Bool { readOnlyReason != nil }

    public func release() {
        if fd >= 0 { fileSystem.close(fd) }
    }
}

extension String {
    func trimmingTrailingNewline() -> String {
        var copy = self
        while copy.hasSuffix("\n") { copy.removeLast() }
        return copy
    }
}
