// Helpers for the end-to-end tests: find the built kvsh, run it on pipes or in a pseudo-terminal, and wait
// for what it prints with deadlines (a hang fails the test instead of blocking the suite).
//
// Every descriptor the harness opens is close-on-exec from the start (pipe2, O_CLOEXEC): tests run in
// parallel, and a pipe end leaked into another test's child would keep an EOF from ever arriving.

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - The binary

enum KVSHBinary {
    /// The kvsh executable: SwiftPM builds it into the same bin directory as the test bundle (the test target
    /// depends on it); `$KVSH_BINARY` is the fallback.
    static func path() throws -> String {
        try located.get()
    }

    private static let located: Result<String, HarnessError> = {
        var candidates: [String] = []
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append((executable as NSString).deletingLastPathComponent + "/kvsh")
        }
        candidates.append(Bundle.main.bundleURL.appendingPathComponent("kvsh").path)
        if let first = CommandLine.arguments.first, first.contains("/") {
            candidates.append((first as NSString).deletingLastPathComponent + "/kvsh")
        }
        if let fromEnvironment = ProcessInfo.processInfo.environment["KVSH_BINARY"], !fromEnvironment.isEmpty {
            candidates.append(fromEnvironment)
        }
        for candidate in candidates where isExecutableFile(candidate) {
            return .success(candidate)
        }
        return .failure(HarnessError(
            "the kvsh binary was not found (looked at \(candidates.joined(separator: ", "))); build it with "
                + "`swift build --build-tests` (the test target depends on the kvsh executable) or set KVSH_BINARY"))
    }()

    private static func isExecutableFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }
}

// MARK: - libc functions Swift's Glibc module does not export (they need _GNU_SOURCE or _XOPEN_SOURCE)

private enum LibC {
    static func function<T>(_ name: String, as type: T.Type) -> T {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0) /* RTLD_DEFAULT */, name) else {
            fatalError("libc has no \(name)")
        }
        return unsafeBitCast(symbol, to: type)
    }

    static let pipe2 = function("pipe2", as: (@convention(c) (UnsafeMutablePointer<Int32>?, Int32) -> Int32).self)
    static let grantpt = function("grantpt", as: (@convention(c) (Int32) -> Int32).self)
    static let unlockpt = function("unlockpt", as: (@convention(c) (Int32) -> Int32).self)
    static let ptsname_r = function("ptsname_r",
                                    as: (@convention(c) (Int32, UnsafeMutablePointer<CChar>?, Int) -> Int32).self)
    static let addchdir = function(
        "posix_spawn_file_actions_addchdir_np",
        as: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32).self)
    /// glibc ≥ 2.26: the child calls setsid() before the file actions run.
    static let POSIX_SPAWN_SETSID: Int32 = 0x80
}

/// Writing to a child that has exited must fail with EPIPE, not kill the test runner.
private let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

// MARK: - Spawning

/// How a child ended.
enum Termination: Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    init(waitStatus status: Int32) {
        let signal = status & 0x7F
        self = signal == 0 ? .exited((status >> 8) & 0xFF) : .signaled(signal)
    }

    var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .signaled(let signal): return "killed by signal \(signal)"
        }
    }
}

private func makePipe() throws -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    guard LibC.pipe2(&fds, O_CLOEXEC) == 0 else { throw HarnessError("pipe2: \(String(cString: strerror(errno)))") }
    return (fds[0], fds[1])
}

private func setNonBlocking(_ fd: Int32) {
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
}

