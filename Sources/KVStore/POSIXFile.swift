#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// `strerror` text for an errno value.
func systemErrorMessage(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// Thin wrappers over the POSIX calls the store needs, turning failures into `StoreError.io`.
/// They retry on EINTR, so a signal (Ctrl-C in the shell) never turns into a failed write.
public enum POSIX {
    /// Opens `path` for reading (close-on-exec), refusing anything but a regular file: a FIFO or a character
    /// device could block a read forever (or never end), a directory cannot be read as a file. Used for every
    /// named file kvsh reads: scripts (`:source`, `--file`), imported logs, the store's own logs and images.
    ///
    /// `stat` first, so a device is never opened at all; then `open` with O_NONBLOCK (a FIFO without a writer
    /// would block the open itself), `fstat` on the descriptor (the path may have been swapped in between), and
    /// O_NONBLOCK cleared again for ordinary blocking reads.
    /// - Throws: ``StoreError/notARegularFile(path:kind:)``, or ``StoreError/io(operation:path:errno:)``.
    public static func openRegularFile(_ path: String, followSymlinks: Bool = true) throws -> Int32 {
        var info = stat()
        if stat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG {
            throw StoreError.notARegularFile(path: path, kind: fileKind(info.st_mode))
        }
        let fd = try open(path, O_RDONLY | O_NONBLOCK | (followSymlinks ? 0 : O_NOFOLLOW))
        guard fstat(fd, &info) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw StoreError.io(operation: "stat", path: path, errno: code)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            Glibc.close(fd)
            throw StoreError.notARegularFile(path: path, kind: fileKind(info.st_mode))
        }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw StoreError.io(operation: "fcntl", path: path, errno: code)
        }
        return fd
    }

    /// What a file of mode `mode` is, as an error message names it ("a FIFO", "a directory").
    static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symbolic link"
        case S_IFREG: return "a regular file"
        default: return "not a file kvsh knows"
        }
    }

    /// Opens `path`; a file it creates is readable and writable by its owner only (the store's logs, images and
    /// backups hold every value).
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o600) throws -> Int32 {
        try Paths.validate(path)
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw StoreError.io(operation: "open", path: path, errno: errno) }
        }
    }

    /// Writes all of `bytes` (looping over short writes).
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, base + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(operation: "write", path: path, errno: errno)
            }
            done += n
        }
    }

    static func fsync(_ fd: Int32, path: String) throws {
        while Glibc.fsync(fd) != 0 {
            if errno != EINTR { throw StoreError.io(operation: "fsync", path: path, errno: errno) }
        }
    }

    /// fdatasync: the data and the metadata needed to read it back (an appended file's size), without the
    /// timestamps fsync also writes. Enough for the log's group commits, which only append.
    static func fdatasync(_ fd: Int32, path: String) throws {
        while Glibc.fdatasync(fd) != 0 {
            if errno != EINTR { throw StoreError.io(operation: "fdatasync", path: path, errno: errno) }
        }
    }

    /// fsyncs a directory, so that a file created (or renamed) in it survives a crash.
    static func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { Glibc.close(fd) }
        try fsync(fd, path: path)
    }

    static func truncate(_ fd: Int32, to length: Int, path: String) throws {
        while ftruncate(fd, off_t(length)) != 0 {
            if errno != EINTR { throw StoreError.io(operation: "truncate", path: path, errno: errno) }
        }
    }

    static func size(_ fd: Int32, path: String) throws -> Int {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StoreError.io(operation: "stat", path: path, errno: errno) }
        return Int(info.st_size)
    }

    /// Reads up to `count` bytes at `offset`; fewer only at the end of the file.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < buffer.count {
            let n = pread(fd, base + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(operation: "read", path: path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }
}

