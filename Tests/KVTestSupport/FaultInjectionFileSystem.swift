// A faulty disk for the engine's tests: the POSIX file system with failures injected on demand and a simulated
// power loss, after RocksDB's FaultInjectionTestFS.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVStore
import Synchronization

/// Wraps ``POSIXFileSystem`` on real files and
/// - fails the Nth write, fsync, fdatasync or directory fsync (with a chosen errno, EIO by default; a write can
///   first put part of its bytes on disk, as a disk that fills up does),
/// - remembers, for every file written through it, how much of it was last fsynced, and which names were created
///   or renamed since their directory was last fsynced, so that ``simulateCrash()`` can leave on disk exactly what
///   a power loss would: each file cut back to its last fsynced length, new names whose directory was never
///   fsynced removed, renames not followed by a directory fsync undone (RocksDB's `DropUnsyncedFileData`).
///
/// After the crash every operation that would change a file fails with EIO, so the store left open (and its
/// deinit) cannot write more; open the directory again with a fresh store on ``POSIXFileSystem`` to see what
/// survived.
///
/// Simplifications, on the safe side for the engine as it is: removals and directory creations count as durable
/// at once (nothing the engine removes is needed after a crash), and a rename over an existing file, when undone,
/// does not bring the replaced file back.
public final class FaultInjectionFileSystem: FileSystem {
    public enum Operation: Sendable, Hashable {
        /// `write` and `pwrite`.
        case write
        case fsync
        case fdatasync
        /// fsync of a directory.
        case directorySync
    }

    private struct Fault {
        var operation: Operation
        /// Matching calls still to let through before the one that fails.
        var skip: Int
        var errno: Int32
        /// For a write: bytes written before it fails (a short write).
        var partial: Int?
        var pathSuffix: String?
        /// Fail every matching call from then on, not just one.
        var sticky: Bool
    }

    /// A file written through this file system.
    private struct Tracked {
        /// Bytes known to be on stable storage.
        var syncedLength: Int
        /// Created (or linked) since its directory was last fsynced: a crash removes the name.
        var newName = false
        /// Renamed from this path since its directory was last fsynced: a crash moves it back.
        var renamedFrom: String?
    }

    private struct State {
        var faults: [Fault] = []
        var counts: [Operation: Int] = [:]
        var injected = 0
        var descriptors: [Int32: String] = [:]
        var files: [String: Tracked] = [:]
        var crashed = false
    }

    private let base = POSIXFileSystem()
    private let state = Mutex(State())

    public init() {}

    // MARK: Faults

    /// Makes the `nth` call of `operation` from now on fail with `errno` (on a path ending in `pathSuffix`, if
    /// given); with `sticky`, that call and every later one. `partial`: a write puts that many bytes on disk
    /// before failing.
    public func inject(_ operation: Operation, nth: Int = 1, errno: Int32 = EIO, partial: Int? = nil,
                       pathSuffix: String? = nil, sticky: Bool = false) {
        state.withLock {
            $0.faults.append(Fault(operation: operation, skip: max(0, nth - 1), errno: errno, partial: partial,
                                   pathSuffix: pathSuffix, sticky: sticky))
        }
    }

    /// Removes every fault not yet fired (and every sticky one).
    public func clearFaults() {
        state.withLock { $0.faults.removeAll() }
    }

    /// Calls of `operation` so far.
    public func count(_ operation: Operation) -> Int {
        state.withLock { $0.counts[operation, default: 0] }
    }

    /// Faults that fired so far.
    public var injectedFaults: Int { state.withLock { $0.injected } }

