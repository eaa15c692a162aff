// What replication needs of the engine: the stream position kept in the log, the stream rebuilt from the log, a
// replica's apply-and-record atomic across a crash, and a full copy swapped in whole.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Synchronization
import Testing
@testable import KVStore

/// Collects the stream bytes the write observer sees.
private final class StreamRecorder: Sendable {
    let bytes = Mutex<[UInt8]>([])
    func observe(_ records: UnsafeRawBufferPointer) {
        var converted: [UInt8] = []
        _ = ReplicationStream.convert(records: records, to: &converted)
        bytes.withLock { $0 += converted }
    }
}

private func open(_ directory: String, backlogBytes: Int = 0) throws -> KVStore {
    var options = KVStore.Options(syncPolicy: .always, compactionRatio: 0)
    options.replicationBacklogBytes = backlogBytes
    return try KVStore(directory: directory, options: options)
}

@Suite("Replication in the engine")
struct ReplicationStoreTests {
    @Test("a store that never replicated has no position and its log has no replication records")
    func noPositionUntilAsked() throws {
        try withTempDir { root in
            let store = try open(root)
            try store.set(bytes("a"), bytes("1"))
            #expect(store.replicationPosition == nil)
            #expect(store.statistics.lastSequence == 1)
            try store.close()
        }
    }

    @Test("a primary's offset counts the bytes of each write's command; the log alone gives it back after a restart and a checkpoint")
    func offsetsFromTheLog() throws {
        try withTempDir { root in
            let store = try open(root, backlogBytes: 1 << 20)
            let start = try store.becomePrimary()
            #expect(start.offset == 0 && start.replid.count == 40 && start.role == .primary)
            let recorder = StreamRecorder()
            try store.observeWrites { recorder.observe($0) }
            try store.set(bytes("key"), bytes("value"))
            try store.delete([bytes("key"), bytes("missing")])
            try store.multiSet([(bytes("a"), bytes("1")), (bytes("b"), bytes("22"))])
            try store.update(bytes("n")) { _ in .set(bytes("7")) }
            try store.appendStreamBytes(Array("*1\r\n$4\r\nping\r\n".utf8))
            try store.commit()
            let expected = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n" + "*2\r\n$3\r\nDEL\r\n$3\r\nkey\r\n"
                + "*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$2\r\n22\r\n" + "*3\r\n$3\r\nSET\r\n$1\r\nn\r\n$1\r\n7\r\n"
                + "*1\r\n$4\r\nping\r\n"
            #expect(recorder.bytes.withLock { $0 } == Array(expected.utf8))
            let position = try #require(store.replicationPosition)
            #expect(position.offset == Int64(expected.utf8.count))

            _ = try store.checkpoint()
            try store.set(bytes("after"), bytes("checkpoint"))
            try store.commit()
            let end = try #require(store.replicationPosition)
            try store.close()

            let reopened = try open(root, backlogBytes: 1 << 20)
            defer { try? reopened.close() }
            #expect(reopened.replicationPosition == end)
            // The whole stream since offset 0 comes back from the log, the file the checkpoint retired included.
            let rebuilt = try #require(try reopened.streamFromLog(replid: end.replid, after: 0, through: end.offset, limit: 1 << 20))
            #expect(rebuilt == Array((expected + "*3\r\n$3\r\nSET\r\n$5\r\nafter\r\n$10\r\ncheckpoint\r\n").utf8))
            // From the middle, at a command boundary; not from inside a command, nor from another stream.
            let tail = try #require(try reopened.streamFromLog(replid: end.replid, after: position.offset, through: end.offset, limit: 1 << 20))
            #expect(tail.count == Int(end.offset - position.offset))
            #expect(try reopened.streamFromLog(replid: end.replid, after: 5, through: end.offset, limit: 1 << 20) == nil)
            #expect(try reopened.streamFromLog(replid: ReplicationPosition.randomReplid(), after: 0, through: end.offset, limit: 1 << 20) == nil)
        }
    }

