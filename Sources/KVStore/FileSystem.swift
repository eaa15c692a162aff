#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Every file and directory operation the engine makes, so that tests can put a faulty disk under a store
/// (LevelDB's `Env`, RocksDB's `FileSystem`). ``POSIXFileSystem`` is the real one; the tests' fault-injecting
/// one wraps it to fail the Nth write or fsync and to drop what was never fsynced at a simulated crash.
///
/// Files are POSIX descriptors, so an implementation that wraps another works on real files, and the per-commit
/// path (one write, one fdatasync) costs one call through the existential and nothing else. Failures are thrown
/// as ``StoreError``, worded as the operations name them (`io(operation: "fdatasync", ...)`).
public protocol FileSystem: Sendable {
    /// Opens `path` (close-on-exec, retrying on EINTR); a file it creates gets `mode`. Refuses a path with a NUL.
    func open(_ path: String, flags: Int32, mode: mode_t) throws -> Int32
    /// Opens `path` for reading, refusing anything but a regular file (see ``POSIX/openRegularFile(_:followSymlinks:)``).
    func openRegularFile(_ path: String, followSymlinks: Bool) throws -> Int32
    func close(_ fd: Int32)
    /// A second descriptor for the open file `fd` (close-on-exec).
    func duplicate(_ fd: Int32, path: String) throws -> Int32

    /// Writes all of `bytes` at the file's offset (looping over short writes).
    func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws
    /// Writes `bytes` at `offset` in one `pwrite`; anything less is an error.
    func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws
    /// Reads up to `buffer.count` bytes at `offset`; fewer only at the end of the file.
    func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws -> Int
    func fsync(_ fd: Int32, path: String) throws
    /// The data and the metadata needed to read it back (an appended file's size), not the timestamps.
    func fdatasync(_ fd: Int32, path: String) throws
    func truncate(_ fd: Int32, to length: Int, path: String) throws
    func status(of fd: Int32, path: String) throws -> FileStatus
    /// `stat(2)`: follows a symbolic link.
    func status(ofPath path: String) throws -> FileStatus
    /// Maps `size` bytes of `fd` read-only; ``unmap(_:)`` releases them.
    func mapReadOnly(_ fd: Int32, size: Int, path: String) throws -> UnsafeRawBufferPointer
    func unmap(_ bytes: UnsafeRawBufferPointer)
    /// `flock` without blocking: 0 when taken, else the errno (EWOULDBLOCK when someone else holds it).
    func tryLock(_ fd: Int32, exclusive: Bool) -> Int32

    /// Throws `io(operation: "rename", path: from, ...)` on failure.
    func rename(_ from: String, to: String) throws
    /// Throws `io(operation: "link", path: to, ...)` on failure (EEXIST when `to` exists).
    func link(_ from: String, to: String) throws
    /// Removes a file, ignoring failure: every caller removes something it can do without.
    func unlink(_ path: String)
    /// Throws `io(operation: "create directory", ...)`, EEXIST included.
    func makeDirectory(_ path: String, mode: mode_t) throws
    /// The names in `directory`, `.` and `..` included, in the order the directory gives them.
    func names(in directory: String) throws -> [String]
    /// fsyncs a directory, so that a file created, renamed or removed in it stays so after a crash.
    func fsyncDirectory(_ path: String) throws
    /// `path` with symbolic links, `.` and `..` resolved (`realpath(3)`), or nil if it does not exist.
    func resolvedPath(_ path: String) -> String?
    /// 0 if this user may write in `path` (`access(2)`), else the errno.
    func writeAccess(_ path: String) -> Int32
}

/// What `stat` says about a file, as far as the engine asks.
public struct FileStatus: Sendable {
    /// `st_mode`: type and permission bits.
    public var mode: mode_t
    public var owner: uid_t
    public var size: Int
    public var modified: timespec
    public var changed: timespec

    public init(_ info: stat) {
        mode = info.st_mode
        owner = info.st_uid
        size = Int(info.st_size)
        modified = info.st_mtim
        changed = info.st_ctim
    }

