#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import KVTestSupport
import Testing
import KVStore
@testable import KVShell
@testable import KVCommands
@testable import RESP

/// Lets a background thread run a harness command; the test thread only waits for it, then reads `result`.
private final class Background: @unchecked Sendable {
    let harness: Harness
    private let lock = NSLock()
    private var stored: Bool?
    init(_ harness: Harness) { self.harness = harness }
    var result: Bool? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

@Suite("Reading named files: regular files only")
struct SourceFileTests {
    /// `:source PATH` and `:rebuild PATH` on a FIFO fail at once, naming what the path is; the session goes on.
    @Test(":source and :rebuild on a FIFO fail at once with a clear error", arguments: [":source", ":rebuild"])
    func fifoIsRefused(command: String) throws {
        try withSession { h in
            let fifo = h.directory + "/pipe"
            #expect(mkfifo(fifo, 0o600) == 0)
            let background = Background(h)
            let done = DispatchSemaphore(value: 0)
            Thread {
                background.result = background.harness.run("\(command) \(fifo)")
                done.signal()
            }.start()
            if done.wait(timeout: .now() + .seconds(10)) == .timedOut {
                Issue.record("\(command) on a FIFO blocked")
                let writer = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)  // let the stuck open return
                if writer >= 0 { close(writer) }
                _ = done.wait(timeout: .now() + .seconds(10))
                return
            }
            #expect(background.result == false)
            let errors = h.errors()
            #expect(errors.contains("'\(fifo)' is not a regular file (it is a FIFO); kvsh reads scripts and logs from regular files only"),
                    "\(errors)")
            #expect(h.run("SET after 1"), "the session goes on")
        }
    }

    @Test(":source on a directory or a device is refused; a regular file runs")
    func directoryAndDeviceAreRefused() throws {
        try withSession { h in
            #expect(!h.run(":source \(h.directory)"))
            #expect(h.errors().contains("'\(h.directory)' is not a regular file (it is a directory)"))
            #expect(!h.run(":source /dev/null"))
            #expect(h.errors().contains("'/dev/null' is not a regular file (it is a character device)"))
            let script = h.directory + "/script.kv"
            try Data("SET s 1\n".utf8).write(to: URL(fileURLWithPath: script))
            #expect(h.run(":source \(script)"))
            #expect(h.store.get(bytes("s")) == bytes("1"))
        }
    }
}
