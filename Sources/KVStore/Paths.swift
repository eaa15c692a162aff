#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Checks on paths that come from users, clients and files before any of them reaches a system call.
///
/// A Swift `String` may hold NUL bytes, but the C string a system call receives ends at the first one: a path
/// checked as `dir/000001.log\0/x` would be opened as `dir/000001.log`. Every public entry point that takes a
/// path refuses such a path first; ``POSIX/open(_:_:mode:)`` refuses it again as a backstop.
public enum Paths {
    /// Throws ``StoreError/invalidPath(path:reason:)`` if `path` is empty or holds a NUL byte.
    public static func validate(_ path: String) throws {
        guard !path.isEmpty else { throw StoreError.invalidPath(path: path, reason: "is empty") }
        guard !path.utf8.contains(0) else {
            throw StoreError.invalidPath(path: path, reason: "contains a NUL byte, which no file name can hold")
        }
    }

    /// `path` with unprintable bytes escaped (`\x00`), for error messages.
    static func printable(_ path: String) -> String {
        var text = ""
        for scalar in path.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16)
                text += "\\x" + (hex.count == 1 ? "0" : "") + hex
            } else {
                text.unicodeScalars.append(scalar)
            }
        }
        return text
    }

    /// Where a new file at `path` really goes: its parent directory with every symbolic link, `.` and `..`
    /// resolved, and its own name. Comparing these, not the strings given, is what tells whether two paths name
    /// the same place.
    /// - Throws: ``StoreError/invalidPath(path:reason:)`` for a NUL byte, an empty path, a path ending in `/`, `.`
    ///   or `..`, or a parent that is missing or not a directory.
    static func resolveNewFile(_ path: String, fileSystem: any FileSystem) throws -> (directory: String, name: String, path: String) {
        try validate(path)
        let parent = DataDirectory.parentDirectory(of: path)
        let name = path.hasSuffix("/") ? "" : String(path.split(separator: "/", omittingEmptySubsequences: true).last ?? "")
        guard !name.isEmpty, name != ".", name != ".." else {
            throw StoreError.invalidPath(path: path, reason: "does not name a file (it ends in '/', '.' or '..')")
        }
        guard let directory = DataDirectory.resolved(parent, fileSystem: fileSystem) else {
            throw StoreError.invalidPath(path: path, reason: "is in a directory that does not exist ('\(parent)'); create it first")
        }
        guard (try? fileSystem.status(ofPath: directory))?.isDirectory == true else {
            throw StoreError.invalidPath(path: path, reason: "is not in a directory ('\(parent)' is not one)")
        }
        return (directory, name, DataDirectory.join(directory, name))
    }

    /// Whether the resolved directory `inner` is `outer` or lies inside it (both resolved).
    static func isWithin(_ inner: String, _ outer: String) -> Bool {
        inner == outer || inner.hasPrefix(outer.hasSuffix("/") ? outer : outer + "/")
    }
}
