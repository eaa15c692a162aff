// The store on a faulty disk (FaultInjectionFileSystem): failed fsyncs disable writes, and a simulated power loss
// keeps every write `--sync always` acknowledged.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Testing
@testable import KVStore

private func key(_ number: Int) -> [UInt8] { bytes("key-\(number)") }
private func value(_ number: Int) -> [UInt8] { bytes("value-\(number)-" + String(repeating: "x", count: number % 50)) }

/// The key of the encrypted runs of the power-loss tests.
private let testKey = EncryptionKey.random()

/// Opens a store in `directory` on `fileSystem`, encrypted with `testKey` when `encrypted`.
private func openStore(_ directory: String, _ syncPolicy: KVStore.SyncPolicy, on fileSystem: any FileSystem,
                       encrypted: Bool = false) throws -> KVStore {
    var options = KVStore.Options(syncPolicy: syncPolicy, compactionRatio: 0, fileSystem: fileSystem)
    if encrypted { options.keyring = Keyring(current: testKey) }
    return try KVStore(directory: directory, options: options)
}

/// The keys of `acknowledged` missing, or holding another value, once `directory` is reopened on the real file system.
private func lostAfterReopen(_ directory: String, acknowledged: [Int], encrypted: Bool = false) throws -> [Int] {
    let reopened = try openStore(directory, .always, on: POSIXFileSystem(), encrypted: encrypted)
    defer { try? reopened.close() }
    return acknowledged.filter { reopened.get(key($0)) != value($0) }
}

