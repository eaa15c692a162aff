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

    /// Creates `path` (and missing parents) if needed; fails if it exists as something other than a directory.
    static func prepare(_ path: String) throws {
        var info = stat()
        if stat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else { throw StoreError.notADirectory(path: path) }
            return
        }
        guard errno == ENOENT else { throw StoreError.io(operation: "stat", path: path, errno: errno) }
        let parent = parentDirectory(of: path)
        if parent != path { try prepare(parent) }
        if mkdir(path, 0o755) != 0 {
            guard errno == EEXIST else { throw StoreError.io(operation: "create directory", path: path, errno: errno) }
            // Something appeared there: another process made the directory (fine), or it is a dangling symlink.
            guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { throw StoreError.notADirectory(path: path) }
            return
        }
        try POSIX.fsyncDirectory(parent)
    }

    static func parentDirectory(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    /// `path` with symbolic links, `.` and `..` resolved (`realpath(3)`), or nil if it does not exist.
    static func resolved(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
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
    static func logFiles(in directory: String) throws -> [(number: Int, path: String)] {
        try numberedFiles(in: directory, suffix: logSuffix)
    }

    /// Numbered images in `directory`, oldest first, as (number, path).
    static func imageFiles(in directory: String) throws -> [(number: Int, path: String)] {
        try numberedFiles(in: directory, suffix: imageSuffix)
    }

    /// The store's own files in `directory` (logs, images, temporaries), as paths; not the lock.
    static func storeFiles(in directory: String) throws -> [String] {
        try names(in: directory).filter(isStoreFile).map { join(directory, $0) }
    }

    /// Files in `directory` that are not the store's (nor `.`, `..` and the lock).
    static func otherFiles(in directory: String) throws -> [String] {
        try names(in: directory).filter { !isStoreFile($0) && $0 != "." && $0 != ".." && $0 != lockFileName }
    }

    private static func isStoreFile(_ name: String) -> Bool {
        name.hasSuffix(logSuffix) || name.hasSuffix(imageSuffix) || name.hasSuffix(".tmp")
    }

    /// Removes `*.tmp` files: images a crash interrupted before they were renamed into place.
    static func removeTemporaryFiles(in directory: String) throws {
        for name in try names(in: directory) where name.hasSuffix(".tmp") {
            unlink(join(directory, name))
        }
    }

    private static func numberedFiles(in directory: String, suffix: String) throws -> [(number: Int, path: String)] {
        var files: [(number: Int, path: String)] = []
        for name in try names(in: directory) {
            // Only the canonical spelling counts, so `1.log` and `000001.log` cannot both claim number 1.
            guard name.hasSuffix(suffix), let number = Int(name.dropLast(suffix.count)), number > 0,
                  name == numberedName(number, suffix: suffix) else { continue }
            files.append((number, join(directory, name)))
        }
        return files.sorted { $0.number < $1.number }
    }

    static func names(in directory: String) throws -> [String] {
        guard let dir = opendir(directory) else { throw StoreError.io(operation: "list", path: directory, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            names.append(withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            })
        }
        return names
    }
}

/// An exclusive `flock` on the data directory's LOCK file, held for as long as the store is open. The kernel
/// drops it when the process dies, so a crash never leaves a stale lock behind. The file holds the holder's pid.
public struct DirectoryLock: Sendable {
    let fd: Int32

    /// Takes the lock of the data directory `directory`, which must exist.
    /// - Throws: ``StoreError/locked(directory:holderPID:)`` when another process holds it.
    public init(directory: String) throws {
        let path = DataDirectory.join(directory, DataDirectory.lockFileName)
        fd = try POSIX.open(path, O_RDWR | O_CREAT)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            defer { close(fd) }
            guard code == EWOULDBLOCK else { throw StoreError.io(operation: "lock", path: path, errno: code) }
            throw StoreError.locked(directory: directory, holderPID: Self.readPID(fd))
        }
        let pid = Array("\(getpid())\n".utf8)
        try POSIX.truncate(fd, to: 0, path: path)
        try pid.withUnsafeBytes { bytes in
            guard pwrite(fd, bytes.baseAddress, bytes.count, 0) == bytes.count else {
                throw StoreError.io(operation: "write", path: path, errno: errno)
            }
        }
    }

    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer[..<count], as: UTF8.self).trimmingTrailingNewline())
    }

    public func release() {
        close(fd)
    }
}

extension String {
    func trimmingTrailingNewline() -> String {
        var copy = self
        while copy.hasSuffix("\n") { copy.removeLast() }
        return copy
    }
}
