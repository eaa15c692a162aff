#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `strerror` text for an errno value.
func systemErrorMessage(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// Thin wrappers over the POSIX calls the store needs, turning failures into `StoreError.io`.
/// They retry on EINTR, so a signal (Ctrl-C in the shell) never turns into a failed write.
enum POSIX {
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
final class MappedFile {
    let bytes: UnsafeRawBufferPointer
    private var released = 0
    private static let releaseStride = 8 << 20

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// Maps `path` and passes it to `body`; unmaps it afterwards. An empty file maps to an empty buffer.
    /// - Parameter followSymlinks: whether a symbolic link at `path` is followed. Not for the store's own files: a
    ///   link planted in a data directory must not make kvsh read (or, at the next step, write) another file.
    static func withContents<T>(of path: String, followSymlinks: Bool = false, _ body: (MappedFile) throws -> T) throws -> T {
        let fd = try POSIX.open(path, O_RDONLY | (followSymlinks ? 0 : O_NOFOLLOW))
        defer { close(fd) }
        let size = try POSIX.size(fd, path: path)
        guard size > 0 else { return try body(MappedFile(bytes: UnsafeRawBufferPointer(start: nil, count: 0))) }
        guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapping != MAP_FAILED else {
            throw StoreError.io(operation: "mmap", path: path, errno: errno)
        }
        defer { munmap(mapping, size) }
        _ = madvise(mapping, size, MADV_SEQUENTIAL)
        return try body(MappedFile(bytes: UnsafeRawBufferPointer(start: mapping, count: size)))
    }

    /// Hands the pages before `offset` back to the kernel (they are re-read from the file if touched again),
    /// so reading a large file front to back does not keep all of it resident.
    func releasePages(before offset: Int) {
        let aligned = offset & ~(Self.releaseStride - 1)
        guard aligned - released >= Self.releaseStride, let base = bytes.baseAddress else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + released), aligned - released, MADV_DONTNEED)
        released = aligned
    }
}
