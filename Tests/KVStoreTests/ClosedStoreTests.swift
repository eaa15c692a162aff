import KVTestSupport
import Testing
@testable import KVStore

@Suite("A closed store")
struct ClosedStoreTests {
    /// A write after `close()` would never reach the log, so it must be refused rather than silently dropped.
    @Test("a write after close() is refused, never silently dropped")
    func writeAfterClose() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root)
            try store.set(bytes("before"), bytes("1"))
            try store.close()
            #expect(throws: StoreError.closed) { try store.set(bytes("after"), bytes("2")) }
            #expect(throws: StoreError.closed) { try store.delete([bytes("before")]) }
            #expect(throws: StoreError.closed) { try store.commit() }
            let reopened = try KVStore(directory: root)
            defer { try? reopened.close() }
            #expect(reopened.get(bytes("before")) == bytes("1"))
            #expect(reopened.get(bytes("after")) == nil)
        }
    }
}

@Suite("Torn tails that contain record-like bytes")
struct EmbeddedRecordTests {
    /// Values are arbitrary bytes, so a value may hold a well-formed kvsh record, e.g. a copy of another store's
    /// log. When a crash tears the write of such a value after the embedded record, the search for "a valid
    /// record after the damage" must not take the embedded record (numbered below the damaged one) for data.
    @Test("a torn write of a value that embeds a kvsh log is still a torn tail")
    func tornValueEmbeddingALog() throws {
        try withTempDir { root in
            // Another store's log, to be stored as a value.
            let other = root + "/other"
            do {
                let store = try KVStore(directory: other)
                try store.set(bytes("inner"), bytes("record"))
                try store.set(bytes("inner2"), bytes("record2"))
                try store.close()
            }
            let embedded = try readFile(logPath(other))
            let directory = root + "/s"
            let prefixSize: Int
            do {
                let store = try KVStore(directory: directory)
                try store.set(bytes("k"), bytes("v"))
                try store.commit()
                prefixSize = store.statistics.logBytes
                try store.set(bytes("backup"), embedded)
                try store.close()
            }
            let full = try readFile(logPath(directory))
            // Cut the last record after the embedded log's first record, before the end of the value.
            let cut = full.count - 10
            try writeFile(logPath(directory), Array(full[..<cut]))
            let store = try KVStore(directory: directory)
            defer { try? store.close() }
            #expect(store.openReport.tornTail?.offset == prefixSize)
            #expect(store.get(bytes("k")) == bytes("v"))
            #expect(store.get(bytes("backup")) == nil)
        }
    }
}
