#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import KVStore
import Synchronization

/// Ctrl-C while a long operation runs: a SIGINT handler that only counts, read by the operation's watcher.
///
/// Installed without SA_RESTART, as the line editor's own handler is (which it replaces), so that a Ctrl-C at the
/// prompt still makes the editor's read return. Only the counter is touched in the handler: an atomic add, which
/// is async-signal-safe.
public enum InterruptSignal {
    /// Installs the counting handler for SIGINT; the default action (ending the process) is gone from then on.
    /// - Returns: false if `sigaction` failed (Ctrl-C then does what it did before).
    @discardableResult
    public static func install() -> Bool {
        _ = count  // the counter exists before the handler can touch it (no lazy initialization in a handler)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in interruptCount.add(1, ordering: .relaxed) }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        return sigaction(SIGINT, &action, nil) == 0
    }

    /// Ctrl-Cs seen since the handler was installed.
    public static var count: Int { interruptCount.load(ordering: .relaxed) }
}

private let interruptCount = Atomic<Int>(0)

/// The progress line on standard error: drawn by a ``LongOperation``'s watcher, erased by whoever writes anything
/// else to the terminal first (``writeAll(_:_:)``), so replies and errors do not land in the middle of a bar.
enum ProgressLine {
    /// The descriptor the bar is drawn on while it is shown; -1 when nothing is shown (read without a lock by every
    /// write, so that output with no bar never waits on one).
    private static let shownOn = Atomic<Int32>(-1)
    /// Serializes drawing and erasing. Never held while other output is written: a write blocked on a full pipe must
    /// not hold up the other stream.
    private static let drawing = Mutex(())

    /// Erases the bar, if one is shown, then runs `body` (a write).
    static func withLineCleared<T>(_ body: () -> T) -> T {
        if shownOn.load(ordering: .acquiring) >= 0 {
            drawing.withLock { _ in
                let fd = shownOn.exchange(-1, ordering: .acquiringAndReleasing)
                if fd >= 0 { rawWrite(fd, "\r\u{1B}[K") }
            }
        }
        return body()
    }

    /// Draws `text` in place of the previous bar on `fd`.
    static func draw(_ text: String, on fd: Int32) {
        drawing.withLock { _ in
            rawWrite(fd, "\r" + text + "\u{1B}[K")
            shownOn.store(fd, ordering: .releasing)
        }
    }

    private static func rawWrite(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return write(fd, base + done, raw.count - done)
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }  // a terminal that went away: the bar is not worth an error
            done += n
        }
    }
}

/// Runs long work (`:rebuild`, `:source`, `:compact`, `:backup`, `:check`, `kvsh check`, `kvsh restore`, `kvsh
/// backup`) so that it can be watched and stopped: after half a second a progress bar on standard error (a
/// terminal only; nothing in pipes), redrawn in place, with done/total, rate and time left; and Ctrl-C (once
/// ``InterruptSignal`` is installed) cancels it through its ``OperationControl``.
public enum LongOperation {
    /// How long work runs before its bar appears: quick commands never flash one.
    static let quietPeriod = Duration.milliseconds(500)
    static let redrawInterval = DispatchTimeInterval.milliseconds(100)

    /// Runs `body` under a fresh ``OperationControl`` (or the enclosing one: work nested in a `:source` shares its
    /// script's control and bar). Ctrl-C makes the store work inside throw ``StoreError/interrupted(operation:undone:)``.
    /// - Parameter title: what the bar calls the work (`:rebuild`).
    public static func run<T>(_ title: String, errorFD: Int32 = STDERR_FILENO, _ body: () throws -> T) throws -> T {
        if OperationControl.current != nil { return try body() }
        let control = OperationControl()
        let watcher = ProgressWatcher(title: title, control: control, errorFD: errorFD,
                                      drawsBar: isatty(errorFD) == 1 && !terminalIsDumb)
        watcher.start()
        defer { watcher.stop() }
        return try control.run(body)
    }

    /// TERM=dumb: no cursor movement, so no bar.
    static var terminalIsDumb: Bool {
        guard let term = getenv("TERM") else { return true }
        let name = String(cString: term)
        return name.isEmpty || name == "dumb"
    }
}

