// Atomic read-modify-write and multi-key operations: what Redis's string commands (SET NX/XX/GET, SETNX,
// GETDEL, INCR, APPEND, MSET, MGET, STRLEN) need from the engine. Each runs under the state lock, so no other
// read or write can come between its read, its decision and its log record.

/// What ``KVStore/update(_:_:)`` does with a key, decided from the key's current value.
public enum StoreUpdate: Equatable, Sendable {
    /// Leave the key as it is. Nothing is logged.
    case keep
    /// Set the key to this value: one SET record.
    case set([UInt8])
    /// Delete the key: one DELETE record if it exists, nothing if it does not.
    case delete
}

extension KVStore {
    // MARK: Reads

    /// The values stored under `keys`, in order (nil for a key that does not exist), all read at one instant.
    public func values(for keys: [[UInt8]]) -> [[UInt8]?] {
        state.withLock { state in keys.map { state.index.value(for: $0) } }
    }

    /// The length in bytes of the value stored under `key`, without copying the value; nil if there is none.
    public func valueLength(_ key: [UInt8]) -> Int? {
        state.withLock { $0.index.valueCount(for: key) }
    }

    // MARK: Atomic writes

    /// Reads `key`, lets `transform` decide from its current value what to do, and does it, all under the
    /// store's lock: no other write (or read) can come between. The write, if any, is visible at once and
    /// durable after ``commit()``, like ``set(_:_:)``.
    ///
    /// `transform` runs with the lock held: it must be quick and must not call the store (the lock is not
    /// reentrant). If it throws, nothing is written and the error is rethrown.
    ///
    /// - Returns: the value `key` held before (nil if it did not exist), and the sequence number of the record
    ///   written, or nil when nothing was written (``StoreUpdate/keep``, or ``StoreUpdate/delete`` of a key
    ///   that does not exist).
    /// - Throws: what `transform` throws; ``StoreError/tooLarge(what:size:limit:)`` for a key or new value above
    ///   the limits; ``StoreError/closed`` or ``StoreError/writesDisabled(cause:)`` when writes are refused
    ///   (checked before `transform` runs).
    @discardableResult
    public func update(_ key: [UInt8],
                       _ transform: (_ current: [UInt8]?) throws -> StoreUpdate) throws -> (previous: [UInt8]?, sequence: UInt64?) {
        guard key.count <= LogFormat.maxKeySize else { throw StoreError.tooLarge(what: "key", size: key.count, limit: LogFormat.maxKeySize) }
        let (previous, sequence, mustFlush) = try state.withLock { state -> ([UInt8]?, UInt64?, Bool) in
            try state.checkWritable()
            let current = state.index.value(for: key)
            switch try transform(current) {
            case .keep:
                return (current, nil, false)
            case .set(let value):
                guard value.count <= LogFormat.maxValueSize else {
                    throw StoreError.tooLarge(what: "value", size: value.count, limit: LogFormat.maxValueSize)
                }
                let sequence = state.nextSequence
                state.nextSequence += 1
                LogFormat.appendSet(key: key, value: value, sequence: sequence, to: &state.pending)
                state.advanceStream(ReplicationStream.setLength(keyCount: key.count, valueCount: value.count))
                state.index.set(key, value)
                return (current, sequence, state.pending.count >= Self.flushThreshold)
            case .delete:
                guard current != nil else { return (nil, nil, false) }
                let sequence = state.nextSequence
                state.nextSequence += 1
                LogFormat.appendDelete(keys: [key], sequence: sequence, to: &state.pending)
                state.advanceStream(ReplicationStream.length(of: .delete(keys: [key])))
                state.index.remove(key)
                return (current, sequence, state.pending.count >= Self.flushThreshold)
            }
        }
        if mustFlush, let sequence { try flush(through: sequence, fsync: false) }
        return (previous, sequence)
    }

    /// Sets every key to its value, in order (a key named twice ends with its last value), as one log record:
    /// after a crash either every pair is there or none is. One pair is written as a plain SET record.
    ///
    /// - Returns: the write's sequence number, or nil when `pairs` is empty (nothing is written).
    /// - Throws: ``StoreError/tooLarge(what:size:limit:)`` if a key or value is above its limit or the record
    ///   would be larger than a record may be (1 GiB), before anything is written.
    @discardableResult
    public func multiSet(_ pairs: [(key: [UInt8], value: [UInt8])]) throws -> UInt64? {
        guard !pairs.isEmpty else { return nil }
        if pairs.count == 1 { return try set(pairs[0].key, pairs[0].value) }
        for (key, value) in pairs {
            guard key.count <= LogFormat.maxKeySize else { throw StoreError.tooLarge(what: "key", size: key.count, limit: LogFormat.maxKeySize) }
            guard value.count <= LogFormat.maxValueSize else {
                throw StoreError.tooLarge(what: "value", size: value.count, limit: LogFormat.maxValueSize)
            }
        }
        let length = LogFormat.multiSetPayloadLength(pairs)
        guard length <= LogFormat.maxPayloadSize else {
            throw StoreError.tooLarge(what: "multi-key set record", size: length, limit: LogFormat.maxPayloadSize)
        }
        let (sequence, mustFlush) = try state.withLock { state in
            try state.checkWritable()
            let sequence = state.nextSequence
            state.nextSequence += 1
            LogFormat.appendMultiSet(pairs: pairs, sequence: sequence, to: &state.pending)
            state.advanceStream(ReplicationStream.multiSetLength(pairs))
            for (key, value) in pairs { state.index.set(key, value) }
            return (sequence, state.pending.count >= Self.flushThreshold)
        }
        if mustFlush { try flush(through: sequence, fsync: false) }
        return sequence
    }
}
