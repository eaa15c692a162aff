import KVStore
import NIOCore
import NIOPosix

/// Commits the store once for every connection of one event loop that has replies waiting for durability.
///
/// A connection whose replies acknowledge writes hands them over with ``enqueue(_:)`` at the end of its read.
/// The commit runs as a task after the loop's current pass, so it covers every write that arrived in that pass
/// on every connection of the loop; with `--sync always` the fsync runs on the thread pool, and connections
/// that enqueue meanwhile wait for the next commit (which then covers all of them). Commits from several loops
/// share fsyncs in the store itself.
///
/// Confined to its event loop: every method is called on it (asserted). `@unchecked Sendable` only so that the
/// server can hand each loop its committer when it sets up a connection.
final class GroupCommitter: @unchecked Sendable {
    private let eventLoop: any EventLoop
    private let store: KVStore
    private let threadPool: NIOThreadPool
    private var waiting: [(Result<Void, any Error>) -> Void] = []
    private var scheduled = false
    private var committing = false

    init(eventLoop: any EventLoop, store: KVStore, threadPool: NIOThreadPool) {
        self.eventLoop = eventLoop
        self.store = store
        self.threadPool = threadPool
    }

    /// Calls `done` on the event loop once every write made so far is durable (or the commit failed).
    func enqueue(_ done: @escaping (Result<Void, any Error>) -> Void) {
        eventLoop.assertInEventLoop()
        waiting.append(done)
        scheduleIfNeeded()
    }

    private func scheduleIfNeeded() {
        guard !scheduled, !committing, !waiting.isEmpty else { return }
        scheduled = true
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.execute { bound.value.commit() }
    }

    private func commit() {
        scheduled = false
        let batch = waiting
        waiting = []
        guard store.syncPolicy == .always else {
            // Without fsync a commit is one write(2): cheaper to do here than to hand to another thread.
            let result = Result { try self.store.commit() }
            for done in batch { done(result) }
            return
        }
        committing = true
        let store = self.store
        let bound = NIOLoopBound((self, batch), eventLoop: eventLoop)
        threadPool.runIfActive(eventLoop: eventLoop) { try store.commit() }.whenComplete { result in
            let (committer, batch) = bound.value
            committer.committing = false
            for done in batch { done(result) }
            committer.scheduleIfNeeded()
        }
    }
}
