#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVCommands
import KVStore
import RESP

/// Runs a script: lines from a file descriptor, each through a ``Session``.
///
/// Reads large chunks and splits them on newline bytes (libedit would make one `read(2)` per byte).
/// Before it blocks waiting for more input it flushes the session, so a program driving kvsh line by line
/// gets every reply (and every write it acknowledges is durable) before kvsh waits for the next line; lines
/// that arrive together are answered, and fsynced, together.
public enum ScriptRunner {
    static let chunkSize = 1 << 20

    /// Runs every line of `fd` until its end, `:quit`, or (with `session.bail`) the first failure.
    /// - Parameter name: the script's name in error messages; nil for standard input.
    public static func run(fd: Int32, name: String?, session: Session) throws {
        // A bigger pipe lets more lines arrive while an fsync runs, so more of them share the next one.
        // F_SETPIPE_SZ (Linux) is not exported to Swift; it fails harmlessly on anything but a pipe.
        _ = fcntl(fd, 1031 /* F_SETPIPE_SZ */, Int32(chunkSize))
        let failuresBefore = session.failedCommands
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var start = 0
        var end = 0
        var lineNumber = 0

        // Run under `LongOperation` (`:source` at the prompt): Ctrl-C stops the script between lines, and the bar
        // shows how much of the file has run.
        let control = OperationControl.current
        if let control {
            // A regular file's size is the total; a pipe's is unknown (the bar shows bytes read and the rate).
            var info = stat()
            let isFile = fstat(fd, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
            control.begin(stage: "running", item: name ?? "standard input", total: isFile ? Int(info.st_size) : 0)
        }
        var interrupted = false

        func shouldStop() -> Bool {
            if control?.isCancelled == true {
                interrupted = true
                return true
            }
            return session.quitRequested || (session.bail && session.failedCommands > failuresBefore)
        }

        while true {
            let stopped = buffer.withUnsafeBytes { raw -> Bool in
                guard let base = raw.baseAddress else { return false }
                while start < end, let newline = memchr(base + start, 0x0A, end - start) {
                    let lineEnd = base.distance(to: UnsafeRawPointer(newline))
                    lineNumber += 1
                    session.execute(line: UnsafeRawBufferPointer(rebasing: raw[start..<lineEnd]),
                                    origin: .script(name: name, line: lineNumber))
                    control?.advance(by: lineEnd + 1 - start)
                    start = lineEnd + 1
                    if shouldStop() { return true }
                }
                return false
            }
            if stopped {
                if interrupted {
                    session.flush()
                    throw ScriptInterrupted(lines: lineNumber)
                }
                break
            }
            if start > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    raw.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[start..<end]))
                }
                end -= start
                start = 0
            }
            if end == buffer.count {
                buffer.append(contentsOf: repeatElement(0, count: buffer.count))  // a line longer than the buffer
            }
            if !inputIsReady(fd) { session.startFlush() }
            let count = buffer.withUnsafeMutableBytes { raw in
                read(fd, UnsafeMutableRawBufferPointer(rebasing: raw[end...]).baseAddress, raw.count - end)
            }
            if count < 0 {
                if errno == EINTR { continue }
                session.flush()
                throw ScriptError(message: "reading \(name ?? "standard input") failed: \(String(cString: strerror(errno)))")
            }
            if count == 0 {
                if end > start {  // a last line without a newline
                    lineNumber += 1
                    buffer.withUnsafeBytes { raw in
                        _ = session.execute(line: UnsafeRawBufferPointer(rebasing: raw[start..<end]),
                                            origin: .script(name: name, line: lineNumber))
                    }
                }
                break
            }
            end += count
        }
        session.flush()
    }

    /// Whether a read would return at once (data or end of input) instead of blocking.
    private static func inputIsReady(_ fd: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }
}

/// Reading a script failed.
public struct ScriptError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Ctrl-C stopped a script (run under ``LongOperation``) after `lines` lines.
public struct ScriptInterrupted: Error, CustomStringConvertible {
    public let lines: Int
    public var description: String { "interrupted after line \(lines)" }
}