/// posix_spawn of kvsh (or of `executable`) with default signal dispositions and an empty signal mask in the
/// child, as a shell would.
func spawn(executable: String? = nil, arguments: [String], environment: [String], directory: String?, newSession: Bool,
           fileActions configure: (inout posix_spawn_file_actions_t) -> Void) throws -> pid_t {
    _ = ignoreSIGPIPE
    let executable = try executable ?? KVSHBinary.path()
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    configure(&actions)
    if let directory { _ = LibC.addchdir(&actions, directory) }

    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGTSTP, SIGTTIN, SIGTTOU] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    var mask = sigset_t()
    sigemptyset(&mask)
    posix_spawnattr_setsigmask(&attributes, &mask)
    var flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
    if newSession { flags |= LibC.POSIX_SPAWN_SETSID }
    posix_spawnattr_setflags(&attributes, Int16(flags))

    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup($0) } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
    }
    var pid: pid_t = 0
    let error = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
    guard error == 0 else { throw HarnessError("posix_spawn \(executable): \(String(cString: strerror(error)))") }
    return pid
}

/// Reaps `pid` if it has exited by `deadline`.
func reap(_ pid: pid_t, by deadline: ContinuousClock.Instant) -> Termination? {
    while true {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid { return Termination(waitStatus: status) }
        if result < 0 && errno != EINTR { return nil }
        if ContinuousClock.now >= deadline { return nil }
        usleep(2_000)
    }
}

private func milliseconds(until deadline: ContinuousClock.Instant, atMost cap: Int32 = 100) -> Int32 {
    let left = deadline - ContinuousClock.now
    guard left > .zero else { return 0 }
    let (seconds, attoseconds) = left.components
    return Int32(min(Int64(cap), seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1))
}

/// Bytes shown with control characters escaped, for failure messages.
func escaped<C: Collection>(_ bytes: C, limit: Int = 2000) -> String where C.Element == UInt8 {
    var text = ""
    for byte in bytes.suffix(limit) {
        switch byte {
        case 0x0A: text += "\\n"
        case 0x0D: text += "\\r"
        case 0x1B: text += "\\e"
        case 0x5C: text += "\\\\"
        case 0x20...0x7E: text.unicodeScalars.append(Unicode.Scalar(byte))
        default: text += String(format: "\\x%02x", byte)
        }
    }
    return (bytes.count > limit ? "…" : "") + text
}

extension Array where Element == UInt8 {
    var text: String { String(decoding: self, as: UTF8.self) }
    /// Newline-separated lines, without the empty string after a final newline (empty lines are kept).
    var lines: [String] {
        var parts = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if parts.last == "" { parts.removeLast() }
        return parts
    }
}

// MARK: - A process on pipes

/// kvsh with stdin, stdout and stderr on pipes. All I/O goes through `poll` with deadlines, so input can be fed
/// while output is read (no deadlock on full pipes) and nothing blocks forever.
final class PipedProcess {
    let pid: pid_t
    let arguments: [String]
    private(set) var stdout: [UInt8] = []
    private(set) var stderr: [UInt8] = []
    private(set) var termination: Termination?
    private var stdinFD: Int32
    private var stdoutFD: Int32
    private var stderrFD: Int32
    private var pending: [UInt8] = []
    private var pendingOffset = 0
    private var closeInputWhenWritten = false

    /// Where stdout and stderr go instead of pipes, when the process was started with `outputFile`.
    let outputFile: String?

