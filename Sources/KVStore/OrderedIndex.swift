#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Compares byte strings in bytewise (memcmp) order, shorter first on a common prefix.
@inline(__always)
func compareBytes(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
    let common = min(a.count, b.count)
    if common > 0, let pa = a.baseAddress, let pb = b.baseAddress {
        let order = memcmp(pa, pb, common)
        if order != 0 { return Int(order) }
    }
    return a.count - b.count
}

@inline(__always)
func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
    a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in compareBytes(pa, pb) } }
}

/// One key and its value in a single heap allocation: object header, the two lengths, then key and value
/// bytes back to back. Half the allocations (and about 60 bytes per key less) than two arrays.
///
/// Immutable once made (a write replaces an entry, never changes one): a reader may keep one and read its bytes
/// outside the store's lock.
final class IndexEntry: ManagedBuffer<IndexEntry.Lengths, UInt8> {
    struct Lengths {
        var key: Int32
        var value: Int32
    }

    static func make(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> IndexEntry {
        let storage = create(minimumCapacity: key.count + value.count) { _ in
            Lengths(key: Int32(key.count), value: Int32(value.count))
        }
        let entry = unsafeDowncast(storage, to: IndexEntry.self)
        entry.withUnsafeMutablePointerToElements { bytes in
            UnsafeMutableRawBufferPointer(start: bytes, count: key.count).copyMemory(from: key)
            UnsafeMutableRawBufferPointer(start: bytes + key.count, count: value.count).copyMemory(from: value)
        }
        return entry
    }

    // Read through the header pointer rather than `header`: the property is a class's stored var, which costs
    // a dynamic exclusivity check (a thread-local access set) on every read, and keys are compared in hot loops.
    var keyCount: Int { withUnsafeMutablePointerToHeader { Int($0.pointee.key) } }
    var valueCount: Int { withUnsafeMutablePointerToHeader { Int($0.pointee.value) } }

    @inline(__always)
    func compareKey(to key: UnsafeRawBufferPointer) -> Int {
        withKeyBytes { compareBytes($0, key) }
    }

    /// Lends the key's bytes to `body` without copying them.
    @inline(__always)
    func withKeyBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try withUnsafeMutablePointerToElements { try body(UnsafeRawBufferPointer(start: $0, count: keyCount)) }
    }

    var key: [UInt8] {
        withUnsafeMutablePointerToElements { Array(UnsafeBufferPointer(start: $0, count: keyCount)) }
    }

    var value: [UInt8] {
        withValueBytes { Array($0) }
    }

    /// Lends the value's bytes to `body` without copying them.
    @inline(__always)
    func withValueBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try withUnsafeMutablePointerToElements { try body(UnsafeRawBufferPointer(start: $0 + keyCount, count: valueCount)) }
    }
}

/// The in-memory index: keys in bytewise order, each with its value.
///
/// A two-level B+tree: a sorted array of leaf chunks, each a sorted array of at most `chunkCapacity` entries.
/// Lookups are two binary searches (O(log n)); an insert shifts at most one chunk's entries plus, on a split,
/// the chunk array; an ordered range of k keys costs O(log n + k). Keys arriving in increasing order are appended
/// without a search and fill chunks completely instead of leaving them half empty after splits.
struct OrderedIndex {
    static let chunkCapacity = 512
    /// Never empty arrays: a chunk that loses its last entry is removed.
    private var chunks: [[IndexEntry]] = []
    private(set) var count = 0
    /// Bytes of keys and values held, without allocation overhead.
    private(set) var payloadBytes = 0

    /// The chunk that holds `key` or would hold it: the first whose last key is ≥ `key`, else the last chunk.
    @inline(__always)
    private func chunkIndex(for key: UnsafeRawBufferPointer) -> Int {
        chunks.withUnsafeBufferPointer { chunks in
            var low = 0
            var high = chunks.count - 1
            while low < high {
                let middle = (low + high) / 2
                if chunks[middle][chunks[middle].count - 1].compareKey(to: key) < 0 {
                    low = middle + 1
                } else {
                    high = middle
                }
            }
            return low
        }
    }

    /// The position of `key` in `entries`, or where it would be inserted.
    @inline(__always)
    private static func position(of key: UnsafeRawBufferPointer, in entries: [IndexEntry]) -> (index: Int, found: Bool) {
        entries.withUnsafeBufferPointer { entries in
            var low = 0
            var high = entries.count
            while low < high {
                let middle = (low + high) / 2
                let order = entries[middle].compareKey(to: key)
                if order == 0 { return (middle, true) }
                if order < 0 { low = middle + 1 } else { high = middle }
            }
            return (low, false)
        }
    }

    private func find(_ key: [UInt8]) -> IndexEntry? {
        key.withUnsafeBytes { entry(for: $0) }
    }

    func value(for key: [UInt8]) -> [UInt8]? {
        find(key)?.value
    }

    /// The entry stored under `key` (bytes borrowed from a request), or nil.
    func entry(for key: UnsafeRawBufferPointer) -> IndexEntry? {
        guard !chunks.isEmpty else { return nil }
        let chunk = chunkIndex(for: key)
        let (index, found) = Self.position(of: key, in: chunks[chunk])
        return found ? chunks[chunk][index] : nil
    }

