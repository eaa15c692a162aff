#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Testing
@testable import KVStore

/// The engine compared with a plain dictionary over random operation sequences, with reopens (after close, and
/// from a byte-for-byte copy taken while the store was open) at random points.
@Suite("Engine against a model")
struct EngineModelTests {
    /// A small key alphabet, so that overwrites and deletes of existing keys are common.
    static let keys: [[UInt8]] = [
        [], [0], [0, 0], bytes("a"), bytes("a\u{0}b"), bytes("ab"), bytes("b"), bytes("B"),
        bytes("key"), bytes("key:1"), bytes("key:10"), bytes("key:2"), bytes("é"), bytes("日本語"),
        bytes("🙂"), [0xFF], [0xFF, 0xFF], [0x80, 0x00], [0x7F], bytes(" spaced key "), bytes("\"quoted\""),
    ]

    static func randomValue(_ rng: inout SplitMix64, bigValuesLeft: inout Int) -> [UInt8] {
        if bigValuesLeft > 0 && rng.chance(0.01) {
            bigValuesLeft -= 1
            var value = rng.bytes(64)
            value += [UInt8](repeating: UInt8.random(in: 0...255, using: &rng), count: (1 << 20) - 64)
            return value
        }
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: return []
        case 1: return [0]
        case 2: return bytes(["v", "value", "héllo wörld", "日本", "a\nb", "tab\there"].randomElement(using: &rng)!)
        case 3: return rng.bytes(Int.random(in: 1...8, using: &rng))
        default: return rng.bytes(Int.random(in: 0...300, using: &rng))
        }
    }

    static func randomKey(_ rng: inout SplitMix64) -> [UInt8] { keys.randomElement(using: &rng)! }

    static func randomBound(_ rng: inout SplitMix64) -> [UInt8]? {
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: return nil
        case 1: return randomKey(&rng)
        case 2: return rng.bytes(Int.random(in: 0...2, using: &rng))
        default: return randomKey(&rng) + [0]
        }
    }

    @Test("random operations match a dictionary across reopens and crash copies", arguments: [1, 2, 3, 4] as [UInt64])
    func randomOperations(seed: UInt64) throws {
        try withTempDir { root in
            var rng = SplitMix64(seed: seed &* 0x1234_5678_9ABC)
            let directory = root + "/store"
            var model: [[UInt8]: [UInt8]] = [:]
            var nextSequence: UInt64 = 1
            var bigValuesLeft = 3
            var copies = 0
            var reopens = 0
            var store = try KVStore(directory: directory, syncPolicy: .always)
            defer { try? store.close() }
            #expect(store.openReport.records == 0)
            #expect(store.openReport.keys == 0)

            for step in 0..<600 {
                let forcedBig = step == 150 || step == 400
                let roll = forcedBig ? 0 : Int.random(in: 0..<100, using: &rng)
                switch roll {
                case 0..<35:
                    let key = Self.randomKey(&rng)
                    // Two values of 1 MB at fixed steps, and maybe a few more at random.
                    var value = Self.randomValue(&rng, bigValuesLeft: &bigValuesLeft)
                    if forcedBig { value = rng.bytes(1 << 20) }
                    let sequence = try store.set(key, value)
                    #expect(sequence == nextSequence, "step \(step): set returned sequence \(sequence)")
                    nextSequence += 1
                    model[key] = value
                case 35..<50:
                    let keys = (0..<Int.random(in: 1...4, using: &rng)).map { _ in Self.randomKey(&rng) }
                    let present = Set(keys.filter { model[$0] != nil })
                    let removed = try store.delete(keys)
                    #expect(removed == present.count, "step \(step): delete \(keys) removed \(removed)")
                    if !present.isEmpty { nextSequence += 1 }
                    for key in present { model[key] = nil }
                case 50..<65:
                    let key = Self.randomKey(&rng)
                    #expect(store.get(key) == model[key], "step \(step): get \(key)")
                case 65..<75:
                    let keys = (0..<Int.random(in: 1...5, using: &rng)).map { _ in Self.randomKey(&rng) }
                    #expect(store.countExisting(keys) == keys.filter { model[$0] != nil }.count, "step \(step): exists \(keys)")
                case 75..<83:
                    let lower = Self.randomBound(&rng), upper = Self.randomBound(&rng)
                    let limit = rng.chance(0.5) ? Int.max : Int.random(in: 0...5, using: &rng)
                    let expected = model.filter { entry in
                        (lower.map { !entry.key.lexicographicallyPrecedes($0) } ?? true)
                            && (upper.map { entry.key.lexicographicallyPrecedes($0) } ?? true)
                    }.sorted { $0.key.lexicographicallyPrecedes($1.key) }.prefix(limit)
                    let actual = store.range(from: lower, to: upper, limit: limit)
                    #expect(actual.map(\.key) == expected.map(\.key), "step \(step): range \(String(describing: lower))..<\(String(describing: upper)) limit \(limit)")
                    #expect(actual.map(\.value) == expected.map(\.value))
                case 83..<90:
                    try store.commit()
                    #expect(store.statistics.lastSequence == nextSequence - 1)
                    if store.syncPolicy == .always { #expect(store.statistics.syncedSequence == nextSequence - 1) }
                case 90..<95:
                    // A clean restart, sometimes with another sync policy.
                    try store.close()
                    reopens += 1
                    let policy = KVStore.SyncPolicy.allCases.randomElement(using: &rng)!
                    store = try KVStore(directory: directory, syncPolicy: policy)
                    #expect(store.openReport.tornTail == nil)
                    #expect(store.openReport.keys == model.count)
                    #expect(store.openReport.records == Int(nextSequence - 1))
                    expectContents(store, equal: model, "after reopen at step \(step)")
                default:
                    // A crash-like restart: commit, then copy the files while the store is still open and open the copy.
                    try store.commit()
                    copies += 1
                    let copy = root + "/copy\(copies)"
                    try copyDirectory(directory, to: copy)
                    let reopened = try KVStore(directory: copy, syncPolicy: .none)
                    #expect(reopened.openReport.tornTail == nil)
                    #expect(reopened.openReport.records == Int(nextSequence - 1))
                    expectContents(reopened, equal: model, "crash copy at step \(step)")
                    // The copy goes on from the same sequence number.
                    #expect(try reopened.set(bytes("copy-only"), bytes("x")) == nextSequence)
                    try reopened.close()
                    removeTree(copy)
                }
                #expect(store.count == model.count, "step \(step): count")
            }
            #expect(reopens > 5 && copies > 5, "the sequence must include restarts")
            try store.close()
            store = try KVStore(directory: directory)
            expectContents(store, equal: model, "final reopen")
            #expect(store.statistics.payloadBytes == model.reduce(0) { $0 + $1.key.count + $1.value.count })
        }
    }

    @Test("values of 1 MB, empty keys and values, NUL bytes and UTF-8 survive a reopen")
    func awkwardKeysAndValues() throws {
        try withTempDir { root in
            var rng = SplitMix64(seed: 99)
            let big = rng.bytes(1 << 20)
            let model: [[UInt8]: [UInt8]] = [
                []: bytes("empty key"),
                bytes("empty value"): [],
                [0]: [0, 0, 0],
                bytes("a\u{0}b"): bytes("\u{0}"),
                bytes("ключ"): bytes("значение 🙂"),
                [0xC3, 0x28]: [0xFF, 0xFE, 0xFD],
                bytes("big"): big,
            ]
            do {
                let store = try KVStore(directory: root + "/s")
                for (key, value) in model { try store.set(key, value) }
                try store.commit()
                for (key, value) in model { #expect(store.get(key) == value) }
                try store.close()
            }
            let store = try KVStore(directory: root + "/s")
            defer { try? store.close() }
            expectContents(store, equal: model)
            #expect(store.get([]) == bytes("empty key"))
            #expect(store.get(bytes("empty value")) == [])
            #expect(store.get(bytes("missing")) == nil)
            #expect(store.countExisting([[], [], [0], bytes("missing")]) == 3)
        }
    }

    @Test("keys and values over the size limits are refused before anything is logged")
    func tooLarge() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            let hugeKey = [UInt8](repeating: 1, count: LogFormat.maxKeySize + 1)
            #expect(throws: StoreError.tooLarge(what: "key", size: LogFormat.maxKeySize + 1, limit: LogFormat.maxKeySize)) {
                try store.set(hugeKey, [])
            }
            #expect(store.count == 0)
            #expect(try store.set(bytes("k"), bytes("v")) == 1, "a refused write must not use up a sequence number")
        }
    }
}