    /// - Parameter mergeStderr: send stderr into the stdout pipe (as `2>&1` does), to check how the two interleave.
    /// - Parameter executable: run this program instead of kvsh (`setpriv` to run kvsh as another user, `/bin/sh`
    ///   to set a limit first).
    /// - Parameter outputFile: append stdout and stderr to this file instead of pipes. For a long-lived process that
    ///   logs a lot (a cluster node, an etcd member): a pipe is only read while the test waits on this process, and
    ///   once its 64 KiB fill, the child blocks in its next log call, a hang the test would take for a bug.
    init(executable: String? = nil, arguments: [String], environment: [String], directory: String?, mergeStderr: Bool = false,
         outputFile: String? = nil) throws {
        let input = try makePipe()
        let output = try outputFile == nil ? makePipe() : (read: -1, write: -1)
        let errors = try outputFile == nil ? makePipe() : (read: -1, write: -1)
        self.arguments = arguments
        self.outputFile = outputFile
        do {
            pid = try spawn(executable: executable, arguments: arguments, environment: environment, directory: directory, newSession: false) {
                posix_spawn_file_actions_adddup2(&$0, input.read, 0)
                if let outputFile {
                    posix_spawn_file_actions_addopen(&$0, 1, outputFile, O_WRONLY | O_CREAT | O_APPEND, 0o600)
                    posix_spawn_file_actions_adddup2(&$0, 1, 2)
                } else {
                    posix_spawn_file_actions_adddup2(&$0, output.write, 1)
                    posix_spawn_file_actions_adddup2(&$0, mergeStderr ? output.write : errors.write, 2)
                }
            }
        } catch {
            [input.read, input.write, output.read, output.write, errors.read, errors.write].filter { $0 >= 0 }.forEach { _ = close($0) }
            throw error
        }
        [input.read, output.write, errors.write].filter { $0 >= 0 }.forEach { _ = close($0) }
        stdinFD = input.write
        stdoutFD = output.read
        stderrFD = errors.read
        [stdinFD, stdoutFD, stderrFD].filter { $0 >= 0 }.forEach(setNonBlocking)
    }

    /// What it wrote to stderr so far: the output file's contents when it has one.
    var errorOutput: [UInt8] {
        guard let outputFile else { return stderr }
        return (try? Data(contentsOf: URL(fileURLWithPath: outputFile))).map { [UInt8]($0) } ?? []
    }

    deinit {
        if termination == nil {
            _ = Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
        [stdinFD, stdoutFD, stderrFD].filter { $0 >= 0 }.forEach { _ = close($0) }
    }

    var isRunning: Bool {
        if termination != nil { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            termination = Termination(waitStatus: status)
            return false
        }
        return true
    }

    /// Queues bytes for stdin; they are written as the child reads them, during later waits.
    func send(_ bytes: [UInt8]) {
        pending.append(contentsOf: bytes)
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    /// Closes stdin once the queued input has been written.
    func closeInput() {
        closeInputWhenWritten = true
        if pendingOffset == pending.count { closeStdin() }
    }

    func signal(_ number: Int32) { _ = Glibc.kill(pid, number) }

    /// Does I/O until `condition` holds or `timeout` passes; returns whether it holds.
    @discardableResult
    func wait(timeout: Duration, until condition: (PipedProcess) -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition(self) {
            guard ContinuousClock.now < deadline, pump(until: deadline) else { return condition(self) }
        }
        return true
    }

    /// Waits until stdout holds `count` complete lines.
    @discardableResult
    func waitForLines(_ count: Int, timeout: Duration = .seconds(10)) -> Bool {
        wait(timeout: timeout) { $0.stdout.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) } >= count }
    }

    /// Writes the remaining input, reads stdout and stderr to their end and reaps the child.
    /// - Throws: if that takes longer than `timeout` (the child is then killed).
    @discardableResult
    func finish(timeout: Duration = .seconds(20)) throws -> Termination {
        if let termination, stdoutFD < 0, stderrFD < 0 { return termination }
        let deadline = ContinuousClock.now + timeout
        while stdoutFD >= 0 || stderrFD >= 0 {
            guard ContinuousClock.now < deadline, pump(until: deadline) else { break }
        }
        if let reaped = termination ?? reap(pid, by: deadline) {
            termination = reaped
            return reaped
        }
        _ = Glibc.kill(pid, SIGKILL)
        termination = reap(pid, by: ContinuousClock.now + .seconds(5))
        throw HarnessError("kvsh \(arguments.joined(separator: " ")) did not finish within \(timeout); "
                           + "stdout: \"\(escaped(stdout))\"; stderr: \"\(escaped(stderr))\"")
    }

