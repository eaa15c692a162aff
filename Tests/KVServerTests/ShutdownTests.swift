#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Foundation
import KVServer
import Synchronization
import KVTestSupport
import Testing
@testable import KVStore
@testable import KVCommands
@testable import RESP

@Suite("Shutdown with maintenance running")
struct ShutdownTests {
    /// A KVSH.COMPACT whose image write runs "forever" (a checkpoint hook that works until it is cancelled, as a
    /// long image write does block by block): shutdown must still return, soon after its grace period, and the
    /// store must close with the writes acknowledged before.
    @Test("shutdown cancels a maintenance command still running when the grace period ends")
    func shutdownCancelsMaintenance() throws {
        let test = try TestServer()
        defer { test.stop() }
        let store = test.store
        let entered = DispatchSemaphore(value: 0)
        let giveUp = Atomic<Bool>(false)
        store.checkpointHook.withLock {
            $0 = { step in
                guard step == .imageWritten else { return }
                entered.signal()
                // Long work that checks for cancellation between blocks, as ImageFile.write does.
                while !giveUp.load(ordering: .relaxed) {
                    try store.maintenanceCancellation.check()
                    usleep(1000)
                }
            }
        }
        defer { giveUp.store(true, ordering: .relaxed) }  // should the test fail, let the hook go
        let client = try test.connect()
        #expect(try client.call("SET", "k", "v") == .simple("OK"))
        try client.send(encodeCommand("KVSH.COMPACT"))
        #expect(entered.wait(timeout: .now() + .seconds(20)) == .success, "the checkpoint did not start")

        let stopped = DispatchSemaphore(value: 0)
        let server = test.server
        Thread {
            server.shutdown(grace: .milliseconds(200))
            stopped.signal()
        }.start()
        let returned = stopped.wait(timeout: .now() + .seconds(30)) == .success  // a failure bound, not a timing assertion
        #expect(returned, "shutdown waited for the maintenance command instead of cancelling it")
        if !returned {
            giveUp.store(true, ordering: .relaxed)
            _ = stopped.wait(timeout: .now() + .seconds(30))
        }
        try store.close()
        let reopened = try KVStore(directory: test.directory + "/data")
        defer { try? reopened.close() }
        #expect(reopened.get(Array("k".utf8)) == Array("v".utf8))
        #expect(listDirectory(test.directory + "/data").allSatisfy { !$0.hasSuffix(".tmp") })
    }
}