    /// Counts the call and returns the fault it must fail with, if any.
    private func fault(_ operation: Operation, path: String) -> Fault? {
        state.withLock { state in
            state.counts[operation, default: 0] += 1
            if state.crashed {
                return Fault(operation: operation, skip: 0, errno: EIO, partial: nil, pathSuffix: nil, sticky: true)
            }
            for index in state.faults.indices where state.faults[index].operation == operation {
                let fault = state.faults[index]
                if let suffix = fault.pathSuffix, !path.hasSuffix(suffix) { continue }
                if fault.skip > 0 {
                    state.faults[index].skip -= 1
                    continue
                }
                if !fault.sticky { state.faults.remove(at: index) }
                state.injected += 1
                return fault
            }
            return nil
        }
    }

    private func crashCheck(_ operation: String, _ path: String) throws {
        if state.withLock({ $0.crashed }) { throw StoreError.io(operation: operation, path: path, errno: EIO) }
    }

    // MARK: Power loss

    /// Leaves on disk what a power loss now would: see the type's documentation. Later changes all fail.
    public func simulateCrash() {
        let files = state.withLock { state -> [String: Tracked] in
            state.crashed = true
            defer { state.files.removeAll() }
            return state.files
        }
        for (path, file) in files {
            if file.newName {
                _ = Glibc.unlink(path)
                continue
            }
            var current = path
            if let original = file.renamedFrom, Glibc.rename(path, original) == 0 { current = original }
            var info = stat()
            if stat(current, &info) == 0, Int(info.st_size) > file.syncedLength {
                _ = Glibc.truncate(current, off_t(file.syncedLength))
            }
        }
    }

    /// Whether ``simulateCrash()`` has run.
    public var hasCrashed: Bool { state.withLock { $0.crashed } }

    // MARK: FileSystem

    public func open(_ path: String, flags: Int32, mode: mode_t) throws -> Int32 {
        let writable = flags & O_ACCMODE != O_RDONLY
        guard writable else { return try base.open(path, flags: flags, mode: mode) }
        try crashCheck("open", path)
        var info = stat()
        let existed = lstat(path, &info) == 0
        let fd = try base.open(path, flags: flags, mode: mode)
        state.withLock { state in
            state.descriptors[fd] = path
            if !existed {
                state.files[path] = Tracked(syncedLength: 0, newName: true)
            } else if flags & O_TRUNC != 0 {
                state.files[path, default: Tracked(syncedLength: 0)].syncedLength = 0
            } else if state.files[path] == nil {
                state.files[path] = Tracked(syncedLength: Int(info.st_size))  // there before: taken as durable
            }
        }
        return fd
    }

    public func openRegularFile(_ path: String, followSymlinks: Bool) throws -> Int32 {
        try base.openRegularFile(path, followSymlinks: followSymlinks)
    }

    public func close(_ fd: Int32) {
        state.withLock { _ = $0.descriptors.removeValue(forKey: fd) }
        base.close(fd)
    }

    public func duplicate(_ fd: Int32, path: String) throws -> Int32 {
        let duplicate = try base.duplicate(fd, path: path)
        state.withLock { state in
            if let tracked = state.descriptors[fd] { state.descriptors[duplicate] = tracked }
        }
        return duplicate
    }

