#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Testing
import KVStore
@testable import KVShell
@testable import KVCommands
@testable import RESP

func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

// MARK: Temporary directories and files

func writeFile(_ path: String, _ contents: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    try #require(fd >= 0, "open \(path) failed: errno \(errno)")
    defer { close(fd) }
    try writeAll(fd: fd, contents)
}

func writeAll(fd: Int32, _ contents: [UInt8]) throws {
    var done = 0
    while done < contents.count {
        let n = contents.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        try #require(n > 0, "write failed: errno \(errno)")
        done += n
    }
}

/// Reads what is available on `fd` without blocking (a pipe's read end with O_NONBLOCK) or up to its end.
func readAvailable(_ fd: Int32) -> [UInt8] {
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        result.append(contentsOf: chunk[..<n])
    }
    return result
}

/// Where a session's output or errors go: a pipe (small outputs) or a temporary file (any size).
final class Capture {
    let writeFD: Int32
    private let readFD: Int32

    /// A pipe whose read end does not block.
    init() throws {
        var fds: [Int32] = [-1, -1]
        try #require(pipe(&fds) == 0, "pipe failed")
        readFD = fds[0]
        writeFD = fds[1]
        _ = fcntl(readFD, F_SETFL, fcntl(readFD, F_GETFL) | O_NONBLOCK)
    }

    /// A file at `path`, read back from where the previous read ended.
    init(file path: String) throws {
        writeFD = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        readFD = open(path, O_RDONLY)
        try #require(writeFD >= 0 && readFD >= 0, "open \(path) failed")
    }

    /// Everything written since the last call.
    func take() -> [UInt8] { readAvailable(readFD) }
    func takeText() -> String { text(take()) }

    func close() {
        Glibc.close(writeFD)
        Glibc.close(readFD)
    }
}

/// A store in a temporary directory and a session whose output and errors are captured.
final class Harness {
    let directory: String
    let store: KVStore
    let session: Session
    let out: Capture
    let err: Capture

    init(directory: String, format: OutputFormat, sync: KVStore.SyncPolicy, files: Bool, sharedOutput: Bool) throws {
        self.directory = directory
        store = try KVStore(directory: directory + "/data", syncPolicy: sync)
        out = files ? try Capture(file: directory + "/stdout") : try Capture()
        err = sharedOutput ? out : (files ? try Capture(file: directory + "/stderr") : try Capture())
        session = Session(store: store, format: format, outputFD: out.writeFD, errorFD: err.writeFD)
    }

    /// Runs `line` as if it came from `origin`; returns what execute returned.
    @discardableResult
    func run(_ line: String, _ origin: Session.Origin = .interactive) -> Bool {
        bytes(line).withUnsafeBytes { session.execute(line: $0, origin: origin) }
    }

    @discardableResult
    func run(bytes line: [UInt8], _ origin: Session.Origin = .interactive) -> Bool {
        line.withUnsafeBytes { session.execute(line: $0, origin: origin) }
    }

    /// Flushes the session and returns the new standard output.
    func output() -> String {
        session.flush()
        return out.takeText()
    }

    func outputBytes() -> [UInt8] {
        session.flush()
        return out.take()
    }

    /// Flushes the session and returns the new standard error.
    func errors() -> String {
        session.flush()
        return err.takeText()
    }

    func finish() {
        session.flush()
        try? store.close()
        out.close()
        if err !== out { err.close() }
    }
}

/// Runs `body` with a fresh harness and tears it down (flush, close, remove the directory) afterwards.
func withSession<R>(format: OutputFormat = .human, sync: KVStore.SyncPolicy = .always, files: Bool = false,
                    sharedOutput: Bool = false, _ body: (Harness) throws -> R) throws -> R {
    try withTempDir { directory in
        let harness = try Harness(directory: directory, format: format, sync: sync, files: files, sharedOutput: sharedOutput)
        defer { harness.finish() }
        return try body(harness)
    }
}

/// Runs the whole of `script` through ScriptRunner from a pipe (the script must fit in the pipe).
func runScriptFromPipe(_ script: [UInt8], name: String? = nil, session: Session) throws {
    var fds: [Int32] = [-1, -1]
    try #require(pipe(&fds) == 0)
    defer { close(fds[0]) }
    try writeAll(fd: fds[1], script)
    close(fds[1])
    try ScriptRunner.run(fd: fds[0], name: name, session: session)
}
