#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

// What replication needs from the engine: the stream position kept in the log (see ``ReplicationPosition``), the
// records as they are written (the live feed to replicas), the stream rebuilt from the log (for a replica that comes
// back), a replica's atomic apply-and-record, and a full copy swapped in whole.

extension KVStore {
    /// Where the replication stream stands; nil if the store has never replicated.
    public var replicationPosition: ReplicationPosition? {
        state.withLock { $0.replication }
    }

    /// Makes this store a primary of a replication stream: continues its stream if it has one as primary, starts one
    /// (a new random replid, offset 0) if it has none, and, if it was a replica, promotes it as Redis's `REPLICAOF NO
    /// ONE` does: a new replid, with the old one and its offset kept as replid2 and second offset, so that the other
    /// replicas of the old primary continue from here partially.
    /// - Returns: the position from which this store's writes count.
    @discardableResult
    public func becomePrimary() throws -> ReplicationPosition {
        try appendPosition { current in
            guard let current else { return ReplicationPosition(role: .primary, replid: ReplicationPosition.randomReplid(), offset: 0) }
            if current.role == .primary { return nil }
            return ReplicationPosition(role: .primary, replid: ReplicationPosition.randomReplid(), offset: current.offset,
                                       replid2: current.replid, secondOffset: current.offset)
        }
    }

    /// Makes this store a replica: its writes stop advancing the offset (which comes from the primary from now on).
    /// The position is kept, so that the first PSYNC asks to continue from where this store stands, as Redis's
    /// cached primary does; a store that has never replicated asks for a full copy.
    public func becomeReplica() throws {
        try appendPosition { current in
            guard let current, current.role == .primary else { return nil }
            var replica = current
            replica.role = .replica
            return replica
        }
    }

    /// Applies what a replica received from its primary (`apply` makes the writes) and records in the same log run
    /// that the stream now stands at `offset` of `replid`; no checkpoint can come between the two. After a crash,
    /// replay keeps the writes only if the record follows them (see ``ReplicationPosition``).
    public func applyReplicated(replid: [UInt8], offset: Int64, _ apply: () throws -> Void) throws {
        try replicaApply.withLock { _ in
            try apply()
            try appendPosition { current in
                var position = current ?? ReplicationPosition(role: .replica, replid: replid, offset: offset)
                position.role = .replica
                position.replid = replid
                position.offset = offset
                return position
            }
        }
    }

    /// Appends stream bytes that change no data (`ping`, `REPLCONF GETACK *`) to a primary's log, so that they count
    /// in its offset like the replicas count them.
    /// - Returns: the offset after them.
    @discardableResult
    public func appendStreamBytes(_ bytes: [UInt8]) throws -> Int64 {
        let (offset, sequence, mustFlush) = try state.withLock { state -> (Int64, UInt64, Bool) in
            try state.checkWritable()
            guard let position = state.replication, position.role == .primary else {
                throw StoreError.replication(reason: "stream bytes can only be added by a primary")
            }
            let sequence = state.nextSequence
            state.nextSequence += 1
            LogFormat.appendStreamBytes(bytes, sequence: sequence, to: &state.pending)
            state.replication?.offset += Int64(bytes.count)
            return (position.offset + Int64(bytes.count), sequence, state.pending.count >= Self.flushThreshold)
        }
        if mustFlush { try flush(through: sequence, fsync: false) }
        return offset
    }

    /// Appends a position record if `change` returns a new position for the current one.
    @discardableResult
    private func appendPosition(_ change: (ReplicationPosition?) -> ReplicationPosition?) throws -> ReplicationPosition {
        let (position, sequence) = try state.withLock { state -> (ReplicationPosition, UInt64?) in
            try state.checkWritable()
            guard let next = change(state.replication) else {
                // Unchanged: `change` returns nil only for an existing position.
                return (state.replication ?? ReplicationPosition(role: .primary, replid: ReplicationPosition.noReplid, offset: 0), nil)
            }
            let sequence = state.nextSequence
            state.nextSequence += 1
            LogFormat.appendPosition(next, sequence: sequence, to: &state.pending)
            state.replication = next
            state.streamAdvances = next.role == .primary
            return (next, sequence)
        }
        if sequence != nil { try commit() }
        return position
    }

