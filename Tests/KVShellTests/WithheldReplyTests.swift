// Replies withheld after a failed commit (ReplyWriter), on a store whose disk fails its fsync.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Testing
import KVStore
@testable import KVShell

@Suite("Withheld replies")
struct WithheldReplyTests {
    @Test("a commit that fails withholds the replies to its writes and reports why; later writes are refused")
    func failedCommitWithholdsReplies() throws {
        try withTempDir { root in
            let disk = FaultInjectionFileSystem()
            let store = try KVStore(directory: root + "/data", options: KVStore.Options(syncPolicy: .always, fileSystem: disk))
            defer { try? store.close() }
            let out = try Capture()
            let err = try Capture()
            defer { out.close(); err.close() }
            let session = Session(store: store, format: .human, outputFD: out.writeFD, errorFD: err.writeFD)
            func run(_ line: String) { bytes(line).withUnsafeBytes { _ = session.execute(line: $0, origin: .interactive) } }

            run("SET a 1")
            session.flush()
            #expect(out.takeText() == "OK\n")

            disk.inject(.fdatasync, errno: EIO)
            run("SET b 2")
            run("GET a")
            session.flush()
            #expect(out.takeText() == "", "replies acknowledging an unsynced write were printed")
            let log = root + "/data/000001.log"
            #expect(err.takeText() == "kvsh: ERR fdatasync '\(log)' failed: \(String(cString: strerror(EIO))); "
                    + "the replies to those writes were withheld\n")
            #expect(session.failedCommands == 1)

            // Writes are disabled for good; reads still answer.
            run("SET c 3")
            run("GET a")
            session.flush()
            #expect(out.takeText() == "\"1\"\n")
            #expect(err.takeText().contains("writes are disabled after a failed log write"))
            #expect(throws: StoreError.self) { try store.close() }
        }
    }
}
