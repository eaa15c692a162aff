// Undo for work the user interrupts: a snapshot of the key space taken before it, and a revert that writes back,
// as new writes, every key that differs from the snapshot. Interrupting an import or a sourced script then leaves
// the store as it was, durably (the revert is logged like any write), instead of half applied.

/// The store's key space at one moment, from ``KVStore/snapshot()``. A copy-on-write copy of the index: taking it
/// costs next to nothing, and holding it keeps only the entries that writes replace since.
public struct StoreSnapshot {
    let index: OrderedIndex
}

extension KVStore {
    /// What ``revert(to:)`` wrote back.
    public struct RevertSummary: Sendable, Equatable {
        /// Keys set back to their old value, or back into existence.
        public var restored = 0
        /// Keys that did not exist in the snapshot, deleted.
        public var removed = 0
        public var keys: Int { restored + removed }
    }

    /// The key space as it is now, to ``revert(to:)`` to later.
    public func snapshot() -> StoreSnapshot {
        state.withLock { StoreSnapshot(index: $0.index) }
    }

    /// Makes every key as it was in `snapshot`, with ordinary writes (logged, durable after ``commit()``): keys
    /// changed or added since are set back or deleted, keys deleted since are set again. Keys no write touched
    /// since cost a comparison each: entries are immutable, so an untouched key still has the very same entry.
    ///
    /// Meant for one writer (the shell undoing its own command): a write another thread makes meanwhile to a key
    /// the snapshot holds is overwritten.
    public func revert(to snapshot: StoreSnapshot) throws -> RevertSummary {
        let now = state.withLock { $0.index }
        var summary = RevertSummary()
        var failure: Error?
        // Keys changed or added since the snapshot.
        now.forEach(from: nil, to: nil) { entry in
            let old = entry.withKeyBytes { snapshot.index.entry(for: $0) }
            guard old !== entry else { return true }
            do {
                if let old {
                    try old.withKeyBytes { key in try old.withValueBytes { value in _ = try set(key, value) } }
                    summary.restored += 1
                } else {
                    _ = try delete([entry.key])
                    summary.removed += 1
                }
            } catch {
                failure = error
            }
            return failure == nil
        }
        if let failure { throw failure }
        // Keys deleted since the snapshot.
        snapshot.index.forEach(from: nil, to: nil) { entry in
            guard entry.withKeyBytes({ now.entry(for: $0) }) == nil else { return true }
            do {
                try entry.withKeyBytes { key in try entry.withValueBytes { value in _ = try set(key, value) } }
                summary.restored += 1
            } catch {
                failure = error
            }
            return failure == nil
        }
        if let failure { throw failure }
        return summary
    }
}
