// The server on a faulty disk: a SET whose commit fails is never acknowledged, and a simulated power loss keeps
// every SET acknowledged under --sync always.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVServer
import KVStore
import KVTestSupport
import Testing

@Suite("Server on a faulty disk")
struct FaultInjectionServerTests {
    @Test("a SET whose commit fails gets no +OK: an error, then the connection is closed; later writes are refused")
    func failedCommitClosesConnection() throws {
        let disk = FaultInjectionFileSystem()
        let server = try TestServer(syncPolicy: .always, fileSystem: disk)
        defer { server.stop() }
        let client = try server.connect()
        #expect(try client.call("SET", "a", "1") == .simple("OK"))

        disk.inject(.fdatasync, errno: EIO)
        try client.send(encodeCommand("SET", "b", "2") + encodeCommand("GET", "a"))
        let rest = try client.readUntilClosed()
        #expect(!rest.text.contains("+OK"), "a write whose commit failed was acknowledged: \(escaped(rest))")
        #expect(rest.text.hasPrefix("-ERR write-ahead log failed"), "\(escaped(rest))")
        #expect(disk.injectedFaults == 1)

        let other = try server.connect()
        guard case .error(let message) = try other.call("SET", "c", "3") else {
            Issue.record("a write was accepted after a failed commit")
            return
        }
        #expect(message.contains("writes are disabled"))
        #expect(try other.call("GET", "a") == .text("1"))
    }

    /// Pipelined SETs from several clients; every `+OK` received is an acknowledgement. After a power loss,
    /// `.always` must have kept each one; `.none` (replies follow `write(2)`, not fsync) must have lost some, which
    /// shows the test catches a server that replies before fsync.
    @Test("power loss: every SET the server acknowledged under --sync always survives; under --sync none some are lost",
          arguments: [KVStore.SyncPolicy.always, .none])
    func powerLoss(policy: KVStore.SyncPolicy) throws {
        let disk = FaultInjectionFileSystem()
        let server = try TestServer(syncPolicy: policy, fileSystem: disk)
        defer { server.stop() }
        let clients = try (0..<3).map { _ in try server.connect() }
        var acknowledged: [String] = []
        for batch in 0..<20 {
            for (number, client) in clients.enumerated() {
                let keys = (0..<10).map { "k-\(number)-\(batch)-\($0)" }
                try client.send(keys.flatMap { encodeCommand("SET", $0, "v-" + $0) })
            }
            for (number, client) in clients.enumerated() {
                let keys = (0..<10).map { "k-\(number)-\(batch)-\($0)" }
                for (key, reply) in zip(keys, try client.replies(keys.count)) where reply == .simple("OK") {
                    acknowledged.append(key)
                }
            }
        }
        #expect(acknowledged.count == 600)
        disk.simulateCrash()
        try? server.store.close()
        let reopened = try KVStore(directory: server.directory + "/data", syncPolicy: .always)
        defer { try? reopened.close() }
        let lost = acknowledged.filter { reopened.get(Array($0.utf8)) != Array(("v-" + $0).utf8) }
        switch policy {
        case .always:
            #expect(lost.count == 0, "\(lost.count) acknowledged SETs lost at a power loss: \(lost.prefix(10))")
        case .none, .everysec:
            #expect(lost.count > 0, "--sync none lost nothing: the crash did not drop unsynced data")
        }
    }
}
