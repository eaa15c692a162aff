// Interrupting one operation (Ctrl-C in the shell) through an OperationControl: the store as before, and progress.

import Foundation
import KVTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
@testable import KVStore

/// What an import on another thread ended with.
private final class ImportResult: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Result<LogImporter.Summary, Error>?
    var result: Result<LogImporter.Summary, Error>? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

@Suite("Interrupting one operation: nothing half applied, progress reported")
struct InterruptionTests {
    @Test("revert puts back keys changed, added and deleted since the snapshot, as logged writes")
    func revertRestoresTheSnapshot() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root)
            for number in 0..<100 { try store.set(Array("key\(number)".utf8), Array("value\(number)".utf8)) }
            let model = contents(store)
            let snapshot = store.snapshot()
            try store.set(Array("key1".utf8), Array("changed".utf8))
            try store.set(Array("new".utf8), Array("added".utf8))
            _ = try store.delete([Array("key2".utf8), Array("key3".utf8)])
            let summary = try store.revert(to: snapshot)
            #expect(summary == KVStore.RevertSummary(restored: 3, removed: 1))
            expectContents(store, equal: model)
            try store.close()
            let reopened = try KVStore(directory: root)
            defer { try? reopened.close() }
            expectContents(reopened, equal: model, "the revert is durable")
        }
    }

    @Test("an import interrupted while it applies its source undoes what it applied")
    func interruptedImportIsUndone() throws {
        try withTempDir { root in
            let source = root + "/big.json"
            var text = ""
            for number in 0..<60_000 { text += "{\"operation\":\"SET\",\"key\":\"k\(number)\",\"value\":\"v\(number)\"}\n" }
            try Data(text.utf8).write(to: URL(fileURLWithPath: source))
            let store = try KVStore(directory: root + "/data")
            defer { try? store.close() }
            try store.set(Array("k5".utf8), Array("before".utf8))
            try store.set(Array("kept".utf8), Array("yes".utf8))
            let model = contents(store)
            let control = OperationControl()
            let outcome = ImportResult()
            let finished = DispatchSemaphore(value: 0)
            Thread {
                outcome.result = Result { try control.run { try LogImporter.importLog(at: source, into: store) } }
                finished.signal()
            }.start()
            // Waits (bounded) until some of the source has been applied, then interrupts.
            let deadline = ContinuousClock.now + .seconds(120)
            while outcome.result == nil && ContinuousClock.now < deadline {
                let progress = control.progress
                if progress.stage == "applying" && progress.done > 0 { break }
                sched_yield()
            }
            control.cancel()
            #expect(finished.wait(timeout: .now() + .seconds(120)) == .success)
            guard case .failure(StoreError.interrupted(let operation, let undone))? = outcome.result else {
                Issue.record("expected an interruption while applying, got \(String(describing: outcome.result))")
                return
            }
            #expect(operation.contains("big.json"))
            #expect(undone?.contains("were undone") == true, "\(String(describing: undone))")
            expectContents(store, equal: model)
        }
    }

    @Test("cancelled before it starts, a checkpoint, a backup, a check and a restore change nothing")
    func cancelledOperationsChangeNothing() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root + "/data")
            for number in 0..<1000 { try store.set(Array("key\(number)".utf8), [UInt8](repeating: 7, count: 300)) }
            try store.commit()
            let model = contents(store)
            let backup = root + "/backup.kvimg"
            _ = try store.backup(to: backup)
            let control = OperationControl()
            control.cancel()
            func isInterrupted(_ body: () throws -> Void) -> Bool {
                if case .interrupted? = storeError(body) { return true }
                return false
            }
            #expect(isInterrupted { _ = try control.run { try store.checkpoint() } })
            #expect(isInterrupted { _ = try control.run { try store.backup(to: root + "/other.kvimg") } })
            #expect(!fileExists(root + "/other.kvimg"))
            #expect(isInterrupted { _ = try control.run { try store.check() } })
            #expect(isInterrupted { _ = try control.run { try store.rebuild() } })
            #expect(isInterrupted { _ = try control.run { try KVStore.restore(backup: backup, into: root + "/restored", force: false) } })
            #expect(((try? DataDirectory.storeFiles(in: root + "/restored", fileSystem: POSIXFileSystem())) ?? []).isEmpty)
            expectContents(store, equal: model)
            try store.close()
            let reopened = try KVStore(directory: root + "/data")
            defer { try? reopened.close() }
            expectContents(reopened, equal: model)
        }
    }

    @Test("progress counts the bytes of each stage: the file read, the image written")
    func progressIsReported() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root + "/data")
            defer { try? store.close() }
            for number in 0..<2000 { try store.set(Array("key\(number)".utf8), [UInt8](repeating: 1, count: 500)) }
            let control = OperationControl()
            _ = try control.run { try store.backup(to: root + "/backup.kvimg") }
            var progress = control.progress
            #expect(progress.stage == "writing image")
            #expect(progress.item.hasPrefix("backup.kvimg"))
            #expect(progress.total >= 2000 * 500)
            #expect(progress.done >= progress.total * 9 / 10)
            _ = try control.run { try KVStore.restore(backup: root + "/backup.kvimg", into: root + "/restored", force: false) }
            #expect(control.progress.number > progress.number, "reading the backup and writing the store are stages")
            _ = try control.run { try store.check() }
            progress = control.progress
            #expect(progress.stage == "reading")
            #expect(progress.total > 0)
        }
    }
}