@Suite("Fault injection")
struct FaultInjectionTests {
    @Test("a failed fdatasync disables writes with its cause; reads go on; close() reports it")
    func failedFsyncDisablesWrites() throws {
        try withTempDir { root in
            let disk = FaultInjectionFileSystem()
            let store = try openStore(root + "/data", .always, on: disk)
            try store.set(key(1), value(1))
            try store.commit()
            try store.set(key(2), value(2))
            disk.inject(.fdatasync, errno: EIO)
            #expect(throws: StoreError.io(operation: "fdatasync", path: root + "/data/000001.log", errno: EIO)) {
                try store.commit()
            }
            #expect(disk.injectedFaults == 1)
            // Every later write is refused with the cause, even though the disk works again.
            let cause = "\(StoreError.io(operation: "fdatasync", path: root + "/data/000001.log", errno: EIO))"
            #expect(throws: StoreError.writesDisabled(cause: cause)) { try store.set(key(3), value(3)) }
            #expect(throws: StoreError.writesDisabled(cause: cause)) { try store.delete([key(1)]) }
            #expect(throws: StoreError.writesDisabled(cause: cause)) { try store.commit() }
            #expect(throws: StoreError.writesDisabled(cause: cause)) { _ = try store.checkpoint() }
            // Reads go on, and see what was applied; nothing waits for a sync that cannot come.
            #expect(store.get(key(1)) == value(1))
            #expect(store.get(key(2)) == value(2))
            #expect(!store.hasUnsyncedWrites)
            #expect(throws: StoreError.writesDisabled(cause: cause)) { try store.close() }
            try store.close()  // once reported, closing again does nothing
        }
    }

    @Test("a write that fails part way (a full disk) disables writes; the store reopens without the torn record")
    func shortWriteOnFullDisk() throws {
        try withTempDir { root in
            let disk = FaultInjectionFileSystem()
            let store = try openStore(root + "/data", .always, on: disk)
            try store.set(key(1), value(1))
            try store.commit()
            try store.set(key(2), value(2))
            disk.inject(.write, errno: ENOSPC, partial: 7)
            #expect(throws: StoreError.io(operation: "write", path: root + "/data/000001.log", errno: ENOSPC)) {
                try store.commit()
            }
            #expect(throws: StoreError.self) { try store.set(key(3), value(3)) }
            #expect(throws: StoreError.self) { try store.close() }
            let reopened = try KVStore(directory: root + "/data", syncPolicy: .always)
            defer { try? reopened.close() }
            #expect(reopened.get(key(1)) == value(1))
            #expect(reopened.get(key(2)) == nil)
            #expect(reopened.openReport.tornTail?.droppedBytes == 7)
        }
    }

    @Test("the background fsync of --sync everysec: its failure disables writes too")
    func everysecFailure() throws {
        try withTempDir { root in
            let disk = FaultInjectionFileSystem()
            let store = try openStore(root + "/data", .everysec, on: disk)
            try store.set(key(1), value(1))
            disk.inject(.fdatasync, errno: EIO, sticky: true)
            #expect(throws: StoreError.self) { try store.syncInBackground() }
            #expect(throws: StoreError.self) { try store.set(key(2), value(2)) }
            #expect(store.get(key(1)) == value(1))
            #expect(throws: StoreError.self) { try store.close() }
        }
    }

    @Test("the fault file system's crash drops what was not fsynced, and names whose directory was not fsynced")
    func crashDropsUnsyncedData() throws {
        try withTempDir { root in
            let disk = FaultInjectionFileSystem()
            let synced = try disk.open(root + "/synced", flags: O_WRONLY | O_CREAT, mode: 0o600)
            try Array("durable".utf8).withUnsafeBytes { try disk.write(synced, $0, path: "synced") }
            try disk.fsync(synced, path: "synced")
            try disk.fsyncDirectory(root)
            try Array(" and lost".utf8).withUnsafeBytes { try disk.write(synced, $0, path: "synced") }
            let fresh = try disk.open(root + "/fresh", flags: O_WRONLY | O_CREAT, mode: 0o600)
            try Array("never in a directory".utf8).withUnsafeBytes { try disk.write(fresh, $0, path: "fresh") }
            try disk.fsync(fresh, path: "fresh")
            disk.close(fresh)
            disk.simulateCrash()
            disk.close(synced)
            #expect(listDirectory(root) == ["synced"])
            #expect(try disk.status(ofPath: root + "/synced").size == "durable".utf8.count)
            #expect(throws: StoreError.self) { _ = try disk.open(root + "/later", flags: O_WRONLY | O_CREAT, mode: 0o600) }
        }
    }

    /// Drives writes and commits, crashes, and counts the acknowledged writes lost. `.always` must lose none;
    /// `.none` (replies after `write(2)`, before any fsync) must lose some: the control that shows the test can
    /// catch a commit that acknowledges before fsync.
    @Test("power loss: every write --sync always acknowledged survives; with --sync none some are lost (plain and encrypted)",
          arguments: [KVStore.SyncPolicy.always, .none], [false, true])
    func powerLoss(policy: KVStore.SyncPolicy, encrypted: Bool) throws {
        try withTempDir { root in
            let disk = FaultInjectionFileSystem()
            let store = try openStore(root + "/data", policy, on: disk, encrypted: encrypted)
            var acknowledged: [Int] = []
            for number in 0..<300 {
                try store.set(key(number), value(number))
                if number % 3 == 2 || number % 7 == 0 {
                    try store.commit()  // returning is the acknowledgement
                    acknowledged = Array(0...number)
                }
            }
            try store.set(key(1000), value(1000))  // never committed: may be lost either way
            disk.simulateCrash()
            _ = try? store.close()
            let lost = try lostAfterReopen(root + "/data", acknowledged: acknowledged, encrypted: encrypted)
            #expect(acknowledged.count > 250)
            switch policy {
            case .always:
                #expect(lost.count == 0, "\(lost.count) acknowledged writes lost at a power loss: \(lost.prefix(10))")
            case .none, .everysec:
                #expect(lost.count > 0, "--sync none lost nothing: the crash did not drop unsynced data")
            }
        }
    }

    @Test("power loss at each step of a checkpoint, with later writes unsynced: nothing acknowledged is lost (plain and encrypted)",
          arguments: CheckpointStep.allCases, [false, true])
    func powerLossDuringCheckpoint(step: CheckpointStep, encrypted: Bool) throws {
        try withTempDir { root in
            let disk = FaultInjectionFileSystem()
            let store = try openStore(root + "/data", .always, on: disk, encrypted: encrypted)
            for number in 0..<100 { try store.set(key(number), value(number)) }
            try store.commit()
            _ = try store.checkpoint()  // an older image and log, for the next checkpoint to replace
            for number in 100..<200 { try store.set(key(number), value(number)) }
            try store.commit()
            try store.delete([key(5)])
            try store.commit()
            struct Stop: Error {}
            store.checkpointHook.withLock { hook in
                hook = { reached in if reached == step { throw Stop() } }
            }
            for number in 200..<210 { try store.set(key(number), value(number)) }  // committed by the checkpoint
            #expect(throws: Stop.self) { _ = try store.checkpoint() }
            for number in 210..<220 { try store.set(key(number), value(number)) }  // never committed
            disk.simulateCrash()
            _ = try? store.close()
            let acknowledged = (0..<210).filter { $0 != 5 }
            #expect(try lostAfterReopen(root + "/data", acknowledged: acknowledged, encrypted: encrypted) == [])
            let reopened = try openStore(root + "/data", .always, on: POSIXFileSystem(), encrypted: encrypted)
            defer { try? reopened.close() }
            #expect(reopened.get(key(5)) == nil, "an acknowledged delete came back")
        }
    }

    @Test("power loss after the Nth sync of a checkpoint fails: the store reopens with everything acknowledged",
          arguments: [FaultInjectionFileSystem.Operation.fsync, .fdatasync, .directorySync], [1, 2, 3])
    func failedSyncDuringCheckpoint(operation: FaultInjectionFileSystem.Operation, nth: Int) throws {
        for encrypted in [false, true] { try failedSyncDuringCheckpoint(operation: operation, nth: nth, encrypted: encrypted) }
    }

    private func failedSyncDuringCheckpoint(operation: FaultInjectionFileSystem.Operation, nth: Int, encrypted: Bool) throws {
        try withTempDir { root in
            let disk = FaultInjectionFileSystem()
            let store = try openStore(root + "/data", .always, on: disk, encrypted: encrypted)
            for number in 0..<50 { try store.set(key(number), value(number)) }
            try store.commit()
            _ = try store.checkpoint()
            for number in 50..<100 { try store.set(key(number), value(number)) }
            try store.commit()
            disk.inject(operation, nth: nth, errno: EIO, sticky: true)
            _ = try? store.checkpoint()
            disk.simulateCrash()
            _ = try? store.close()
            #expect(try lostAfterReopen(root + "/data", acknowledged: Array(0..<100), encrypted: encrypted) == [])
        }
    }
}