@Suite("Sync policies")
struct SyncPolicyTests {
    @Test("writes are visible, commit works and data survives close and reopen", arguments: KVStore.SyncPolicy.allCases)
    func policy(_ policy: KVStore.SyncPolicy) throws {
        try withTempDir { root in
            var model: [[UInt8]: [UInt8]] = [:]
            do {
                let store = try KVStore(directory: root, syncPolicy: policy)
                #expect(store.syncPolicy == policy)
                #expect(store.statistics.syncPolicy == policy)
                for i in 0..<200 {
                    let key = bytes("k\(i % 37)"), value = bytes("v\(i)")
                    try store.set(key, value)
                    model[key] = value
                    #expect(store.get(key) == value, "visible before any commit")
                    if i % 50 == 49 { try store.commit() }
                }
                #expect(try store.delete([bytes("k1"), bytes("k2"), bytes("nope")]) == 2)
                model[bytes("k1")] = nil
                model[bytes("k2")] = nil
                try store.commit()
                let stats = store.statistics
                #expect(stats.lastSequence == 201)
                #expect(stats.logBytes == fileSize(logPath(root)), "after commit every record is in the file")
                if policy == .always { #expect(stats.syncedSequence == 201) }
                expectContents(store, equal: model)
                try store.close()
                try store.close()  // a second close does nothing
            }
            let store = try KVStore(directory: root, syncPolicy: policy)
            defer { try? store.close() }
            expectContents(store, equal: model)
            #expect(store.openReport.records == 201)
            #expect(try store.set(bytes("after"), []) == 202)
        }
    }

    @Test("close writes records that were never committed", arguments: KVStore.SyncPolicy.allCases)
    func closeFlushes(_ policy: KVStore.SyncPolicy) throws {
        try withTempDir { root in
            do {
                let store = try KVStore(directory: root, syncPolicy: policy)
                try store.set(bytes("uncommitted"), bytes("but closed"))
                try store.close()
            }
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            #expect(store.get(bytes("uncommitted")) == bytes("but closed"))
        }
    }
}
