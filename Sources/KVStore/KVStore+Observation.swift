/// What a store tells ``KVStore/Options/eventObserver`` about the work it does, for metrics and latency monitoring.
///
/// The observer is called synchronously on the thread that did the work (an event loop committing, the background
/// syncer, a maintenance thread), sometimes with the log's lock held: it must be quick and must not call back into
/// the store.
public enum StoreEvent: Sendable {
    /// One `write(2)` of the log: `records` records (a commit batch) in `bytes` bytes.
    case logWrite(records: Int, bytes: Int)
    /// One fsync (fdatasync) of the log, whether it succeeded or not.
    case fsync(Duration, succeeded: Bool)
    /// One checkpoint (`:compact`, `KVSH.COMPACT`, an automatic compaction).
    case checkpoint(Duration, succeeded: Bool)
    /// One backup (`:backup`, `KVSH.BACKUP`, a scheduled backup).
    case backup(Duration, succeeded: Bool)
}

extension KVStore {
    /// Runs `body`, telling the observer (if any) how long it took and whether it threw.
    func observed<T>(_ event: (Duration, Bool) -> StoreEvent, _ body: () throws -> T) throws -> T {
        guard let observer = options.eventObserver else { return try body() }
        let start = ContinuousClock.now
        do {
            let result = try body()
            observer(event(ContinuousClock.now - start, true))
            return result
        } catch {
            observer(event(ContinuousClock.now - start, false))
            throw error
        }
    }

    /// Why writes are refused after a failed write or fsync of the log (nil while they are accepted): the store
    /// stays in that state until it is closed and opened again.
    public var writeFailure: String? { state.withLock { $0.failure } }
}

extension KVStore {
    /// How many log files the data directory holds (the active one and any an unfinished checkpoint left); 0 if it
    /// cannot be listed.
    public var logSegments: Int {
        (try? DataDirectory.logFiles(in: directory, fileSystem: fileSystem).count) ?? 0
    }
}
