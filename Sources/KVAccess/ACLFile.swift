#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why an ACL file could not be used, naming the file and line.
public struct ACLFileError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let line: Int?
    public let message: String

    /// Redis's shape, `/path:3: message`, which `ACL LOAD` replies and startup prints.
    public var description: String {
        line.map { "\(path):\($0): \(message)" } ?? "\(path): \(message)"
    }
}

/// Redis's ACL file: one `user <name> <rules...>` per line; blank lines are skipped. Passwords are stored only as
/// hashes (`#...`); a clear `>password` in a hand-written file is accepted and hashed on load.
public enum ACLFile {
    /// Largest file read: a user per line, so far beyond any real set of users.
    static let maxBytes = 16 << 20

    /// Parses `text` into users (in file order), applying each line's rules to a new user. The first bad line
    /// fails the whole file, as in Redis.
    public static func parse(_ text: String, path: String, catalog: ACLCatalog,
                             hashPassword: (String) -> PasswordHash) throws(ACLFileError) -> [ACLUser] {
        var users: [ACLUser] = []
        var seen = Set<String>()
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingBlanks()
            if line.isEmpty { continue }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard words.count >= 2, words[0] == "user" else {
                throw ACLFileError(path: path, line: number + 1, message: "should start with user keyword followed by the username. ")
            }
            let name = words[1]
            guard AccessControl.isValidUserName(name) else {
                throw ACLFileError(path: path, line: number + 1, message: "Usernames can't contain spaces or null characters. ")
            }
            guard seen.insert(name).inserted else {
                throw ACLFileError(path: path, line: number + 1, message: "Duplicate user '\(name)' found. ")
            }
            var user = ACLUser(name: name, catalog: catalog)
            do {
                try user.apply(Array(words.dropFirst(2)), catalog: catalog, hashPassword: hashPassword)
            } catch {
                throw ACLFileError(path: path, line: number + 1, message: "\(error.description). ")
            }
            users.append(user)
        }
        return users
    }

    public static func read(path: String) throws(ACLFileError) -> String {
        guard let file = fopen(path, "r") else {
            throw ACLFileError(path: path, line: nil, message: "cannot open the ACL file: \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if count == 0 { break }
            bytes += chunk[..<count]
            if bytes.count > maxBytes {
                throw ACLFileError(path: path, line: nil, message: "the ACL file is larger than \(maxBytes >> 20) MiB")
            }
        }
        if ferror(file) != 0 {
            throw ACLFileError(path: path, line: nil, message: "cannot read the ACL file: \(String(cString: strerror(errno)))")
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `text` to `path` atomically (a temporary file beside it, fsynced, renamed over it), readable by the
    /// owner only: it holds password hashes.
    public static func write(_ text: String, to path: String) throws(ACLFileError) {
        let temporary = path + ".tmp-\(getpid())"
        func failure(_ what: String) -> ACLFileError {
            ACLFileError(path: path, line: nil, message: "\(what): \(String(cString: strerror(errno)))")
        }
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw failure("cannot create \(temporary)") }
        var ok = fchmod(descriptor, 0o600) == 0  // the umask cannot widen it, but an existing file's mode could
        let bytes = Array(text.utf8)
        var written = 0
        while ok && written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { Glibc_write(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { ok = false } else { written += count }
        }
        ok = ok && fsync(descriptor) == 0
        let savedError = errno
        close(descriptor)
        guard ok else {
            errno = savedError
            let error = failure("cannot write \(temporary)")
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let error = failure("cannot rename \(temporary) over the ACL file")
            unlink(temporary)
            throw error
        }
        // The rename is durable once the directory is synced.
        let directory = path.contains("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) : "."
        let directoryDescriptor = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }
}

@inline(__always)
private func Glibc_write(_ descriptor: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    write(descriptor, buffer, count)
}

extension Substring {
    func trimmingBlanks() -> Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" || first == "\r" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\r" { text = text.dropLast() }
        return text
    }
}