/// A file mapped read-only for sequential reading, for as long as a closure runs.
///
/// Readers hand back the pages behind them with ``releasePages(before:)``, so a file of any size is read with
/// a bounded number of resident pages; that call also stops the reader with ``StoreError/cancelled(operation:)``
/// once the maintenance work it serves has been cancelled (see ``MaintenanceCancellation``).
final class MappedFile {
    let bytes: UnsafeRawBufferPointer
    private var released = 0
    private static let releaseStride = 8 << 20
    private let cancellation: MaintenanceCancellation?
    /// The caller's control of the operation reading the file, if any: Ctrl-C and the progress bar.
    private let control: OperationControl?
    /// How far progress has been reported.
    private var reported = 0

    private init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        cancellation = MaintenanceCancellation.current
        control = OperationControl.current
        control?.beginFile(path, size: bytes.count)
    }

    /// Maps `path` (a regular file only) and passes it to `body`; unmaps it afterwards. An empty file maps to an
    /// empty buffer.
    /// - Parameter followSymlinks: whether a symbolic link at `path` is followed. Not for the store's own files: a
    ///   link planted in a data directory must not make kvsh read (or, at the next step, write) another file.
    static func withContents<T>(of path: String, followSymlinks: Bool = false, fileSystem: any FileSystem,
                                _ body: (MappedFile) throws -> T) throws -> T {
        let fd = try fileSystem.openRegularFile(path, followSymlinks: followSymlinks)
        defer { fileSystem.close(fd) }
        return try withContents(of: fd, path: path, fileSystem: fileSystem, body)
    }

    /// Maps the open file `fd` (named `path` in errors) and passes it to `body`; unmaps it afterwards.
    static func withContents<T>(of fd: Int32, path: String, fileSystem: any FileSystem,
                                _ body: (MappedFile) throws -> T) throws -> T {
        let size = try fileSystem.size(fd, path: path)
        let mapping = try fileSystem.mapReadOnly(fd, size: size, path: path)
        defer { fileSystem.unmap(mapping) }
        if let base = mapping.baseAddress { _ = madvise(UnsafeMutableRawPointer(mutating: base), size, MADV_SEQUENTIAL) }
        return try body(MappedFile(bytes: mapping, path: path))
    }

    /// Hands the pages before `offset` back to the kernel (they are re-read from the file if touched again),
    /// so reading a large file front to back does not keep all of it resident.
    /// - Throws: ``StoreError/cancelled(operation:)`` once the work reading it has been cancelled.
    func releasePages(before offset: Int) throws {
        if let cancellation { try cancellation.check() }
        if let control {
            try control.check()
            control.advance(by: offset - reported)
            reported = max(reported, offset)
        }
        let aligned = offset & ~(Self.releaseStride - 1)
        guard aligned - released >= Self.releaseStride, let base = bytes.baseAddress else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + released), aligned - released, MADV_DONTNEED)
        released = aligned
    }
}

/// Stops long maintenance work (an import, a check, a checkpoint's or a backup's image) when the process shuts
/// down, so that a server's grace period holds however large the files are.
///
/// The work checks ``check()`` between records or blocks and throws ``StoreError/cancelled(operation:)``, which
/// leaves the store as it was: an image being written is a `.tmp` file, removed; an import still checking its
/// source has written nothing. Code deep inside (`MappedFile`) finds the token of the work it serves in
/// ``current``, bound with `$current.withValue` around that work.
public final class MaintenanceCancellation: Sendable {
    private let cancelled = Atomic<Bool>(false)
    /// What is stopped, for the error.
    let operation: String

    init(operation: String = "the maintenance command") { self.operation = operation }

    /// The work the calling thread runs on behalf of, if any.
    @TaskLocal static var current: MaintenanceCancellation?

    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }

    public func cancel() { cancelled.store(true, ordering: .relaxed) }

    /// Throws ``StoreError/cancelled(operation:)`` once cancelled.
    func check() throws {
        if cancelled.load(ordering: .relaxed) { throw StoreError.cancelled(operation: operation) }
    }
}
