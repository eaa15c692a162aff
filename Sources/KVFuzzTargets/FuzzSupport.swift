// What every fuzz entry point shares: the violation it reports, deterministic chunking, scratch directories.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An invariant a fuzz entry point found broken: a wrong round trip, two decodings that disagree, a verdict that
/// contradicts the store. Errors a parser throws for bad input are never this: they are the expected outcome.
public struct FuzzViolation: Error, CustomStringConvertible {
    public let target: String
    public let description: String

    public init(_ target: String, _ description: String) {
        self.target = target
        self.description = "\(target): \(description)"
    }
}

/// A fuzz entry point: runs one input, throws ``FuzzViolation`` when an invariant breaks. It must not trap on
/// any input; a trap is a finding too (libFuzzer and AddressSanitizer report it).
public typealias FuzzEntryPoint = @Sendable (UnsafeRawBufferPointer) throws(FuzzViolation) -> Void

/// Every target by name: the name is also the corpus directory (`Fuzz/Corpus/<name>`) and, capitalised, the
/// libFuzzer executable (`Fuzz<Name>` in `Fuzz/Package.swift`).
public enum FuzzTargets {
    public static let all: [(name: String, run: FuzzEntryPoint)] = [
        ("RequestDecoder", requestDecoder),
        ("ReplyParser", replyParser),
        ("Tokenizer", tokenizer),
        ("JSONImport", jsonImport),
        ("LogReplay", logReplay),
        ("ImageRestore", imageRestore),
        ("RDBReader", rdbReader),
    ]

    /// The libFuzzer glue: runs `target` on the input and aborts, with the violation on stderr, when it throws,
    /// so that libFuzzer saves the input as a crash.
    public static func libFuzzerInput(_ target: FuzzEntryPoint, _ start: UnsafeRawPointer?, _ count: Int) -> Int32 {
        do {
            try target(UnsafeRawBufferPointer(start: count > 0 ? start : nil, count: count))
        } catch {
            let message = Array("FUZZ INVARIANT VIOLATED: \(error)\n".utf8)
            _ = message.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            abort()
        }
        return 0
    }
}

/// SplitMix64 seeded from the input itself, so that each input is always cut the same way.
struct InputRandom {
    var state: UInt64

    init(_ bytes: UnsafeRawBufferPointer, salt: UInt64 = 0) {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325 ^ salt  // FNV-1a
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        state = hash
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in `1...maximum`.
    mutating func size(_ maximum: Int) -> Int { Int(next() % UInt64(maximum)) + 1 }
}

/// `bytes` cut into pieces of 1 to `maximum` bytes, sizes drawn from `random`.
func pieces(_ bytes: [UInt8], maximum: Int, _ random: inout InputRandom) -> [ArraySlice<UInt8>] {
    var result: [ArraySlice<UInt8>] = []
    var offset = 0
    while offset < bytes.count {
        let size = min(bytes.count - offset, maximum == 1 ? 1 : random.size(maximum))
        result.append(bytes[offset..<(offset + size)])
        offset += size
    }
    return result
}

/// Printable ASCII as is, the rest escaped, cut after `limit` bytes: for violation messages.
func escaped<C: Collection>(_ bytes: C, limit: Int = 120) -> String where C.Element == UInt8 {
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

/// Scratch space for the file targets: a fresh directory (on /dev/shm when there is one: the store fsyncs, and
/// tmpfs makes that free), removed with everything in it afterwards. Failing to make one is a violation of the
/// harness, not of the code under test, but it has nowhere else to go.
func withScratchDirectory<R>(_ target: String, _ body: (String) throws(FuzzViolation) -> R) throws(FuzzViolation) -> R {
    var info = stat()
    let base = stat("/dev/shm", &info) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    var template = Array("\(base)/kvsh-fuzz-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
    guard let made else { throw FuzzViolation(target, "harness: mkdtemp failed: \(String(cString: strerror(errno)))") }
    let path = String(cString: made)
    defer { removeTree(path) }
    return try body(path)
}

/// Writes `bytes` to a new file at `path` (mode 0600).
func writeFile(_ path: String, _ bytes: UnsafeRawBufferPointer, target: String) throws(FuzzViolation) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { throw FuzzViolation(target, "harness: cannot create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var offset = 0
    while offset < bytes.count {
        let written = write(fd, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
        guard written > 0 else { throw FuzzViolation(target, "harness: cannot write \(path): \(String(cString: strerror(errno)))") }
        offset += written
    }
}

func makeDirectory(_ path: String, target: String) throws(FuzzViolation) {
    guard mkdir(path, 0o700) == 0 else { throw FuzzViolation(target, "harness: mkdir \(path): \(String(cString: strerror(errno)))") }
}

/// `rm -rf path`.
func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        if let dir = opendir(path) {
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name != "." && name != ".." { names.append(name) }
            }
            closedir(dir)
            for name in names { removeTree(path + "/" + name) }
        }
        rmdir(path)
    } else {
        unlink(path)
    }
}