    public func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        if let fault = fault(.write, path: path) {
            if let partial = fault.partial, partial > 0 {
                try base.write(fd, UnsafeRawBufferPointer(rebasing: bytes.prefix(partial)), path: path)
            }
            throw StoreError.io(operation: "write", path: path, errno: fault.errno)
        }
        try base.write(fd, bytes, path: path)
    }

    public func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws {
        if let fault = fault(.write, path: path) {
            throw StoreError.io(operation: "write", path: path, errno: fault.errno)
        }
        try base.write(fd, bytes, at: offset, path: path)
    }

    public func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws -> Int {
        try base.read(fd, into: buffer, at: offset, path: path)
    }

    public func fsync(_ fd: Int32, path: String) throws {
        try sync(fd, path: path, operation: .fsync)
    }

    public func fdatasync(_ fd: Int32, path: String) throws {
        try sync(fd, path: path, operation: .fdatasync)
    }

    private func sync(_ fd: Int32, path: String, operation: Operation) throws {
        let name = operation == .fsync ? "fsync" : "fdatasync"
        if let fault = fault(operation, path: path) {
            throw StoreError.io(operation: name, path: path, errno: fault.errno)
        }
        // The size before the sync: what is written meanwhile (a commit beside a background sync) is not covered.
        let size = try base.size(fd, path: path)
        if operation == .fsync { try base.fsync(fd, path: path) } else { try base.fdatasync(fd, path: path) }
        state.withLock { state in
            guard let tracked = state.descriptors[fd] else { return }
            state.files[tracked, default: Tracked(syncedLength: 0)].syncedLength = size
        }
    }

    public func truncate(_ fd: Int32, to length: Int, path: String) throws {
        try crashCheck("truncate", path)
        try base.truncate(fd, to: length, path: path)
        state.withLock { state in
            guard let tracked = state.descriptors[fd], var file = state.files[tracked] else { return }
            file.syncedLength = min(file.syncedLength, length)
            state.files[tracked] = file
        }
    }

    public func status(of fd: Int32, path: String) throws -> FileStatus {
        try base.status(of: fd, path: path)
    }

    public func status(ofPath path: String) throws -> FileStatus {
        try base.status(ofPath: path)
    }

    public func mapReadOnly(_ fd: Int32, size: Int, path: String) throws -> UnsafeRawBufferPointer {
        try base.mapReadOnly(fd, size: size, path: path)
    }

    public func unmap(_ bytes: UnsafeRawBufferPointer) {
        base.unmap(bytes)
    }

    public func tryLock(_ fd: Int32, exclusive: Bool) -> Int32 {
        base.tryLock(fd, exclusive: exclusive)
    }

    public func rename(_ from: String, to: String) throws {
        try crashCheck("rename", from)
        var info = stat()
        let sourceExisted = lstat(from, &info) == 0
        try base.rename(from, to: to)
        state.withLock { state in
            var file = state.files.removeValue(forKey: from) ?? Tracked(syncedLength: sourceExisted ? Int(info.st_size) : 0)
            if !file.newName { file.renamedFrom = file.renamedFrom ?? from }
            state.files[to] = file
            for (fd, path) in state.descriptors where path == from { state.descriptors[fd] = to }
        }
    }

    public func link(_ from: String, to: String) throws {
        try crashCheck("link", to)
        try base.link(from, to: to)
        state.withLock { state in
            var info = stat()
            let length = state.files[from]?.syncedLength ?? (stat(from, &info) == 0 ? Int(info.st_size) : 0)
            state.files[to] = Tracked(syncedLength: length, newName: true)
        }
    }

    public func unlink(_ path: String) {
        guard !hasCrashed else { return }
        base.unlink(path)
        state.withLock { _ = $0.files.removeValue(forKey: path) }
    }

    public func makeDirectory(_ path: String, mode: mode_t) throws {
        try crashCheck("create directory", path)
        try base.makeDirectory(path, mode: mode)
    }

    public func names(in directory: String) throws -> [String] {
        try base.names(in: directory)
    }

    public func fsyncDirectory(_ path: String) throws {
        if let fault = fault(.directorySync, path: path) {
            throw StoreError.io(operation: "fsync", path: path, errno: fault.errno)
        }
        try base.fsyncDirectory(path)
        let directory = Self.normalized(path)
        state.withLock { state in
            for (file, var tracked) in state.files where Self.parent(of: file) == directory {
                tracked.newName = false
                tracked.renamedFrom = nil
                state.files[file] = tracked
            }
        }
    }

    public func resolvedPath(_ path: String) -> String? {
        base.resolvedPath(path)
    }

    public func writeAccess(_ path: String) -> Int32 {
        base.writeAccess(path)
    }

    private static func normalized(_ path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        return String(trimmed)
    }

    private static func parent(of path: String) -> String {
        let trimmed = normalized(path)
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }
}
