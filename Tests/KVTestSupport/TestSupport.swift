// What every test target needs: deterministic randomness and temporary directories. One copy, shared.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A tiny deterministic generator (SplitMix64), so every random test replays the same way.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension RandomNumberGenerator {
    /// `count` random bytes.
    public mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) }
    }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
}

/// The UTF-8 bytes of `text`.
public func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String

    public init(description: String) { self.description = description }
}

/// A fresh directory made by mkdtemp under /tmp, named after `prefix`.
public func makeTempDirectory(prefix: String = "kvsh-test") throws -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
    guard let made else { throw TestSupportError(description: "mkdtemp: \(String(cString: strerror(errno)))") }
    return String(cString: made)
}

/// Runs `body` with a fresh temporary directory and removes it (recursively) afterwards.
public func withTempDir<R>(_ body: (String) throws -> R) throws -> R {
    let path = try makeTempDirectory()
    defer { removeTree(path) }
    return try body(path)
}

/// `withTempDir` for async bodies.
public func withTempDirAsync<R>(_ body: (String) async throws -> R) async throws -> R {
    let path = try makeTempDirectory()
    defer { removeTree(path) }
    return try await body(path)
}

/// `rm -rf path`.
public func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        for name in listDirectory(path) { removeTree(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// The names in a directory, without `.` and `..`, sorted.
public func listDirectory(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

// MARK: - Memory probes

public enum Memory {
    /// Bytes the C heap has handed out (allocated chunks plus mmapped blocks), from glibc's `mallinfo2`; nil
    /// where it is missing. Counts reserved capacity that was never touched, which the RSS does not.
    public static func heapBytes() -> Int? {
        #if arch(x86_64)
        guard let address = mallinfo2Address, let symbol = UnsafeMutableRawPointer(bitPattern: address) else { return nil }
        // x86-64 SysV returns a struct this large through a hidden pointer passed as the first argument (rdi).
        typealias Function = @convention(c) (UnsafeMutableRawPointer) -> Void
        var info = MallInfo2()
        withUnsafeMutableBytes(of: &info) { unsafeBitCast(symbol, to: Function.self)($0.baseAddress!) }
        return info.uordblks + info.hblkhd
        #else
        // Elsewhere (AArch64 passes that pointer in x8, which a call from Swift cannot set) there is no probe.
        return nil
        #endif
    }

    /// `struct mallinfo2`: ten `size_t` fields.
    struct MallInfo2 {
        var arena = 0, ordblks = 0, smblks = 0, hblks = 0, hblkhd = 0
        var usmblks = 0, fsmblks = 0, uordblks = 0, fordblks = 0, keepcost = 0
    }

    private static let mallinfo2Address: Int? = {
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallinfo2").map { Int(bitPattern: $0) }
    }()
}

/// Bytes shown with control characters escaped, for failure messages.
public func escaped<C: Collection>(_ bytes: C, limit: Int = 400) -> String where C.Element == UInt8 {
    var text = ""
    for byte in bytes.prefix(limit) {
        switch byte {
        case 0x0A: text += "\\n"
        case 0x0D: text += "\\r"
        case 0x5C: text += "\\\\"
        case 0x20...0x7E: text.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let hex = String(byte, radix: 16)
            text += "\\x" + (hex.count == 1 ? "0" + hex : hex)
        }
    }
    return text + (bytes.count > limit ? "…" : "")
}
