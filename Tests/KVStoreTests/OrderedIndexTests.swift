import KVTestSupport
import Testing
@testable import KVStore

@Suite("OrderedIndex")
struct OrderedIndexTests {
    typealias Model = [[UInt8]: [UInt8]]

    static func sorted(_ model: Model) -> [(key: [UInt8], value: [UInt8])] {
        model.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map { (key: $0.key, value: $0.value) }
    }

    static func check(_ index: OrderedIndex, _ model: Model, _ rng: inout SplitMix64, ranges: Int = 30,
                      _ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let all = sorted(model)
        #expect(index.count == model.count, "\(context): count", sourceLocation: sourceLocation)
        #expect(index.payloadBytes == model.reduce(0) { $0 + $1.key.count + $1.value.count },
                "\(context): payloadBytes", sourceLocation: sourceLocation)
        let full = index.range(from: nil, to: nil)
        #expect(full.map(\.key) == all.map(\.key), "\(context): full range keys", sourceLocation: sourceLocation)
        #expect(full.map(\.value) == all.map(\.value), "\(context): full range values", sourceLocation: sourceLocation)
        for _ in 0..<ranges {
            let lower = randomBound(&rng, all)
            let upper = randomBound(&rng, all)
            let limit = [Int.max, 0, 1, 2, 7, 511, 512, 513, 1500].randomElement(using: &rng)!
            let expected = all.filter { entry in
                (lower.map { !entry.key.lexicographicallyPrecedes($0) } ?? true)
                    && (upper.map { entry.key.lexicographicallyPrecedes($0) } ?? true)
            }.prefix(limit)
            let actual = index.range(from: lower, to: upper, limit: limit)
            let inRange = all.filter { entry in
                (lower.map { !entry.key.lexicographicallyPrecedes($0) } ?? true)
                    && (upper.map { entry.key.lexicographicallyPrecedes($0) } ?? true)
            }.count
            #expect(index.count(from: lower, to: upper) == inRange, "\(context): count in range", sourceLocation: sourceLocation)
            #expect(actual.map(\.key) == expected.map(\.key),
                    "\(context): range \(String(describing: lower)) ..< \(String(describing: upper)) limit \(limit)",
                    sourceLocation: sourceLocation)
            #expect(actual.map(\.value) == expected.map(\.value), sourceLocation: sourceLocation)
        }
        for _ in 0..<30 {
            let key = randomKey(&rng)
            #expect(index.value(for: key) == model[key], "\(context): value(for: \(key))", sourceLocation: sourceLocation)
            #expect(index.contains(key) == (model[key] != nil), sourceLocation: sourceLocation)
        }
        for entry in all.prefix(3) + all.suffix(3) {
            #expect(index.value(for: entry.key) == entry.value, sourceLocation: sourceLocation)
        }
    }

    /// Keys of 1...3 bytes over a smallish alphabet: ~4000 distinct keys, with prefixes of one another.
    static func randomKey(_ rng: inout SplitMix64) -> [UInt8] {
        let alphabet: [UInt8] = [0x00, 0x01, 0x20, 0x41, 0x42, 0x61, 0x7F, 0x80, 0xC3, 0xFE, 0xFF, 0x30, 0x31, 0x32, 0x33, 0x34]
        let length = Int.random(in: 1...3, using: &rng)
        return (0..<length).map { _ in alphabet.randomElement(using: &rng)! }
    }

    static func randomBound(_ rng: inout SplitMix64, _ all: [(key: [UInt8], value: [UInt8])]) -> [UInt8]? {
        switch Int.random(in: 0..<5, using: &rng) {
        case 0: return nil
        case 1: return all.isEmpty ? [] : all.randomElement(using: &rng)!.key  // an existing key
        case 2: return []
        default: return randomKey(&rng)  // usually not present
        }
    }

    static func randomValue(_ rng: inout SplitMix64) -> [UInt8] {
        rng.bytes(Int.random(in: 0...6, using: &rng))
    }

    @Test("random inserts and removes, through chunk splits and empty-chunk removal", arguments: [7, 8, 9] as [UInt64])
    func randomAgainstModel(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var index = OrderedIndex()
        var model: Model = [:]
        Self.check(index, model, &rng, "empty")
        // Grow: mostly inserts, so chunks fill and split.
        for step in 0..<6000 {
            let key = Self.randomKey(&rng)
            if rng.chance(0.85) {
                let value = Self.randomValue(&rng)
                let isNew = index.set(key, value)
                #expect(isNew == (model[key] == nil), "grow step \(step): set reports a new key")
                model[key] = value
            } else {
                let removed = index.remove(key)
                #expect(removed == (model[key] != nil), "grow step \(step): remove reports presence")
                model[key] = nil
            }
            if step % 1000 == 999 { Self.check(index, model, &rng, "grow step \(step)") }
        }
        #expect(model.count > 3 * OrderedIndex.chunkCapacity, "the test must span several chunks")
        // Shrink: mostly removes, so chunks empty out and are dropped.
        for step in 0..<12000 {
            let key = Self.randomKey(&rng)
            if rng.chance(0.1) {
                let value = Self.randomValue(&rng)
                let isNew = index.set(key, value)
                #expect(isNew == (model[key] == nil))
                model[key] = value
            } else {
                let removed = index.remove(key)
                #expect(removed == (model[key] != nil), "shrink step \(step)")
                model[key] = nil
            }
            if step % 2000 == 1999 { Self.check(index, model, &rng, "shrink step \(step)") }
        }
        // Remove everything that is left, in random order.
        for key in model.keys.shuffled(using: &rng) {
            let removed = index.remove(key)
            #expect(removed)
            model[key] = nil
        }
        Self.check(index, model, &rng, "emptied")
        #expect(index.range(from: nil, to: nil).isEmpty)
        let removedMissing = index.remove([0x41])
        #expect(removedMissing == false)
        // And it still works afterwards.
        index.set([1], [2])
        #expect(index.value(for: [1]) == [2])
        #expect(index.count == 1)
    }

    @Test("ascending appends fill chunks; descending inserts split at the front; removal in every order")
    func orderedPatterns() {
        var rng = SplitMix64(seed: 42)
        func key(_ n: Int) -> [UInt8] { [UInt8(n >> 8), UInt8(n & 0xFF)] }
        for pattern in ["ascending", "descending", "interleaved"] {
            var index = OrderedIndex()
            var model: Model = [:]
            let n = 5 * OrderedIndex.chunkCapacity + 3
            let order: [Int]
            switch pattern {
            case "ascending": order = Array(0..<n)
            case "descending": order = Array((0..<n).reversed())
            default: order = (0..<n).map { $0 % 2 == 0 ? $0 / 2 : n - 1 - $0 / 2 }
            }
            for i in order {
                index.set(key(i), [UInt8(i & 0xFF)])
                model[key(i)] = [UInt8(i & 0xFF)]
            }
            Self.check(index, model, &rng, "\(pattern) filled")
            // Overwrites change payloadBytes by the difference only.
            index.set(key(5), [1, 2, 3, 4])
            model[key(5)] = [1, 2, 3, 4]
            Self.check(index, model, &rng, ranges: 5, "\(pattern) overwrite")
            // Remove one whole chunk's worth from the middle, then the front, then everything.
            for i in (2 * OrderedIndex.chunkCapacity)..<(3 * OrderedIndex.chunkCapacity + 10) {
                let removed = index.remove(key(i))
                #expect(removed, "\(pattern): remove \(i)")
                model[key(i)] = nil
            }
            Self.check(index, model, &rng, "\(pattern) middle removed")
            for i in 0..<OrderedIndex.chunkCapacity + 1 {
                let removed = index.remove(key(i))
                #expect(removed, "\(pattern): remove \(i)")
                model[key(i)] = nil
            }
            Self.check(index, model, &rng, "\(pattern) front removed")
            // Reinsert into the gaps.
            for i in stride(from: 0, to: n, by: 3) {
                index.set(key(i), [])
                model[key(i)] = []
            }
            Self.check(index, model, &rng, "\(pattern) refilled")
            for existing in index.range(from: nil, to: nil) { index.remove(existing.key) }
            #expect(index.count == 0)
            #expect(index.payloadBytes == 0)
            #expect(index.range(from: nil, to: nil).isEmpty)
        }
    }

    @Test("bytewise order: shorter first on a common prefix, bytes compared unsigned")
    func bytewiseOrder() {
        var index = OrderedIndex()
        let keys: [[UInt8]] = [[0xFF], [], [0x00], [0x7F], [0x80], [0x00, 0x00], [0x61], [0x61, 0x00], [0x61, 0x62]]
        for key in keys { index.set(key, key) }
        #expect(index.range(from: nil, to: nil).map(\.key)
                == [[], [0x00], [0x00, 0x00], [0x61], [0x61, 0x00], [0x61, 0x62], [0x7F], [0x80], [0xFF]])
        #expect(index.range(from: [0x61], to: [0x61, 0x62]).map(\.key) == [[0x61], [0x61, 0x00]])
        #expect(index.range(from: [0x62], to: nil).map(\.key) == [[0x7F], [0x80], [0xFF]])
        #expect(index.range(from: [0x80], to: [0x80]).isEmpty, "upper bound is exclusive")
        #expect(index.range(from: [0xFF, 0x00], to: nil).isEmpty)
        #expect(index.range(from: nil, to: nil, limit: 2).map(\.key) == [[], [0x00]])
        #expect(compareBytes([0x80], [0x7F]) > 0)
        #expect(compareBytes([0x61], [0x61, 0x00]) < 0)
        #expect(compareBytes([], []) == 0)
    }
}