    // MARK: The live feed

    /// A consistent copy-on-write copy of the whole key space, for a full sync: taking it costs next to nothing, and
    /// writes go on meanwhile (the live index copies a chunk only when a write touches it).
    public struct Snapshot: @unchecked Sendable {
        let index: OrderedIndex
        public var count: Int { index.count }

        /// Calls `body` with every key and value in key order, in place, until it returns false.
        public func forEach(_ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool) {
            index.forEach(from: nil, to: nil) { entry in
                entry.withKeyBytes { key in entry.withValueBytes { value in body(key, value) } }
            }
        }
    }

    /// Runs `body` at a point between two runs of written records: everything written before has been handed to the
    /// write observer, nothing after has. `body` gets the stream position there and, when `snapshot` is set, the key
    /// space as of that position; it runs under the store's locks (it must be quick: register a replica, say).
    public func atWriteBoundary<T>(snapshot: Bool, _ body: (ReplicationPosition?, Snapshot?) throws -> T) throws -> T {
        try log.withLock { file in
            guard file.lock != nil else { throw StoreError.closed }
            var buffer = file.spare
            let target = state.withLock { state -> UInt64 in
                swap(&state.pending, &buffer)
                return state.nextSequence - 1
            }
            if !buffer.isEmpty { try write(&buffer, through: target, fsync: false, to: &file) }
            let (position, copy) = state.withLock { state in (state.replication, snapshot ? Snapshot(index: state.index) : nil) }
            return try body(position, copy)
        }
    }

    /// Installs (or with nil removes) `observer`, told about every run of log records written from now on, in log
    /// order, under the log's lock (it must be quick: copy, convert with ``ReplicationStream/convert(records:to:)``,
    /// hand on). Everything written before is on file first.
    /// - Returns: the stream position the first records the observer sees continue from.
    @discardableResult
    public func observeWrites(_ observer: (@Sendable (UnsafeRawBufferPointer) -> Void)?) throws -> ReplicationPosition? {
        try log.withLock { file in
            guard file.lock != nil else { throw StoreError.closed }
            var buffer = file.spare
            let (target, position) = state.withLock { state -> (UInt64, ReplicationPosition?) in
                swap(&state.pending, &buffer)
                return (state.nextSequence - 1, state.replication)
            }
            file.writeObserver = nil
            if !buffer.isEmpty { try write(&buffer, through: target, fsync: false, to: &file) }
            file.writeObserver = observer
            return position
        }
    }

    // MARK: The stream from the log

    /// Rebuilds the stream bytes after `offset` of stream `replid` through `end` from the log files (the active ones
    /// and those kept in `replication-backlog/`), for a replica that continues from `offset`.
    ///
    /// - Returns: the bytes, or nil when the log no longer holds (or never held) the stream from exactly there, or
    ///   holds more than `limit` bytes of it: that replica needs a full copy.
    public func streamFromLog(replid: [UInt8], after offset: Int64, through end: Int64, limit: Int) throws -> [UInt8]? {
        guard end >= offset, end - offset <= Int64(limit) else { return nil }
        return try maintenance.withLock { _ in
            // What is pending is needed too: `end` may count it.
            try flush(through: lastSequence, fsync: false)
            let backlog = DataDirectory.join(directory, DataDirectory.backlogDirectoryName)
            let kept = (try? DataDirectory.logFiles(in: backlog, fileSystem: fileSystem)) ?? []
            let active = try DataDirectory.logFiles(in: directory, fileSystem: fileSystem)
            let files = kept.map(\.path) + active.map(\.path)
            var output: [UInt8] = []
            var position: ReplicationPosition?
            var started = false
            var done = false
            let keyring = log.withLock { $0.keyring }
            for (index, path) in files.enumerated() where !done {
                _ = try LogReader.scan(path: path, tornTailAllowed: index == files.count - 1, keyring: keyring, fileSystem: fileSystem) { _, record in
                    guard !done else { return }
                    if case .replicationPosition(let recorded) = record {
                        position = recorded
                        if !started, recorded.role == .primary, recorded.canContinue(replid: replid, offset: offset),
                           recorded.offset == offset || (recorded.replid2 == replid && recorded.secondOffset == offset) {
                            started = true
                        }
                        return
                    }
                    guard var current = position, current.role == .primary else { return }
                    let length = Int64(ReplicationStream.length(of: record))
                    if started {
                        ReplicationStream.append(record, to: &output)
                        if current.offset + length >= end { done = true }
                    } else if current.canContinue(replid: replid, offset: offset), current.offset + length == offset {
                        started = true  // the replica stopped right after this record
                        if offset == end { done = true }
                    }
                    current.offset += length
                    position = current
                }
            }
            guard started, Int64(output.count) == end - offset else { return nil }
            return output
        }
    }

