import Dispatch
import Synchronization
import KVTestSupport
import Testing
@testable import KVStore

/// KVStore promises that every method may be called from any thread, and that concurrent committers share
/// fsyncs. These tests assert only on final states, which do not depend on how the threads interleave.
@Suite("Concurrent use")
struct ConcurrencyTests {
    @Test("threads writing and committing at once: unique sequence numbers, every write durable")
    func concurrentWriters() throws {
        try withTempDir { root in
            let threads = 4, perThread = 300
            let sequences = Synchronization.Mutex<[UInt64]>([])
            let failures = Atomic<Int>(0)
            do {
                let store = try KVStore(directory: root, syncPolicy: .always)
                DispatchQueue.concurrentPerform(iterations: threads) { thread in
                    var mine: [UInt64] = []
                    for i in 0..<perThread {
                        do {
                            mine.append(try store.set(bytes("t\(thread)-\(i)"), bytes("v\(i)")))
                            if i % 10 == 9 { try store.commit() }
                            _ = store.get(bytes("t\((thread + 1) % threads)-\(i)"))
                        } catch {
                            failures.add(1, ordering: .relaxed)
                        }
                    }
                    sequences.withLock { $0 += mine }
                }
                try store.commit()
                #expect(store.statistics.syncedSequence == UInt64(threads * perThread))
                try store.close()
            }
            #expect(failures.load(ordering: .relaxed) == 0)
            #expect(sequences.withLock { $0.sorted() } == Array(1...UInt64(threads * perThread)))
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            #expect(store.count == threads * perThread)
            for thread in 0..<threads {
                for i in 0..<perThread { #expect(store.get(bytes("t\(thread)-\(i)")) == bytes("v\(i)")) }
            }
            let log = try parseLogFile(logPath(root))
            #expect(log.records.map(\.sequence) == Array(1...UInt64(threads * perThread)), "the log's order is the sequence order")
        }
    }

    @Test("threads deleting the same keys: each key is deleted exactly once")
    func concurrentDeletes() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            let keys = (0..<200).map { bytes("k\($0)") }
            for key in keys { try store.set(key, []) }
            let removed = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: 4) { thread in
                for (i, key) in keys.enumerated() {
                    let batch = [key, keys[(i + thread) % keys.count]]
                    if let count = try? store.delete(batch) { removed.add(count, ordering: .relaxed) }
                }
            }
            #expect(removed.load(ordering: .relaxed) == keys.count)
            #expect(store.count == 0)
        }
    }
}
