#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Compares byte strings in bytewise (memcmp) order, shorter first on a common prefix.
@inline(__always)
func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
    a.withUnsafeBytes { pa in
        b.withUnsafeBytes { pb in
            let common = min(pa.count, pb.count)
            if common > 0, let ba = pa.baseAddress, let bb = pb.baseAddress {
                let order = memcmp(ba, bb, common)
                if order != 0 { return Int(order) }
            }
            return pa.count - pb.count
        }
    }
}

/// The in-memory index: keys in bytewise order, each with its value.
///
/// A two-level B+tree: a sorted array of leaf chunks, each a sorted array of at most `chunkCapacity` entries.
/// Lookups are two binary searches (O(log n)); an insert shifts at most one chunk's entries plus, on a split,
/// the chunk array; an ordered range of k keys costs O(log n + k). Keys arriving in increasing order are appended
/// without a search and fill chunks completely instead of leaving them half empty after splits.
struct OrderedIndex {
    private struct Chunk {
        var keys: [[UInt8]]
        var values: [[UInt8]]
    }

    static let chunkCapacity = 512
    private var chunks: [Chunk] = []
    private(set) var count = 0
    /// Bytes of keys and values held, without allocation overhead.
    private(set) var payloadBytes = 0

    /// The chunk that holds `key` or would hold it: the first whose last key is ≥ `key`, else the last chunk.
    @inline(__always)
    private func chunkIndex(for key: [UInt8]) -> Int {
        chunks.withUnsafeBufferPointer { chunks in
            var low = 0
            var high = chunks.count - 1
            while low < high {
                let middle = (low + high) / 2
                let keys = chunks[middle].keys
                if compareBytes(keys[keys.count - 1], key) < 0 {
                    low = middle + 1
                } else {
                    high = middle
                }
            }
            return low
        }
    }

    /// The position of `key` in `keys`, or where it would be inserted.
    @inline(__always)
    private static func position(of key: [UInt8], in keys: [[UInt8]]) -> (index: Int, found: Bool) {
        keys.withUnsafeBufferPointer { keys in
            var low = 0
            var high = keys.count
            while low < high {
                let middle = (low + high) / 2
                let order = compareBytes(keys[middle], key)
                if order == 0 { return (middle, true) }
                if order < 0 { low = middle + 1 } else { high = middle }
            }
            return (low, false)
        }
    }

    func value(for key: [UInt8]) -> [UInt8]? {
        guard !chunks.isEmpty else { return nil }
        let chunk = chunkIndex(for: key)
        let (index, found) = Self.position(of: key, in: chunks[chunk].keys)
        return found ? chunks[chunk].values[index] : nil
    }

    func contains(_ key: [UInt8]) -> Bool {
        guard !chunks.isEmpty else { return false }
        return Self.position(of: key, in: chunks[chunkIndex(for: key)].keys).found
    }

    /// Sets `key` to `value`; returns whether the key is new.
    @discardableResult
    mutating func set(_ key: [UInt8], _ value: [UInt8]) -> Bool {
        guard !chunks.isEmpty else {
            chunks.append(Chunk(keys: [key], values: [value]))
            count = 1
            payloadBytes = key.count + value.count
            return true
        }
        let last = chunks.count - 1
        if let lastKey = chunks[last].keys.last, compareBytes(lastKey, key) < 0 {
            // Past every key: the common case of increasing keys (time series, a log replay), without a search.
            count += 1
            payloadBytes += key.count + value.count
            if chunks[last].keys.count >= Self.chunkCapacity {
                chunks.append(Chunk(keys: [key], values: [value]))
            } else {
                chunks[last].keys.append(key)
                chunks[last].values.append(value)
            }
            return true
        }
        let chunk = chunkIndex(for: key)
        let (index, found) = Self.position(of: key, in: chunks[chunk].keys)
        if found {
            payloadBytes += value.count - chunks[chunk].values[index].count
            chunks[chunk].values[index] = value
            return false
        }
        count += 1
        payloadBytes += key.count + value.count
        chunks[chunk].keys.insert(key, at: index)
        chunks[chunk].values.insert(value, at: index)
        if chunks[chunk].keys.count > Self.chunkCapacity { split(chunk) }
        return true
    }

    private mutating func split(_ chunk: Int) {
        let half = chunks[chunk].keys.count / 2
        let upper = Chunk(keys: Array(chunks[chunk].keys[half...]), values: Array(chunks[chunk].values[half...]))
        chunks[chunk].keys.removeSubrange(half...)
        chunks[chunk].values.removeSubrange(half...)
        chunks.insert(upper, at: chunk + 1)
    }

    /// Removes `key`; returns whether it was there.
    @discardableResult
    mutating func remove(_ key: [UInt8]) -> Bool {
        guard !chunks.isEmpty else { return false }
        let chunk = chunkIndex(for: key)
        let (index, found) = Self.position(of: key, in: chunks[chunk].keys)
        guard found else { return false }
        count -= 1
        payloadBytes -= key.count + chunks[chunk].values[index].count
        chunks[chunk].keys.remove(at: index)
        chunks[chunk].values.remove(at: index)
        if chunks[chunk].keys.isEmpty { chunks.remove(at: chunk) }
        return true
    }

    mutating func removeAll() {
        chunks = []
        count = 0
        payloadBytes = 0
    }

    /// Up to `limit` entries with `lower` ≤ key < `upper`, in order; nil bounds are open.
    func range(from lower: [UInt8]?, to upper: [UInt8]?, limit: Int = .max) -> [(key: [UInt8], value: [UInt8])] {
        var result: [(key: [UInt8], value: [UInt8])] = []
        guard !chunks.isEmpty, limit > 0 else { return result }
        var chunk = 0
        var index = 0
        if let lower {
            chunk = chunkIndex(for: lower)
            index = Self.position(of: lower, in: chunks[chunk].keys).index
        }
        while chunk < chunks.count {
            let keys = chunks[chunk].keys
            while index < keys.count {
                if let upper, compareBytes(keys[index], upper) >= 0 { return result }
                result.append((keys[index], chunks[chunk].values[index]))
                if result.count == limit { return result }
                index += 1
            }
            chunk += 1
            index = 0
        }
        return result
    }
}