/// Watches one operation from a timer: turns Ctrl-C into a cancel, and draws the bar.
/// Its mutable state is touched only on `queue` (the timer's handler), after `start` and before `stop`.
private final class ProgressWatcher: @unchecked Sendable {
    let title: String
    let control: OperationControl
    let errorFD: Int32
    let drawsBar: Bool
    let queue = DispatchQueue(label: "kvsh.progress")
    let started = ContinuousClock.now
    let interruptsBefore = InterruptSignal.count
    private var timer: DispatchSourceTimer?
    /// Where the current stage started, for its rate.
    private var stageNumber = -1
    private var stageStarted = ContinuousClock.now
    private var drawn = false

    init(title: String, control: OperationControl, errorFD: Int32, drawsBar: Bool) {
        self.title = title
        self.control = control
        self.errorFD = errorFD
        self.drawsBar = drawsBar
    }

    func start() {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + LongOperation.redrawInterval, repeating: LongOperation.redrawInterval)
        timer.setEventHandler { [self] in tick() }
        self.timer = timer
        timer.resume()
    }

    /// Stops the timer (waiting out a tick in progress) and erases the bar.
    func stop() {
        timer?.cancel()
        queue.sync {}
        if drawn { ProgressLine.withLineCleared {} }
    }

    private func tick() {
        if InterruptSignal.count != interruptsBefore { control.cancel() }
        guard drawsBar, ContinuousClock.now - started >= LongOperation.quietPeriod else { return }
        let progress = control.progress
        if progress.number != stageNumber {
            stageNumber = progress.number
            stageStarted = .now
        }
        let text = ProgressText.line(title: title, progress: progress, elapsed: ContinuousClock.now - stageStarted,
                                     cancelling: control.isCancelled, width: terminalWidth())
        ProgressLine.draw(text, on: errorFD)
        drawn = true
    }

    private func terminalWidth() -> Int {
        var size = winsize()
        guard ioctl(errorFD, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
        return Int(size.ws_col)
    }
}

/// The words of the bar, separate from the drawing so they can be tested.
enum ProgressText {
    /// `:rebuild  applying big.json  [#######.............]  35%  3.3 MB/9.5 MB  4.1 MB/s  2s left  Ctrl-C cancels`,
    /// within `width - 3` columns (room for the `^C` the terminal echoes, which must not wrap the row): the bar
    /// narrows, then goes, before any words do.
    static func line(title: String, progress: OperationControl.Progress, elapsed: Duration, cancelling: Bool,
                     width: Int) -> String {
        var before = [title]
        if !progress.stage.isEmpty { before.append(progress.stage + (progress.item.isEmpty ? "" : " " + progress.item)) }
        var after: [String] = []
        let done = progress.total > 0 ? min(progress.done, progress.total) : progress.done
        var fraction: Double?
        if progress.total > 0 {
            fraction = Double(done) / Double(progress.total)
            after.append(String(Int((fraction ?? 0) * 100)) + "%")
            after.append(bytes(done) + "/" + bytes(progress.total))
        } else if done > 0 {
            after.append(bytes(done))
        }
        var rate: String?
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        if seconds > 0.2 && done > 0 {
            let perSecond = Double(done) / seconds
            rate = bytes(Int(perSecond)) + "/s"
            if progress.total > 0 { after.append(duration(Double(progress.total - done) / perSecond) + " left") }
        }
        let hint = cancelling ? "cancelling..." : "Ctrl-C cancels"
        let limit = max(width - 3, 10)
        let words = (before + after.prefix(2) + (rate.map { [$0] } ?? []) + after.dropFirst(2) + [hint]).joined(separator: "  ")
        if let fraction {
            // "  [" + cells + "]": as many cells as fit, at most 20, at least 5.
            let cells = min(20, limit - words.count - 4)
            if cells >= 5 {
                let filled = Int(fraction * Double(cells))
                let bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: cells - filled) + "]"
                return (before + [bar] + after.prefix(2) + (rate.map { [$0] } ?? []) + after.dropFirst(2) + [hint])
                    .joined(separator: "  ")
            }
        }
        if words.count <= limit { return words }
        // Narrower still: the rate goes, then the end is cut.
        return String((before + after + [hint]).joined(separator: "  ").prefix(limit))
    }

    static func bytes(_ count: Int) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(count)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        if unit == 0 { return "\(count) B" }
        return String(Int(value * 10) / 10) + "." + String(Int(value * 10) % 10) + " " + units[unit]
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let whole = Int(seconds.rounded(.up))
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return "\(whole / 60)m\(format2(whole % 60))s" }
        return "\(whole / 3600)h\(format2(whole / 60 % 60))m"
    }

    private static func format2(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
}
