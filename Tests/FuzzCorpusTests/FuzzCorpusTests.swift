// Every fuzz entry point over its committed seed corpus (Fuzz/Corpus/<target>/) and a bounded number of
// deterministic mutations of it, so that `make test` exercises the fuzz invariants without libFuzzer.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVFuzzTargets
import KVTestSupport
import Testing

/// Mutated inputs per target: the parsers take microseconds an input, the file targets open stores.
private let mutations: [String: Int] = [
    "RequestDecoder": 2_000, "ReplyParser": 2_000, "Tokenizer": 2_000,
    "JSONImport": 2_000, "LogReplay": 2_000, "ImageRestore": 2_000, "RDBReader": 2_000,
]

/// `Fuzz/Corpus/<target>/`, from this file's place in the checkout.
private func corpusDirectory(_ target: String) -> String {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/FuzzCorpusTests/FuzzCorpusTests.swift
    return parts.joined(separator: "/") + "/Fuzz/Corpus/" + target
}

private func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 << 10)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return count == 0 ? bytes : nil }
        bytes += chunk[..<count]
    }
}

/// Tokens the parsers care about, for insertions.
private let dictionary: [[UInt8]] = ["\r\n", "\n", "*", "$", "-1", "0", "*1\r\n", "$-1\r\n", "%1\r\n", "|1\r\n", ">2\r\n",
                                     "9223372036854775807", "4294967296", "\"", "'", "\\x", "\\", "{", "}", "\"key\":",
                                     "\"operation\":\"SET\"", "KVSH-LOG", "KVSH-IMG", "REDIS0010", "\u{0}\u{0}\u{0}\u{0}", "\u{ff}\u{ff}\u{ff}\u{ff}"]
    .map { Array($0.utf8) }

/// One input derived from the corpus: a random entry with one to four mutations (bit flips, byte changes,
/// deletions, insertions of random bytes or tokens, duplications, truncation, splicing with another entry).
private func mutated(_ corpus: [[UInt8]], _ random: inout SplitMix64) -> [UInt8] {
    var bytes = corpus.randomElement(using: &random) ?? []
    for _ in 0..<Int.random(in: 1...4, using: &random) {
        let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &random)
        switch Int.random(in: 0..<8, using: &random) {
        case 0 where !bytes.isEmpty:
            bytes[position] ^= 1 << UInt8.random(in: 0...7, using: &random)
        case 1 where !bytes.isEmpty:
            bytes[position] = UInt8.random(in: 0...255, using: &random)
        case 2 where !bytes.isEmpty:
            bytes.removeSubrange(position..<min(bytes.count, position + Int.random(in: 1...16, using: &random)))
        case 3:
            bytes.insert(contentsOf: random.bytes(Int.random(in: 1...8, using: &random)), at: position)
        case 4:
            bytes.insert(contentsOf: dictionary.randomElement(using: &random) ?? [], at: position)
        case 5 where !bytes.isEmpty:
            let end = min(bytes.count, position + Int.random(in: 1...64, using: &random))
            bytes.insert(contentsOf: bytes[position..<end], at: end)
        case 6:
            bytes.removeSubrange(position...)
        default:
            let other = corpus.randomElement(using: &random) ?? []
            let cut = other.isEmpty ? 0 : Int.random(in: 0..<other.count, using: &random)
            bytes = Array(bytes[..<position]) + other[cut...]
        }
    }
    return bytes
}

@Suite("Fuzz entry points over the seed corpus and its mutations")
struct FuzzCorpusTests {
    @Test("each target's corpus and mutations keep its invariants", arguments: FuzzTargets.all.map(\.name))
    func corpusAndMutations(target: String) throws {
        let run = try #require(FuzzTargets.all.first { $0.name == target }?.run)
        let directory = corpusDirectory(target)
        let corpus = listDirectory(directory).compactMap { readFile(directory + "/" + $0) }
        #expect(corpus.count >= 10, "the seed corpus in \(directory) is missing or nearly empty")
        var random = SplitMix64(seed: 0xF022_0000 ^ UInt64(target.utf8.count))
        var failures = 0
        let inputs = corpus + (0..<(mutations[target] ?? 1_000)).map { _ in mutated(corpus, &random) }
        for (number, input) in inputs.enumerated() {
            do {
                try input.withUnsafeBytes { try run($0) }
            } catch {
                failures += 1
                let kind = number < corpus.count ? "corpus entry \(number)" : "mutation \(number - corpus.count)"
                Issue.record("\(kind) (\(input.count) bytes, \(input.prefix(64).map { String($0, radix: 16) })): \(error)")
                if failures == 5 { return }
            }
        }
    }
}