    // MARK: A full copy

    /// A whole new content for the store, filled by a replica's full sync and swapped in by ``replaceContents(with:position:)``.
    public final class Replacement: @unchecked Sendable {
        var index = OrderedIndex()
        public init() {}
        /// Adds (or replaces) a key; keys may come in any order.
        public func set(_ key: [UInt8], _ value: [UInt8]) throws {
            guard key.count <= LogFormat.maxKeySize else { throw StoreError.tooLarge(what: "key", size: key.count, limit: LogFormat.maxKeySize) }
            guard value.count <= LogFormat.maxValueSize else {
                throw StoreError.tooLarge(what: "value", size: value.count, limit: LogFormat.maxValueSize)
            }
            index.set(key, value)
        }
        public var count: Int { index.count }
    }

    /// Replaces everything the store holds with `replacement`, as of stream position `position` (a replica's full
    /// sync): writes it as a new image, starts a new log file with the position, then switches. A crash before the
    /// switch leaves the store as it was, or (between the image and the new log file) with the new data and no
    /// position, which asks the primary for a full copy again; never half of one and half of the other.
    ///
    /// - Parameter keepAside: the name of a subdirectory of the data directory to keep the replaced files in (hard
    ///   links), for a former primary whose writes the new primary never had: they are dropped from the store but not
    ///   lost (`kvsh --data-dir DIR/<keepAside>` opens them).
    public func replaceContents(with replacement: Replacement, position: ReplicationPosition, keepAside: String? = nil) throws {
        try maintenance.withLock { _ in
            try cancellable {
                try flush(through: lastSequence, fsync: true)
                if let keepAside {
                    let aside = DataDirectory.join(directory, keepAside)
                    try DataDirectory.prepare(aside, fileSystem: fileSystem)
                    let files = try DataDirectory.logFiles(in: directory, fileSystem: fileSystem)
                        + DataDirectory.imageFiles(in: directory, fileSystem: fileSystem)
                    for file in files {
                        let name = String(file.path.split(separator: "/").last ?? "")
                        try fileSystem.link(file.path, to: DataDirectory.join(aside, name))
                    }
                    try fileSystem.fsyncDirectory(aside)
                }
                let (sequence, number, key) = log.withLock { file in (state.withLock { $0.nextSequence - 1 }, file.number + 1, file.keyring.current) }
                let imagePath = DataDirectory.join(directory, DataDirectory.imageFileName(number))
                let image = try ImageFile.write(replacement.index, sequence: sequence, to: imagePath, replace: true, key: key,
                                                fileSystem: fileSystem)
                try log.withLock { file in
                    let path = DataDirectory.join(directory, DataDirectory.logFileName(number))
                    let created = try Self.createLogFile(path, firstSequence: sequence + 1, position: position, key: key,
                                                         directory: directory, fileSystem: fileSystem)
                    let fd = try fileSystem.open(path, O_WRONLY | O_APPEND | O_NOFOLLOW)
                    try state.withLock { state in
                        guard state.nextSequence == sequence + 1 else {
                            throw StoreError.replication(reason: "the store was written to during a full copy; it was not replaced")
                        }
                        state.index = replacement.index
                        state.pending.removeAll(keepingCapacity: true)
                        state.nextSequence = sequence + 2
                        state.writtenThrough = sequence + 1
                        state.syncedThrough = sequence + 1
                        state.replication = position
                        state.streamAdvances = position.role == .primary
                    }
                    fileSystem.close(file.fd)
                    file.fd = fd
                    file.number = number
                    file.path = path
                    file.size = created.size
                    file.cipher = created.cipher
                    file.imageBytes = image.bytes
                }
                try removeFilesCovered(byImage: number)
            }
        }
    }
}