    public var isDirectory: Bool { (mode & S_IFMT) == S_IFDIR }
    public var isRegularFile: Bool { (mode & S_IFMT) == S_IFREG }
}

extension FileSystem {
    /// Opens `path`; a file it creates is readable and writable by its owner only (the store's logs, images and
    /// backups hold every value).
    func open(_ path: String, _ flags: Int32) throws -> Int32 {
        try open(path, flags: flags, mode: 0o600)
    }

    public func size(_ fd: Int32, path: String) throws -> Int {
        try status(of: fd, path: path).size
    }
}

/// The file system as the kernel offers it: today's POSIX calls (see ``POSIX``), with their EINTR retries,
/// NUL-path checks, regular-file checks and error wording.
public struct POSIXFileSystem: FileSystem {
    public init() {}

    public func open(_ path: String, flags: Int32, mode: mode_t) throws -> Int32 {
        try POSIX.open(path, flags, mode: mode)
    }

    public func openRegularFile(_ path: String, followSymlinks: Bool) throws -> Int32 {
        try POSIX.openRegularFile(path, followSymlinks: followSymlinks)
    }

    public func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    public func duplicate(_ fd: Int32, path: String) throws -> Int32 {
        let duplicate = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard duplicate >= 0 else { throw StoreError.io(operation: "dup", path: path, errno: errno) }
        return duplicate
    }

    public func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        try POSIX.writeAll(fd, bytes, path: path)
    }

    public func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws {
        guard pwrite(fd, bytes.baseAddress, bytes.count, off_t(offset)) == bytes.count else {
            throw StoreError.io(operation: "write", path: path, errno: errno)
        }
    }

    public func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws -> Int {
        try POSIX.read(fd, into: buffer, at: offset, path: path)
    }

    public func fsync(_ fd: Int32, path: String) throws {
        try POSIX.fsync(fd, path: path)
    }

    public func fdatasync(_ fd: Int32, path: String) throws {
        try POSIX.fdatasync(fd, path: path)
    }

    public func truncate(_ fd: Int32, to length: Int, path: String) throws {
        try POSIX.truncate(fd, to: length, path: path)
    }

    public func status(of fd: Int32, path: String) throws -> FileStatus {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StoreError.io(operation: "stat", path: path, errno: errno) }
        return FileStatus(info)
    }

    public func status(ofPath path: String) throws -> FileStatus {
        var info = stat()
        guard stat(path, &info) == 0 else { throw StoreError.io(operation: "stat", path: path, errno: errno) }
        return FileStatus(info)
    }

    public func mapReadOnly(_ fd: Int32, size: Int, path: String) throws -> UnsafeRawBufferPointer {
        guard size > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapping != MAP_FAILED else {
            throw StoreError.io(operation: "mmap", path: path, errno: errno)
        }
        return UnsafeRawBufferPointer(start: mapping, count: size)
    }

    public func unmap(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
    }

    public func tryLock(_ fd: Int32, exclusive: Bool) -> Int32 {
        flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0 ? 0 : errno
    }

    public func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw StoreError.io(operation: "rename", path: from, errno: errno) }
    }

    public func link(_ from: String, to: String) throws {
        guard Glibc.link(from, to) == 0 else { throw StoreError.io(operation: "link", path: to, errno: errno) }
    }

    public func unlink(_ path: String) {
        _ = Glibc.unlink(path)
    }

    public func makeDirectory(_ path: String, mode: mode_t) throws {
        guard mkdir(path, mode) == 0 else { throw StoreError.io(operation: "create directory", path: path, errno: errno) }
    }

    public func names(in directory: String) throws -> [String] {
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

    public func fsyncDirectory(_ path: String) throws {
        try POSIX.fsyncDirectory(path)
    }

    public func resolvedPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    public func writeAccess(_ path: String) -> Int32 {
        access(path, W_OK) == 0 ? 0 : errno
    }
}