    /// One poll round: writes queued input, reads output. Returns false when there is nothing left to wait on.
    private func pump(until deadline: ContinuousClock.Instant) -> Bool {
        var fds: [pollfd] = []
        if stdinFD >= 0 && pendingOffset < pending.count { fds.append(pollfd(fd: stdinFD, events: Int16(POLLOUT), revents: 0)) }
        if stdoutFD >= 0 { fds.append(pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)) }
        if stderrFD >= 0 { fds.append(pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0)) }
        if fds.isEmpty {
            if termination == nil { termination = reap(pid, by: deadline) }
            return false
        }
        let ready = poll(&fds, nfds_t(fds.count), milliseconds(until: deadline))
        if ready < 0 && errno != EINTR { return false }
        for entry in fds where entry.revents != 0 {
            if entry.fd == stdinFD {
                writePending()
            } else if entry.fd == stdoutFD {
                drain(&stdoutFD, into: &stdout)
            } else if entry.fd == stderrFD {
                drain(&stderrFD, into: &stderr)
            }
        }
        return true
    }

    private func writePending() {
        while pendingOffset < pending.count {
            let n = pending.withUnsafeBytes { Glibc.write(stdinFD, $0.baseAddress! + pendingOffset, $0.count - pendingOffset) }
            if n > 0 {
                pendingOffset += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && errno == EAGAIN {
                return
            } else {  // EPIPE: the child stopped reading
                pendingOffset = pending.count
                closeStdin()
                return
            }
        }
        pending.removeAll(keepingCapacity: true)
        pendingOffset = 0
        if closeInputWhenWritten { closeStdin() }
    }

    private func closeStdin() {
        if stdinFD >= 0 { _ = close(stdinFD) }
        stdinFD = -1
    }

    private func drain(_ fd: inout Int32, into buffer: inout [UInt8]) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while fd >= 0 {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                buffer.append(contentsOf: chunk[..<n])
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && errno == EAGAIN {
                return
            } else {
                _ = close(fd)
                fd = -1
            }
        }
    }
}

/// What a finished kvsh printed and how it ended.
struct RunResult {
    let termination: Termination
    let stdout: [UInt8]
    let stderr: [UInt8]
    var stdoutLines: [String] { stdout.lines }
    var stderrLines: [String] { stderr.lines }
    var stderrText: String { stderr.text }
    var summary: String { "\(termination); stdout \"\(escaped(stdout))\"; stderr \"\(escaped(stderr))\"" }
}

// MARK: - A process in a pseudo-terminal

/// The terminal settings tests compare (the fields of `termios`, without padding).
struct TerminalSettings: Equatable, CustomStringConvertible {
    let iflag, oflag, cflag, lflag: UInt32
    let controlCharacters: [UInt8]
    let inputSpeed, outputSpeed: UInt32

    init(_ t: termios) {
        iflag = t.c_iflag
        oflag = t.c_oflag
        cflag = t.c_cflag
        lflag = t.c_lflag
        controlCharacters = withUnsafeBytes(of: t.c_cc) { Array($0) }
        inputSpeed = t.c_ispeed
        outputSpeed = t.c_ospeed
    }

    var isCanonicalWithEcho: Bool { lflag & UInt32(ICANON) != 0 && lflag & UInt32(ECHO) != 0 }

    var description: String {
        "iflag \(String(iflag, radix: 8)) oflag \(String(oflag, radix: 8)) cflag \(String(cflag, radix: 8)) "
            + "lflag \(String(lflag, radix: 8)) cc \(controlCharacters) speed \(inputSpeed)/\(outputSpeed)"
    }
}

/// kvsh on a fresh pseudo-terminal (its controlling terminal, in its own session), as if started from a
/// terminal emulator. The test keeps the slave side open too, to read the terminal settings after kvsh exits.
final class TerminalSession {
    let pid: pid_t
    let master: Int32
    let slave: Int32
    /// The terminal's settings before kvsh started.
    let settingsBefore: TerminalSettings
    private(set) var output: [UInt8] = []
    /// Where `expect` searches from: just past the previous match.
    private var searchStart = 0
    private(set) var termination: Termination?

