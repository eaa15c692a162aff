// A replica on a faulty disk never acknowledges what its disk did not take.

#if canImport(Glibc)
import Glibc
#endif
import KVTestSupport
import Testing
@testable import KVServer
@testable import KVStore

@Suite("Replication faults")
struct ReplicaFaultTests {
    @Test("a replica whose fsync fails never acknowledges the writes it could not make durable")
    func failedFsyncIsNeverAcknowledged() throws {
        let primary = try TestServer()
        defer { primary.stop() }
        let disk = FaultInjectionFileSystem()
        let replica = try TestServer(fileSystem: disk) { $0.replication.replicaOf = ("127.0.0.1", primary.port) }
        defer { replica.stop() }
        let client = try primary.connect()
        #expect(try client.call("SET", "a", "1") == .simple("OK"))
        #expect(try client.call("WAIT", "1", "20000") == .integer(1))

        disk.inject(.fdatasync, errno: EIO, sticky: true)
        #expect(try client.call("SET", "b", "2") == .simple("OK"))
        #expect(try client.call("WAIT", "1", "1500") == .integer(0))
        // The primary's view: the replica's acknowledged offset stays before the write.
        guard case .bulk(let info) = try client.call("INFO", "replication") else { Issue.record("INFO is not a bulk string"); return }
        let text = String(decoding: info, as: UTF8.self)
        let offset = text.split(separator: "\r\n").first { $0.hasPrefix("master_repl_offset:") }.map { String($0.dropFirst(19)) }
        #expect(offset != nil)
        #expect(!text.contains("offset=\(offset ?? "")"), "\(text)")
        // The replica's store refuses writes from then on, and its link stays down (it does not reconnect and claim
        // the offset it applied in memory).
        #expect(replica.store.writeFailure != nil)
        #expect(try client.call("WAIT", "1", "1500") == .integer(0))
    }
}
