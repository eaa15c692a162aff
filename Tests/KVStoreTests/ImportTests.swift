// The import (`:rebuild PATH`, KVSH.REBUILD PATH): regular files only, all or nothing, bounded memory.

import Foundation
import KVTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
@testable import KVStore

/// Runs `body` on a thread and waits at most `seconds` for it: a call that hangs fails the test instead of the
/// suite. `unblock` runs if the wait times out, to let the stuck thread go (opening a FIFO's other end, say).
private func finishes(within seconds: Int, _ what: String, unblock: () -> Void = {}, sourceLocation: SourceLocation = #_sourceLocation,
                      _ body: @escaping @Sendable () -> Void) -> Bool {
    let done = DispatchSemaphore(value: 0)
    Thread {
        body()
        done.signal()
    }.start()
    if done.wait(timeout: .now() + .seconds(seconds)) == .success { return true }
    Issue.record("\(what) did not return within \(seconds) s (it blocks)", sourceLocation: sourceLocation)
    unblock()
    _ = done.wait(timeout: .now() + .seconds(seconds))
    return false
}

/// A thread-safe box for what a background call returned.
private final class Outcome: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Error?
    var error: Error? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// One JSON line of a Go StorageEngine log.
private func goLine(_ operation: String, _ key: String, _ value: String? = nil) -> String {
    let valuePart = value.map { ",\"value\":\"\($0)\"" } ?? ""
    return "{\"operation\":\"\(operation)\",\"key\":\"\(key)\"\(valuePart)}\n"
}

@Suite("Import: regular files, all or nothing, bounded memory")
struct ImportTests {
    @Test("a FIFO, a device or a socket is refused at once with a clear error, and nothing is imported",
          arguments: ["fifo", "device"])
    func nonRegularFilesAreRefused(kind: String) throws {
        try withTempDir { root in
            let path: String
            if kind == "fifo" {
                path = root + "/pipe"
                #expect(mkfifo(path, 0o600) == 0)
            } else {
                path = "/dev/null"
            }
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            let outcome = Outcome()
            let returned = finishes(within: 10, "importing a \(kind)", unblock: {
                // The import is stuck opening the FIFO for reading: a writer lets it go.
                let writer = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                if writer >= 0 { close(writer) }
            }) {
                do {
                    _ = try LogImporter.importLog(at: path, into: store)
                } catch {
                    outcome.error = error
                }
            }
            guard returned else { return }
            let message = outcome.error.map { "\($0)" } ?? "no error"
            let word = kind == "fifo" ? "a FIFO" : "a character device"
            #expect(message == "'\(path)' is not a regular file (it is \(word)); kvsh reads scripts and logs from regular files only",
                    "\(message)")
            #expect(store.count == 0)
        }
    }

    @Test("a key above the limit on line 2 of a JSON log imports nothing, and the error names line 2")
    func tooLargeKeyImportsNothing() throws {
        try withTempDir { root in
            let path = root + "/go.log"
            let big = String(repeating: "k", count: LogFormat.maxKeySize + 1)
            try writeFile(path, bytes(goLine("SET", "a", "1") + goLine("SET", big, "2") + goLine("SET", "c", "3")))
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            let error = storeError { _ = try LogImporter.importLog(at: path, into: store) }
            #expect(error?.description == "\(path): line 2: key of \(LogFormat.maxKeySize + 1) bytes is larger than the limit of "
                        + "\(LogFormat.maxKeySize) bytes; nothing was imported", "\(String(describing: error))")
            #expect(store.count == 0, "line 1 was imported")
            #expect(store.statistics.lastSequence == 0)
        }
    }

    @Test("a kvsh log whose second record holds a key above the limit imports nothing; the error names the offset")
    func tooLargeKeyInKVSHLog() throws {
        try withTempDir { root in
            let path = root + "/crafted.log"
            var log = LogFormat.fileHeader(firstSequence: 1)
            LogFormat.appendSet(key: bytes("a"), value: bytes("1"), sequence: 1, to: &log)
            let second = log.count
            LogFormat.appendSet(key: [UInt8](repeating: 0x6B, count: LogFormat.maxKeySize + 1), value: bytes("2"), sequence: 2, to: &log)
            try writeFile(path, log)
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            let error = storeError { _ = try LogImporter.importLog(at: path, into: store) }
            #expect(error?.description == "\(path): offset \(second): key of \(LogFormat.maxKeySize + 1) bytes is larger than the "
                        + "limit of \(LogFormat.maxKeySize) bytes; nothing was imported", "\(String(describing: error))")
            #expect(store.count == 0, "the first record was imported")
        }
    }

    @Test("a 1 GiB sparse file (no newline) is refused at line 1 without reading it into memory")
    func sparseFileIsRefusedAtLineOne() throws {
        try withTempDir { root in
            let path = root + "/sparse.log"
            let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
            #expect(fd >= 0)
            #expect(ftruncate(fd, 1 << 30) == 0)
            close(fd)
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            let error = storeError { _ = try LogImporter.importLog(at: path, into: store) }
            guard case .badImport(let file, let line, _)? = error else {
                Issue.record("expected badImport, got \(String(describing: error))")
                return
            }
            #expect(file == path)
            #expect(line == 1)
            #expect(store.count == 0)
        }
    }

    @Test("a large valid JSON log imports every entry")
    func largeJSONLogImports() throws {
        try withTempDir { root in
            let path = root + "/go.log"
            var text = ""
            for i in 0..<50_000 { text += goLine("SET", "key\(i)", String(repeating: "v", count: i % 50)) }
            for i in stride(from: 0, to: 50_000, by: 2) { text += goLine("DELETE", "key\(i)") }
            try writeFile(path, bytes(text))
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            let summary = try LogImporter.importLog(at: path, into: store)
            #expect(summary.sets == 50_000)
            #expect(summary.deletes == 25_000)
            #expect(store.count == 25_000)
            #expect(store.get(bytes("key49999")) == bytes(String(repeating: "v", count: 49)))
        }
    }
}

@Suite("Cancelling maintenance")
struct CancellationTests {
    @Test("after cancelMaintenance, an import, a check, a checkpoint and a backup stop and change nothing; writes go on")
    func cancelledWorkChangesNothing() throws {
        try withTempDir { root in
            let path = root + "/go.log"
            try writeFile(path, bytes(goLine("SET", "a", "1") + goLine("SET", "b", "2")))
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            try store.set(bytes("mine"), bytes("x"))
            store.cancelMaintenance()
            let imported = storeError { _ = try LogImporter.importLog(at: path, into: store) }
            #expect(imported == .cancelled(operation: "the import of '\(path)'"))
            #expect(imported?.description.contains("it changed nothing") == true)
            #expect(storeError { _ = try store.checkpoint() } == .cancelled(operation: "the maintenance command"))
            #expect(storeError { _ = try store.check() } == .cancelled(operation: "the maintenance command"))
            #expect(storeError { _ = try store.backup(to: root + "/backup.kvbak") } == .cancelled(operation: "the maintenance command"))
            #expect(!FileManager.default.fileExists(atPath: root + "/backup.kvbak"))
            #expect(!FileManager.default.fileExists(atPath: root + "/backup.kvbak.tmp"))
            #expect(listDirectory(root + "/target").allSatisfy { !$0.hasSuffix(".tmp") })
            try store.set(bytes("after"), bytes("y"))
            try store.commit()
            expectContents(store, equal: [bytes("mine"): bytes("x"), bytes("after"): bytes("y")])
        }
    }
}