    @Test("without kept log files, a stream from before a checkpoint is not in the log any more")
    func checkpointWithoutBacklog() throws {
        try withTempDir { root in
            let store = try open(root)
            defer { try? store.close() }
            let start = try store.becomePrimary()
            try store.set(bytes("a"), bytes("1"))
            _ = try store.checkpoint()
            let end = try #require(store.replicationPosition)
            #expect(try store.streamFromLog(replid: start.replid, after: 0, through: end.offset, limit: 1 << 20) == nil)
            #expect(try store.streamFromLog(replid: start.replid, after: end.offset, through: end.offset, limit: 1 << 20) == [])
        }
    }

    @Test("a replica's writes after the last offset it recorded are dropped at open (its primary sends them again)")
    func unrecordedReplicaWritesAreCut() throws {
        try withTempDir { root in
            let replid = ReplicationPosition.randomReplid()
            let store = try open(root)
            try store.becomeReplica()
            try store.applyReplicated(replid: replid, offset: 100) {
                try store.set(bytes("counter"), bytes("1"))
            }
            // Applied, but the crash comes before the offset it reaches is recorded.
            try store.set(bytes("counter"), bytes("2"))
            try store.commit()
            try store.close()

            let reopened = try open(root)
            defer { try? reopened.close() }
            #expect(reopened.get(bytes("counter")) == bytes("1"))
            #expect(reopened.replicationPosition == ReplicationPosition(role: .replica, replid: replid, offset: 100))
            #expect(reopened.openReport.tornTail?.reason.contains("replica") == true)
        }
    }

    @Test("promotion keeps the old stream as replid2, so the old primary's replicas continue from here")
    func promotion() throws {
        try withTempDir { root in
            let store = try open(root)
            defer { try? store.close() }
            let replid = ReplicationPosition.randomReplid()
            try store.applyReplicated(replid: replid, offset: 500) { try store.set(bytes("k"), bytes("v")) }
            let promoted = try store.becomePrimary()
            #expect(promoted.role == .primary && promoted.replid != replid)
            #expect(promoted.replid2 == replid && promoted.secondOffset == 500 && promoted.offset == 500)
            #expect(promoted.canContinue(replid: replid, offset: 500))
            #expect(!promoted.canContinue(replid: replid, offset: 501))
            try store.set(bytes("k2"), bytes("v2"))
            let end = try #require(store.replicationPosition)
            #expect(end.offset == 500 + Int64(ReplicationStream.setLength(keyCount: 2, valueCount: 2)))
            // A replica of the old primary at the promotion point gets the new primary's writes from the log.
            #expect(try store.streamFromLog(replid: replid, after: 500, through: end.offset, limit: 1 << 20)?.count == Int(end.offset - 500))
        }
    }

    @Test("a full copy replaces everything at once, with its position; a power loss before the switch leaves the old data")
    func replaceContents() throws {
        try withTempDir { root in
            let store = try open(root)
            try store.set(bytes("old"), bytes("1"))
            try store.commit()
            let replacement = KVStore.Replacement()
            try replacement.set(bytes("new"), bytes("2"))
            let position = ReplicationPosition(role: .replica, replid: ReplicationPosition.randomReplid(), offset: 42)
            try store.replaceContents(with: replacement, position: position)
            #expect(store.get(bytes("old")) == nil && store.get(bytes("new")) == bytes("2"))
            try store.close()
            let reopened = try open(root)
            #expect(contents(reopened) == [bytes("new"): bytes("2")])
            #expect(reopened.replicationPosition == position)
            try reopened.close()

            // The same on a disk that loses power while the image is written: the old contents and position stay.
            let disk = FaultInjectionFileSystem()
            let faulty = try KVStore(directory: root, options: KVStore.Options(syncPolicy: .always, compactionRatio: 0, fileSystem: disk))
            let other = KVStore.Replacement()
            try other.set(bytes("other"), bytes("3"))
            disk.inject(.fsync, errno: EIO)
            #expect(throws: (any Error).self) {
                try faulty.replaceContents(with: other, position: ReplicationPosition(role: .replica, replid: ReplicationPosition.randomReplid(), offset: 7))
            }
            disk.simulateCrash()
            try? faulty.close()  // releases the lock; nothing more reaches the disk
            let after = try open(root)
            defer { try? after.close() }
            #expect(contents(after) == [bytes("new"): bytes("2")])
            #expect(after.replicationPosition == position)
        }
    }
}
