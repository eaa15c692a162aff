import KVStore
import NIOCore

/// Commits the store once for every connection of one event loop that has replies waiting for durability.
///
/// A connection whose replies acknowledge writes hands them over with ``enqueue(_:)`` at the end of its read.
/// The commit runs as a task after the loop's current pass, so it covers every write that arrived in that pass
/// on every connection of the loop: one `write(2)` and, with `--sync always`, one fsync for all of them. It runs
/// on the loop itself, as Redis's `appendfsync always` does: handing the fsync to another thread measured
/// slower (two thread hand-offs per batch), and while it runs there is nothing else this loop's waiting clients
/// could be given. Commits from several loops share fsyncs in the store itself.
///
/// Confined to its event loop: every method is called on it (asserted). `@unchecked Sendable` only so that the
/// server can hand each loop its committer when it sets up a connection.
final class GroupCommitter: @unchecked Sendable {
    let eventLoop: any EventLoop
    private let store: KVStore
    /// With `--sync-replicas N`, replies also wait until N replicas acknowledged the batch.
    private let replication: ReplicationController
    /// The connections waiting, each with its pipeline context: references rather than closures, so that a
    /// connection's turn in a commit allocates nothing.
    private var waiting: [(handler: ConnectionHandler, context: ChannelHandlerContext)] = []
    private var scheduled = false

    init(eventLoop: any EventLoop, store: KVStore, replication: ReplicationController) {
        self.eventLoop = eventLoop
        self.store = store
        self.replication = replication
    }

    /// Calls `handler.commitFinished` on the event loop once every write made so far is durable (or the commit
    /// failed).
    func enqueue(_ handler: ConnectionHandler, context: ChannelHandlerContext) {
        eventLoop.assertInEventLoop()
        waiting.append((handler, context))
        guard !scheduled else { return }
        scheduled = true
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.execute { bound.value.commit() }
    }

    private func commit() {
        scheduled = false
        var batch: [(handler: ConnectionHandler, context: ChannelHandlerContext)] = []
        swap(&batch, &waiting)
        var result = Result { try store.commit() }
        if case .success = result, let refusal = replication.membership?.writeRefusal() {
            // Fencing: this node cannot prove it is still the primary, so it acknowledges nothing more; another node may
            // already be. The writes stay in its log, unacknowledged, until it rejoins as a replica.
            result = .failure(WritesFenced(message: refusal))
        }
        let required = replication.settings.syncReplicas
        if case .success = result, required > 0, !replication.isReplica, let offset = store.replicationPosition?.offset,
           batch.contains(where: { $0.handler.awaitsWriteAcknowledgement }) {
            // Synchronous replicas: replies that acknowledge writes go once `required` replicas have every write up to
            // here (the batches that commit meanwhile wait for their own acknowledgements, so this is group commit too).
            // The others (a read that only waited for the fsync, a replica's own handshake) go now: a replica whose
            // PING reply waited for its own acknowledgement would wait for ever.
            let waitForReplicas = batch.filter { $0.handler.awaitsWriteAcknowledgement }
            for (handler, context) in batch where !handler.awaitsWriteAcknowledgement { handler.commitFinished(result, context: context) }
            let bound = NIOLoopBound(waitForReplicas, eventLoop: eventLoop)
            let replication = self.replication
            replication.primary.waitForAcknowledgements(count: required, offset: offset, timeout: nil, on: eventLoop).whenComplete { _ in
                // The wait may have outlasted this node's term: fenced now, it acknowledges nothing.
                let fenced = replication.membership?.writeRefusal().map { Result<Void, any Error>.failure(WritesFenced(message: $0)) }
                for (handler, context) in bound.value { handler.commitFinished(fenced ?? .success(()), context: context) }
            }
            return
        }
        for (handler, context) in batch { handler.commitFinished(result, context: context) }
        // Hand the emptied array back, keeping its capacity, unless a reply already queued a new batch.
        if waiting.isEmpty {
            batch.removeAll(keepingCapacity: true)
            waiting = batch
        }
    }
}