    /// - Parameter executable: run this program on the terminal instead of kvsh (`/bin/sh -c 'gen | kvsh'`).
    init(executable: String? = nil, arguments: [String], environment: [String], directory: String?, rows: UInt16 = 30,
         columns: UInt16 = 100) throws {
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard master >= 0 else { throw HarnessError("open /dev/ptmx: \(String(cString: strerror(errno)))") }
        var name = [CChar](repeating: 0, count: 256)
        guard LibC.grantpt(master) == 0, LibC.unlockpt(master) == 0, LibC.ptsname_r(master, &name, name.count) == 0 else {
            close(master)
            throw HarnessError("setting up the pseudo-terminal failed: \(String(cString: strerror(errno)))")
        }
        let slavePath = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        slave = open(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard slave >= 0 else {
            close(master)
            throw HarnessError("open \(slavePath): \(String(cString: strerror(errno)))")
        }
        var size = winsize(ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(master, UInt(TIOCSWINSZ), &size)
        var settings = termios()
        tcgetattr(slave, &settings)
        settingsBefore = TerminalSettings(settings)
        do {
            // After setsid the child opens the slave by name, which makes it the controlling terminal
            // (so Ctrl-C reaches kvsh as SIGINT), then uses it for stdin, stdout and stderr.
            pid = try spawn(executable: executable, arguments: arguments, environment: environment, directory: directory, newSession: true) {
                posix_spawn_file_actions_addopen(&$0, 0, slavePath, O_RDWR, 0)
                posix_spawn_file_actions_adddup2(&$0, 0, 1)
                posix_spawn_file_actions_adddup2(&$0, 0, 2)
            }
        } catch {
            close(master)
            close(slave)
            throw error
        }
        setNonBlocking(master)
    }

    deinit {
        if termination == nil {
            _ = Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
        close(master)
        close(slave)
    }

    /// The terminal's settings now.
    var currentSettings: TerminalSettings {
        var settings = termios()
        tcgetattr(slave, &settings)
        return TerminalSettings(settings)
    }

    var isRunning: Bool {
        if termination != nil { return false }
        termination = reap(pid, by: .now)
        return termination == nil
    }

    /// Resizes the terminal, as a window being resized does: the kernel sends SIGWINCH to kvsh.
    func resize(rows: UInt16, columns: UInt16) throws {
        var size = winsize(ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
        guard ioctl(master, UInt(TIOCSWINSZ), &size) == 0 else {
            throw HarnessError("resizing the terminal failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Types `text` (bytes as a keyboard would send them: "\r" for Enter, "\u{3}" for Ctrl-C).
    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var done = 0
        let deadline = ContinuousClock.now + .seconds(5)
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(master, $0.baseAddress! + done, $0.count - done) }
            if n > 0 {
                done += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) && ContinuousClock.now < deadline {
                var entry = pollfd(fd: master, events: Int16(POLLOUT), revents: 0)
                _ = poll(&entry, 1, 50)
                read(for: .zero)
            } else {
                throw HarnessError("writing to the terminal failed: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Waits until the terminal shows `needle` after the previous match; later searches start after this one.
    func expect(_ needle: String, timeout: Duration = .seconds(10), _ what: String = "") throws {
        let pattern = Array(needle.utf8)
        let deadline = ContinuousClock.now + timeout
        while true {
            if let range = find(pattern, from: searchStart) {
                searchStart = range.upperBound
                return
            }
            guard ContinuousClock.now < deadline else { break }
            read(until: deadline, wantMore: true)
        }
        throw HarnessError("\(what.isEmpty ? "" : what + ": ")the terminal did not show \"\(escaped(pattern))\" within "
                           + "\(timeout) (\(isRunning ? "kvsh still running" : "kvsh ended: \(termination!)")); "
                           + "output since the previous match: \"\(escaped(output[searchStart...]))\"")
    }

    /// Waits until kvsh sits in the line editor: its main thread blocked reading the terminal, and the terminal
    /// in the editor's raw mode. Keys sent before that are handled by the terminal's cooked mode instead (libedit
    /// prints the prompt before it switches modes), where Ctrl-D and Ctrl-C mean something else.
    func waitUntilEditing(timeout: Duration = .seconds(10)) throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            // Without access to /proc/PID/syscall (a hardened kernel), the terminal mode alone has to do.
            let syscall = try? String(contentsOfFile: "/proc/\(pid)/syscall", encoding: .utf8)
            // The editor waits in poll(2) on the terminal and its wake-up pipe, then reads a key.
            let reading = syscall.map { $0.hasPrefix("\(Self.readSyscall) 0x0 ") || $0.hasPrefix("\(Self.pollSyscall) ") } ?? true
            if reading && !currentSettings.isCanonicalWithEcho { return }
            guard isRunning else {
                throw HarnessError("kvsh ended (\(termination!)) instead of waiting for input; "
                                   + "output since the previous match: \"\(escaped(output[searchStart...]))\"")
            }
            guard ContinuousClock.now < deadline else {
                throw HarnessError("kvsh did not wait for terminal input in raw mode within \(timeout) (syscall: \(syscall ?? "?")); "
                                   + "output since the previous match: \"\(escaped(output[searchStart...]))\"")
            }
            read(for: .milliseconds(2))
        }
    }

    #if arch(x86_64)
    private static let readSyscall = 0
    private static let pollSyscall = 7
    #elseif arch(arm64)
    private static let readSyscall = 63
    private static let pollSyscall = 73  // ppoll: arm64 has no poll
    #endif

    /// Everything shown after the previous match, without consuming it.
    var unmatchedOutput: [UInt8] { Array(output[searchStart...]) }

    /// Reads what arrives during `duration` (to check that something does NOT appear).
    func read(for duration: Duration) {
        read(until: ContinuousClock.now + duration, wantMore: false)
    }

    /// Waits for kvsh to exit, reading the terminal meanwhile.
    func waitForExit(timeout: Duration = .seconds(10)) -> Termination? {
        let deadline = ContinuousClock.now + timeout
        while termination == nil {
            termination = reap(pid, by: .now)
            if termination != nil || ContinuousClock.now >= deadline { break }
            read(until: min(deadline, ContinuousClock.now + .milliseconds(20)), wantMore: false)
        }
        read(for: .zero)
        return termination
    }

    private func find(_ pattern: [UInt8], from start: Int) -> Range<Int>? {
        guard !pattern.isEmpty, output.count - start >= pattern.count else { return nil }
        for index in start...(output.count - pattern.count) where output[index] == pattern[0] {
            if output[index..<(index + pattern.count)].elementsEqual(pattern) { return index..<(index + pattern.count) }
        }
        return nil
    }

    /// Reads until `deadline`; with `wantMore`, returns as soon as a read brought new bytes.
    private func read(until deadline: ContinuousClock.Instant, wantMore: Bool) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        repeat {
            var entry = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, milliseconds(until: deadline))
            guard ready > 0 else { if ready < 0 && errno != EINTR { return }; continue }
            let n = chunk.withUnsafeMutableBytes { Glibc.read(master, $0.baseAddress, $0.count) }
            if n > 0 {
                output.append(contentsOf: chunk[..<n])
                if wantMore { return }
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                continue
            } else {
                return  // EIO: no process has the terminal open any more
            }
        } while ContinuousClock.now < deadline
    }
}

/// The size of a file in bytes, or -1 if it cannot be read.
func fileSize(_ path: String) -> Int {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : -1
}

/// The permission bits of a file, or nil if it does not exist.
func permissions(_ path: String) -> mode_t? {
    var info = stat()
    return stat(path, &info) == 0 ? info.st_mode & 0o777 : nil
}

// MARK: - A temporary directory per test

/// A fresh directory for one test (the data directory, HOME, scripts), removed when the test ends.
final class Sandbox {
    let root: String

    init() throws {
        var template = Array("/tmp/kvsh-e2e-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw HarnessError("mkdtemp: \(String(cString: strerror(errno)))") }
        root = String(cString: made)
    }

    deinit {
        if ProcessInfo.processInfo.environment["KVSH_E2E_KEEP"] == nil {
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    /// The data directory most tests use (not created: kvsh creates it).
    var dataDir: String { path("data") }

    func path(_ name: String) -> String { root + "/" + name }

    /// The inherited environment, with HOME here, a known locale and terminal, and no kvsh variables
    /// except those in `extra` (a nil value removes a variable).
    func environment(term: String = "dumb", _ extra: [String: String?] = [:]) -> [String] {
        var variables = ProcessInfo.processInfo.environment
        for name in ["KVSH_DATA_DIR", "KVSH_HISTFILE", "EDITRC", "INPUTRC"] { variables[name] = nil }
        variables["HOME"] = root
        variables["LANG"] = "C.UTF-8"
        variables["LC_ALL"] = nil
        variables["TERM"] = term
        for (name, value) in extra { variables[name] = value }
        return variables.map { "\($0.key)=\($0.value)" }
    }

    /// Runs kvsh with exactly `arguments` and `input` on stdin, to completion. Runs in the sandbox directory.
    func run(_ arguments: [String], input: [UInt8] = [], env: [String: String?] = [:], directory: String? = nil,
             mergeStderr: Bool = false, timeout: Duration = .seconds(20)) throws -> RunResult {
        try run(process: PipedProcess(arguments: arguments, environment: environment(env), directory: directory ?? root,
                                      mergeStderr: mergeStderr), input: input, timeout: timeout)
    }

    /// Runs kvsh with `arguments` as the user `nobody` (uid and gid 65534, no supplementary groups), from `/`: a
    /// second user of the machine, for the tests of what one user can do to another's store. Needs root.
    func runAsNobody(_ arguments: [String], input: [UInt8] = [], timeout: Duration = .seconds(20)) throws -> RunResult {
        let prefix = ["--reuid=65534", "--regid=65534", "--clear-groups", "--", try KVSHBinary.path()]
        return try run(process: PipedProcess(executable: "/usr/bin/setpriv", arguments: prefix + arguments,
                                             environment: environment(), directory: "/"),
                       input: input, timeout: timeout)
    }

    private func run(process: PipedProcess, input: [UInt8], timeout: Duration) throws -> RunResult {
        process.send(input)
        process.closeInput()
        let termination = try process.finish(timeout: timeout)
        return RunResult(termination: termination, stdout: process.stdout, stderr: process.stderr)
    }

    /// `kvsh --data-dir <dataDir> arguments...` with `script` on stdin.
    func kvsh(_ arguments: [String] = [], script: String = "", env: [String: String?] = [:]) throws -> RunResult {
        try run(["--data-dir", dataDir] + arguments, input: Array(script.utf8), env: env)
    }

    func kvsh(_ arguments: [String] = [], input: [UInt8]) throws -> RunResult {
        try run(["--data-dir", dataDir] + arguments, input: input)
    }

    /// Starts `kvsh --data-dir <dataDir> arguments...` with stdin left open.
    func start(_ arguments: [String] = []) throws -> PipedProcess {
        try PipedProcess(arguments: ["--data-dir", dataDir] + arguments, environment: environment(), directory: root)
    }

    /// Starts `kvsh --data-dir <dataDir> arguments...` on a new pseudo-terminal.
    func terminal(_ arguments: [String] = [], env: [String: String?] = [:]) throws -> TerminalSession {
        try TerminalSession(arguments: ["--data-dir", dataDir] + arguments, environment: environment(term: "xterm", env),
                            directory: root)
    }

    @discardableResult
    func write(_ name: String, _ contents: String) throws -> String {
        let file = path(name)
        try Data(contents.utf8).write(to: URL(fileURLWithPath: file))
        return file
    }

    /// The data directory's non-empty `*.log` files, in name order.
    func logFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dataDir)
            .filter { $0.hasSuffix(".log") }
            .sorted()
            .map { dataDir + "/" + $0 }
            .filter { fileSize($0) > 0 }
    }
}