    func contains(_ key: [UInt8]) -> Bool {
        find(key) != nil
    }

    /// The length of the value stored under `key`, without copying it; nil if the key does not exist.
    func valueCount(for key: [UInt8]) -> Int? {
        find(key)?.valueCount
    }

    /// Sets `key` to `value`; returns whether the key is new.
    @discardableResult
    mutating func set(_ key: [UInt8], _ value: [UInt8]) -> Bool {
        key.withUnsafeBytes { key in value.withUnsafeBytes { value in set(key, value) } }
    }

    /// Sets `key` to `value`, copying both straight from a buffer (the log, during replay).
    @discardableResult
    mutating func set(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool {
        let entry = IndexEntry.make(key: key, value: value)
        guard !chunks.isEmpty else {
            chunks.append([entry])
            count = 1
            payloadBytes = key.count + value.count
            return true
        }
        let last = chunks.count - 1
        if let lastEntry = chunks[last].last, lastEntry.compareKey(to: key) < 0 {
            // Past every key: the common case of increasing keys (time series, a log replay), without a search.
            count += 1
            payloadBytes += key.count + value.count
            if chunks[last].count >= Self.chunkCapacity {
                chunks.append([entry])
            } else {
                chunks[last].append(entry)
            }
            return true
        }
        let chunk = chunkIndex(for: key)
        let (index, found) = Self.position(of: key, in: chunks[chunk])
        if found {
            payloadBytes += value.count - chunks[chunk][index].valueCount
            chunks[chunk][index] = entry
            return false
        }
        count += 1
        payloadBytes += key.count + value.count
        chunks[chunk].insert(entry, at: index)
        if chunks[chunk].count > Self.chunkCapacity {
            let upper = Array(chunks[chunk][(Self.chunkCapacity / 2)...])
            chunks[chunk].removeSubrange((Self.chunkCapacity / 2)...)
            chunks.insert(upper, at: chunk + 1)
        }
        return true
    }

    /// Removes `key`; returns whether it was there.
    @discardableResult
    mutating func remove(_ key: [UInt8]) -> Bool {
        key.withUnsafeBytes { remove($0) }
    }

    @discardableResult
    mutating func remove(_ key: UnsafeRawBufferPointer) -> Bool {
        guard !chunks.isEmpty else { return false }
        let chunk = chunkIndex(for: key)
        let (index, found) = Self.position(of: key, in: chunks[chunk])
        guard found else { return false }
        count -= 1
        payloadBytes -= key.count + chunks[chunk][index].valueCount
        chunks[chunk].remove(at: index)
        if chunks[chunk].isEmpty { chunks.remove(at: chunk) }
        return true
    }

    /// Calls `body` for each entry with `lower` ≤ key < `upper`, in key order, until it returns false.
    /// Costs O(log n) to find the start, then O(1) per entry visited.
    func forEach(from lower: [UInt8]?, to upper: [UInt8]?, _ body: (IndexEntry) -> Bool) {
        guard !chunks.isEmpty else { return }
        var chunk = 0
        var index = 0
        if let lower {
            lower.withUnsafeBytes { lower in
                chunk = chunkIndex(for: lower)
                index = Self.position(of: lower, in: chunks[chunk]).index
            }
        }
        while chunk < chunks.count {
            for entry in chunks[chunk][index...] {
                if let upper, upper.withUnsafeBytes({ entry.compareKey(to: $0) }) >= 0 { return }
                if !body(entry) { return }
            }
            chunk += 1
            index = 0
        }
    }

    /// Where `key` is or would be inserted, as (chunk, index in chunk); nil stands for the end.
    private func location(of key: [UInt8]?) -> (chunk: Int, index: Int) {
        guard let key else { return (chunks.count - 1, chunks[chunks.count - 1].count) }
        return key.withUnsafeBytes { key in
            let chunk = chunkIndex(for: key)
            return (chunk, Self.position(of: key, in: chunks[chunk]).index)
        }
    }

    /// The number of keys with `lower` ≤ key < `upper`: O(log n) plus one step per chunk in between.
    func count(from lower: [UInt8]?, to upper: [UInt8]?) -> Int {
        guard !chunks.isEmpty else { return 0 }
        let start = lower == nil ? (chunk: 0, index: 0) : location(of: lower)
        let end = location(of: upper)
        guard (start.chunk, start.index) < (end.chunk, end.index) else { return 0 }
        if start.chunk == end.chunk { return end.index - start.index }
        let between = chunks[(start.chunk + 1)..<end.chunk].reduce(0) { $0 + $1.count }
        return chunks[start.chunk].count - start.index + between + end.index
    }

    /// Up to `limit` entries with `lower` ≤ key < `upper`, in order; nil bounds are open.
    func range(from lower: [UInt8]?, to upper: [UInt8]?, limit: Int = .max) -> [(key: [UInt8], value: [UInt8])] {
        var result: [(key: [UInt8], value: [UInt8])] = []
        guard limit > 0 else { return result }
        forEach(from: lower, to: upper) { entry in
            result.append((entry.key, entry.value))
            return result.count < limit
        }
        return result
    }
}
