// RESPRequestDecoder on its own: requests in every framing and split at every byte, Redis's limits, and garbage.

import NIOCore
import KVTestSupport
import Testing
@testable import RESP

/// Feeds `chunks` one after the other into one decoder and buffer, as reads arrive, and collects every request,
/// through `decode(_:inPlace:decoded:)` as the server does (requests lent in place are copied here). Checks that
/// `next(_:)` alone, from a copy of the same decoder, decodes the same requests and leaves the same bytes.
private func decode(_ chunks: [[UInt8]], decoder: inout RESPRequestDecoder,
                    sourceLocation: SourceLocation = #_sourceLocation) -> (requests: [RESPRequest], left: Int, lent: Int) {
    var plain = decoder
    var plainBuffer = ByteBuffer()
    var plainRequests: [RESPRequest] = []
    var buffer = ByteBuffer()
    var requests: [RESPRequest] = []
    var lent = 0
    for chunk in chunks {
        buffer.writeBytes(chunk)
        decoder.decode(&buffer, inPlace: { request in
            lent += 1
            requests.append(.command(request.copied()))
        }, decoded: { requests.append($0) })
        plainBuffer.writeBytes(chunk)
        while let request = plain.next(&plainBuffer) { plainRequests.append(request) }
    }
    #expect(requests == plainRequests, "in place and copied decoding disagree", sourceLocation: sourceLocation)
    #expect(buffer.readableBytes == plainBuffer.readableBytes, sourceLocation: sourceLocation)
    return (requests, buffer.readableBytes, lent)
}

private func decode(_ chunks: [[UInt8]]) -> [RESPRequest] {
    var decoder = RESPRequestDecoder()
    return decode(chunks, decoder: &decoder).requests
}

private func decode(_ text: String) -> [RESPRequest] { decode([Array(text.utf8)]) }

private func command(_ arguments: String...) -> RESPRequest { .command(arguments.map { Array($0.utf8) }) }

/// Splits `bytes` into chunks of random sizes (1 to `maximum` bytes).
private func randomChunks(_ bytes: [UInt8], seed: UInt64, maximum: Int) -> [[UInt8]] {
    var generator = SplitMix64(seed: seed)
    var chunks: [[UInt8]] = []
    var offset = 0
    while offset < bytes.count {
        let size = min(bytes.count - offset, Int.random(in: 1...maximum, using: &generator))
        chunks.append(Array(bytes[offset..<(offset + size)]))
        offset += size
    }
    return chunks
}

/// What the decoder holds: the total capacity, in bytes, of every array reachable from its stored properties.
/// Reflection reaches the private state, so this sees a reservation the decoder made for what a client merely
/// announced.
private func reservedBytes(_ value: Any) -> Int {
    if let arrays = value as? [[UInt8]] {
        return arrays.capacity * MemoryLayout<[UInt8]>.stride + arrays.reduce(0) { $0 + $1.capacity }
    }
    if let bytes = value as? [UInt8] { return bytes.capacity }
    if let buffer = value as? ByteBuffer { return buffer.capacity }
    return Mirror(reflecting: value).children.reduce(0) { $0 + reservedBytes($1.value) }
}

/// Bytes that are not RESP and the protocol error they must give (nil: any message); named escaped in test output.
struct Garbage: Sendable, CustomTestStringConvertible {
    let input: String
    let message: String?
    init(_ pair: (String, String?)) { (input, message) = pair }
    var testDescription: String { "\"\(escaped(Array(input.utf8)))\"" }
}

@Suite("RESP request decoder")
struct RESPDecoderTests {
    // MARK: Framing

    @Test("a multibulk request, binary-safe")
    func multibulk() {
        #expect(decode("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n") == [command("SET", "k", "hello")])
        // Bulk strings may hold CR, LF, `*`, `$` and NUL: only the announced length counts.
        let value: [UInt8] = [0x0D, 0x0A, 0x2A, 0x24, 0x00, 0xFF, 0x0A]
        #expect(decode([encodeCommand([Array("SET".utf8), Array("k".utf8), value])]) == [.command([Array("SET".utf8), Array("k".utf8), value])])
        // Empty bulk strings are arguments like any other.
        #expect(decode("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$0\r\n\r\n") == [command("SET", "", "")])
        // The command name keeps its case: the command table matches it case-insensitively.
        #expect(decode("*1\r\n$4\r\nping\r\n") == [command("ping")])
    }

    @Test("inline commands, as telnet sends them, with the shell's quoting")
    func inline() {
        #expect(decode("PING\r\n") == [command("PING")])
        #expect(decode("PING\n") == [command("PING")])
        #expect(decode("SET k \"hello world\"\r\n") == [command("SET", "k", "hello world")])
        #expect(decode("  ECHO   'a b'   \r\n") == [command("ECHO", "a b")])
        #expect(decode("SET k \"tab\\there\\x41\\n\"\r\n") == [command("SET", "k", "tab\there\u{41}\n")])
        #expect(decode("SET k 'it\\'s'\r\n") == [command("SET", "k", "it's")])
        #expect(decode("SET k \"\"\r\n") == [command("SET", "k", "")])
        // Blank lines are no command.
        #expect(decode("\r\n\n   \r\nPING\r\n") == [command("PING")])
        // A line without its newline yet is incomplete.
        #expect(decode("PING").isEmpty)
    }

    @Test("requests whole in one read are lent in place; split, inline and malformed ones are decoded")
    func lentInPlace() {
        let set = encodeCommand("SET", "key", "value\r\n")
        var decoder = RESPRequestDecoder()
        // Three whole requests in one read: all lent, none copied.
        let whole = decode([set + set + encodeCommand("GET", "key")], decoder: &decoder)
        #expect(whole.lent == 3 && whole.requests.count == 3 && whole.left == 0)
        // A request split across reads is decoded by `next`; the whole one after it is lent again.
        let split = decode([Array(set[..<10]), Array(set[10...]) + set], decoder: &decoder)
        #expect(split.lent == 1 && split.requests.count == 2 && split.left == 0)
        // Inline commands, `*0` and LF-only header lines are left to `next`.
        let other = decode([Array("PING\r\n*0\r\n*1\n$4\nPING\r\n".utf8) + set], decoder: &decoder)
        #expect(other.lent == 1 && other.requests == [command("PING"), command("PING"), command("SET", "key", "value\r\n")])
        // A request past a limit is never lent: `next` words the error.
        var limited = RESPRequestDecoder()
        limited.limits.maxBulkLength = 4
        let refused = decode([set], decoder: &limited)
        #expect(refused.lent == 0 && refused.requests == [.protocolError("invalid bulk length")])
    }

    @Test("a request whose bulk strings add up past the query buffer limit is refused at the header that passes it")
    func requestLimit() {
        var limited = RESPRequestDecoder()
        limited.limits.maxRequestBytes = 10
        // 3 + 5 bytes fit; announcing 3 more passes 10, before those bytes are sent.
        #expect(decode([encodeCommand("SET", "abcde")], decoder: &limited).requests == [.command([bytes("SET"), bytes("abcde")])])
        let refused = decode([Array("*3\r\n$3\r\nSET\r\n$5\r\nabcde\r\n$3\r\n".utf8)], decoder: &limited)
        #expect(refused.requests == [.protocolError("request larger than the query buffer limit of 10 bytes")])
    }

    @Test("the in-place scan finds each argument's range and needs every byte up to the final CRLF")
    func completeRequestRanges() {
        let bytes = encodeCommand("SET", "k", "")
        var ranges: [Range<Int>] = []
        for cut in 0..<bytes.count {
            let found = bytes[..<cut].withUnsafeBytes {
                RESPRequestDecoder.completeRequest(in: $0, limits: .init(), arguments: &ranges)
            }
            #expect(found == nil, "cut at \(cut)")
        }
        let found = (bytes + Array("*1\r\n".utf8)).withUnsafeBytes {
            RESPRequestDecoder.completeRequest(in: $0, limits: .init(), arguments: &ranges)
        }
        #expect(found?.length == bytes.count && found?.argumentCount == 3)
        #expect(ranges.prefix(3).map { Array(bytes[$0]) } == [Array("SET".utf8), Array("k".utf8), []])
        // Ranges left over from a longer request stay behind the count and are not part of the next one.
        let get = encodeCommand("GET", "key")
        let shorter = get.withUnsafeBytes { RESPRequestDecoder.completeRequest(in: $0, limits: .init(), arguments: &ranges) }
        #expect(shorter?.length == get.count && shorter?.argumentCount == 2)
        #expect(ranges.prefix(2).map { Array(get[$0]) } == [Array("GET".utf8), Array("key".utf8)])
        // A bulk string whose announced length is not followed by CRLF is not a request.
        let wrongLength = Array("*1\r\n$3\r\nPINGx\r\n".utf8).withUnsafeBytes {
            RESPRequestDecoder.completeRequest(in: $0, limits: .init(), arguments: &ranges)
        }
        #expect(wrongLength == nil)
    }

    @Test("*0 and *-1 are no command, and what follows is decoded")
    func emptyArray() {
        #expect(decode("*0\r\n").isEmpty)
        #expect(decode("*0\r\n*1\r\n$4\r\nPING\r\n") == [command("PING")])
        #expect(decode("*-1\r\n*1\r\n$4\r\nPING\r\n") == [command("PING")])
    }

    /// Every kind of request in one stream.
    private static let pipeline: (bytes: [UInt8], requests: [RESPRequest]) = {
        var bytes: [UInt8] = []
        var requests: [RESPRequest] = []
        func add(_ arguments: [[UInt8]]) {
            bytes += encodeCommand(arguments)
            requests.append(.command(arguments))
        }
        func addInline(_ line: String, _ arguments: [String]) {
            bytes += Array(line.utf8)
            requests.append(.command(arguments.map { Array($0.utf8) }))
        }
        add([Array("PING".utf8)])
        addInline("SET a \"b c\"\r\n", ["SET", "a", "b c"])
        add([Array("SET".utf8), Array("bin".utf8), [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x2A, 0x33]])
        bytes += Array("*0\r\n".utf8)
        addInline("ECHO 'x\\'y'\n", ["ECHO", "x'y"])
        bytes += Array("\r\n".utf8)
        add([Array("MSET".utf8), [], Array(repeating: 0x41, count: 300), Array("k".utf8), []])
        var generator = SplitMix64(seed: 7)
        for index in 0..<40 {
            let value = (0..<Int.random(in: 0...40, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            add([Array("SET".utf8), Array("key:\(index)".utf8), value])
            if index % 5 == 0 { addInline("GET key:\(index)\r\n", ["GET", "key:\(index)"]) }
        }
        add([Array("QUIT".utf8)])
        return (bytes, requests)
    }()

    @Test("a pipeline decodes the same whole, byte by byte, and in random chunks")
    func pipelineSplitAnywhere() {
        let (bytes, expected) = Self.pipeline
        var whole = RESPRequestDecoder()
        let all = decode([bytes], decoder: &whole)
        #expect(all.requests == expected)
        #expect(all.left == 0)

        var byByte = RESPRequestDecoder()
        let single = decode(bytes.map { [$0] }, decoder: &byByte)
        #expect(single.requests == expected, "fed byte by byte")
        #expect(single.left == 0)

        for seed in UInt64(1)...30 {
            var decoder = RESPRequestDecoder()
            let chunked = decode(randomChunks(bytes, seed: seed, maximum: seed % 2 == 0 ? 7 : 300), decoder: &decoder)
            #expect(chunked.requests == expected, "random chunks, seed \(seed)")
            #expect(chunked.left == 0, "random chunks, seed \(seed)")
        }
    }

    @Test("every split point of a request: incomplete before its last byte, complete with it")
    func everySplitPoint() {
        let bytes = encodeCommand("SET", "key", "value with\r\nnewline")
        for cut in 1..<bytes.count {
            var decoder = RESPRequestDecoder()
            var buffer = ByteBuffer(bytes: bytes[..<cut])
            #expect(decoder.next(&buffer) == nil, "cut at \(cut)")
            buffer.writeBytes(bytes[cut...])
            #expect(decoder.next(&buffer) == command("SET", "key", "value with\r\nnewline"), "cut at \(cut)")
            #expect(buffer.readableBytes == 0)
        }
    }

    // MARK: Limits

    @Test("a bulk string longer than the limit is refused")
    func bulkLimit() {
        var decoder = RESPRequestDecoder()
        decoder.limits.maxBulkLength = 16
        #expect(decode([Array("*2\r\n$3\r\nGET\r\n$16\r\n0123456789abcdef\r\n".utf8)], decoder: &decoder).requests
                == [command("GET", "0123456789abcdef")])
        var small = RESPRequestDecoder()
        small.limits.maxBulkLength = 16
        #expect(decode([Array("*2\r\n$3\r\nGET\r\n$17\r\n".utf8)], decoder: &small).requests == [.protocolError("invalid bulk length")])
        // Redis's default, proto-max-bulk-len: 512 MB.
        #expect(decode("*1\r\n$\(512 << 20 + 1)\r\n") == [.protocolError("invalid bulk length")])
    }

    @Test("an array longer than the limit is refused")
    func arrayLimit() {
        #expect(decode("*\(1 << 20 + 1)\r\n") == [.protocolError("invalid multibulk length")])
        var decoder = RESPRequestDecoder()
        decoder.limits.maxArrayLength = 3
        #expect(decode([Array("*4\r\n".utf8)], decoder: &decoder).requests == [.protocolError("invalid multibulk length")])
        var exact = RESPRequestDecoder()
        exact.limits.maxArrayLength = 3
        #expect(decode([encodeCommand("SET", "k", "v")], decoder: &exact).requests == [command("SET", "k", "v")])
    }

    @Test("an announced element count reserves nothing")
    func announcedCountDoesNotAllocate() {
        let header = Array("*\(1 << 20)\r\n".utf8)
        var decoder = RESPRequestDecoder()
        var buffer = ByteBuffer(bytes: header)
        let before = reservedBytes(decoder)
        #expect(decoder.next(&buffer) == nil)
        #expect(buffer.readableBytes == 0)
        // A million arguments would be 8 MB of array; the decoder may keep a small start.
        let held = reservedBytes(decoder) - before
        // (The probe does see what the decoder holds: an argument that arrived shows.)
        var control = RESPRequestDecoder()
        var partial = ByteBuffer(bytes: Array("*2\r\n$3\r\nSET\r\n".utf8))
        #expect(control.next(&partial) == nil)
        #expect(reservedBytes(control) >= 3, "reflection no longer reaches the decoder's arguments")
        #expect(held < 64 << 10, "the decoder holds \(held) bytes after only the header of a 1048576-element array")

        // The C heap agrees: sixteen decoders that each reserved for a million arguments would hold 128 MB.
        if let heapBefore = Memory.heapBytes() {
            var decoders = [RESPRequestDecoder](repeating: RESPRequestDecoder(), count: 16)
            for index in decoders.indices {
                var buffer = ByteBuffer(bytes: header)
                _ = decoders[index].next(&buffer)
            }
            let grown = (Memory.heapBytes() ?? 0) - heapBefore
            #expect(grown < 64 << 20, "16 decoders holding a 1048576-element header grew the heap by \(grown) bytes")
            withExtendedLifetime(decoders) {}
        }

        // The elements, when they do come, are decoded as usual.
        var complete = RESPRequestDecoder()
        #expect(decode([Array("*2\r\n".utf8), Array("$4\r\nECHO\r\n".utf8), Array("$1\r\nx\r\n".utf8)], decoder: &complete).requests
                == [command("ECHO", "x")])
    }

    @Test("a bulk string announced at 500 MB with 10 bytes present waits, and reserves nothing")
    func announcedBulkDoesNotAllocate() {
        let announced = 500 << 20
        var decoder = RESPRequestDecoder()
        var buffer = ByteBuffer()
        buffer.writeBytes(Array("*2\r\n$3\r\nSET\r\n$\(announced)\r\n".utf8))
        buffer.writeBytes(Array(repeating: UInt8(ascii: "x"), count: 10))
        let heapBefore = Memory.heapBytes()
        #expect(decoder.next(&buffer) == nil)
        #expect(decoder.next(&buffer) == nil)
        let heapGrowth = Memory.heapBytes().map { $0 - (heapBefore ?? 0) }
        #expect(buffer.capacity < 1 << 20, "the buffer was grown to \(buffer.capacity) bytes")
        #expect(reservedBytes(decoder) < 64 << 10, "the decoder holds \(reservedBytes(decoder)) bytes")
        if let heapGrowth {
            #expect(heapGrowth < 100 << 20, "the heap grew by \(heapGrowth) bytes while decoding a 500 MB announcement")
        }
        // Nothing was consumed that a later read would need: the 10 bytes are still there.
        #expect(buffer.readableBytes >= 10)
    }

    @Test("a header line or inline request longer than 64 KB is refused")
    func lineLimits() {
        #expect(decode([Array(repeating: UInt8(ascii: "a"), count: (64 << 10) + 1)]) == [.protocolError("too big inline request")])
        #expect(decode([[UInt8(ascii: "*")] + Array(repeating: UInt8(ascii: "1"), count: 64 << 10)]) == [.protocolError("too big mbulk count string")])
        #expect(decode([Array("*1\r\n$".utf8) + Array(repeating: UInt8(ascii: "1"), count: 64 << 10)]) == [.protocolError("too big bulk count string")])
    }

    // MARK: Garbage

    @Test("garbage is a protocol error, and everything after it is ignored",
          arguments: ([
              ("*1\r\nGET\r\n", "expected '$', got 'G'"),
              ("*2\r\n$3\r\nGET\r\n:1\r\n", "expected '$', got ':'"),
              // Nothing nests in a request: an aggregate or a RESP3 attribute inside one is refused at its first byte,
              // so no depth needs bounding (the element count is, by maxArrayLength).
              (String(repeating: "*1\r\n", count: 1000), "expected '$', got '*'"),
              ("*1\r\n%1\r\n$1\r\nk\r\n$1\r\nv\r\n", "expected '$', got '%'"),
              ("*1\r\n|0\r\n$4\r\nPING\r\n", "expected '$', got '|'"),
              ("*1\r\n~1\r\n", "expected '$', got '~'"),
              ("*1\r\n>1\r\n", "expected '$', got '>'"),
              ("*1048577\r\n", "invalid multibulk length"),
              ("*x\r\n", "invalid multibulk length"),
              ("*1x\r\n", "invalid multibulk length"),
              ("*\r\n", "invalid multibulk length"),
              ("*1\r\n$x\r\n", "invalid bulk length"),
              ("*1\r\n$-5\r\n", "invalid bulk length"),
              ("*1\r\n$-1\r\n", "invalid bulk length"),
              ("*1\r\n$\r\n", "invalid bulk length"),
              ("*1\r\n$3\r\nabcde\r\n", nil),
              ("*1\r\n$3\r\nabc", nil),
              ("SET k \"unclosed\r\n", "unbalanced quotes in request"),
              ("SET k \"closed\"x\r\n", "unbalanced quotes in request"),
          ] as [(String, String?)]).map(Garbage.init))
    func garbage(_ garbage: Garbage) {
        let (input, message) = (garbage.input, garbage.message)
        // `*1\r\n$3\r\nabc` followed by the next request: the two bytes after the bulk string are not CRLF.
        let bytes = Array(input.utf8) + encodeCommand("PING")
        var decoder = RESPRequestDecoder()
        let (requests, left, _) = decode([bytes], decoder: &decoder)
        #expect(requests.count == 1, "\(requests)")
        guard case .protocolError(let text)? = requests.first else {
            Issue.record("want a protocol error for \"\(escaped(Array(input.utf8)))\", got \(requests)")
            return
        }
        if let message { #expect(text == message) }
        #expect(left == 0, "bytes after a protocol error must be consumed and ignored")
        // Later reads are ignored too.
        let later = decode([encodeCommand("PING"), Array("PING\r\n".utf8)], decoder: &decoder)
        #expect(later.requests.isEmpty)
        #expect(later.left == 0)
    }

    @Test("a protocol error after complete requests keeps those, in order")
    func errorAfterRequests() {
        let bytes = encodeCommand("SET", "a", "1") + Array("GET a\r\n".utf8) + Array("*1\r\n:1\r\n".utf8) + encodeCommand("GET", "a")
        #expect(decode([bytes]) == [command("SET", "a", "1"), command("GET", "a"), .protocolError("expected '$', got ':'")])
        for seed in UInt64(1)...10 {
            #expect(decode(randomChunks(bytes, seed: seed, maximum: 5))
                    == [command("SET", "a", "1"), command("GET", "a"), .protocolError("expected '$', got ':'")])
        }
    }
}

@Suite("RESP request decoder: lines arriving in pieces")
struct RESPDecoderTrickleTests {
    /// Feeds `bytes` a byte per read, as the server's handler does (leftovers kept, new bytes appended, read bytes
    /// discarded), and returns the requests and the bytes searched for line ends.
    private func trickle(_ bytes: [UInt8]) -> (requests: [RESPRequest], searched: Int) {
        var decoder = RESPRequestDecoder()
        var buffer = ByteBuffer()
        var requests: [RESPRequest] = []
        for byte in bytes {
            buffer.writeInteger(byte)
            decoder.decode(&buffer, inPlace: { requests.append(.command($0.copied())) }, decoded: { requests.append($0) })
            buffer.discardReadBytes()
        }
        return (requests, decoder.lineSearchBytes)
    }

    // Found by the RequestDecoder fuzz target (its slowest inputs): each read searched the pending line from its
    // start, so a 64 KB line sent a byte per segment cost about 2 billion byte comparisons.
    @Test("an inline command a byte per read is searched for its end once, not once per read")
    func inlineTrickle() {
        let argument = [UInt8](repeating: UInt8(ascii: "a"), count: 60_000)
        let (requests, searched) = trickle(Array("GET ".utf8) + argument + Array("\r\n".utf8))
        #expect(requests == [.command([Array("GET".utf8), argument])])
        #expect(searched <= 60_006, "searched \(searched) bytes for a line of 60,006")
    }

    @Test("a header line a byte per read is searched once, and a too long one is still refused")
    func headerTrickle() {
        let (requests, searched) = trickle(Array("*".utf8) + [UInt8](repeating: UInt8(ascii: "0"), count: 30_000) + Array("1\r\n$4\r\nPING\r\n".utf8))
        #expect(requests == [.protocolError("invalid multibulk length")])
        #expect(searched <= 30_004, "searched \(searched) bytes for a line of 30,004")
        let (tooLong, searchedTooLong) = trickle(Array("*1".utf8) + [UInt8](repeating: UInt8(ascii: " "), count: 70_000))
        #expect(tooLong == [.protocolError("too big mbulk count string")])
        #expect(searchedTooLong <= 70_002)
    }

    @Test("a pipeline split anywhere decodes the same with the search remembered between reads")
    func pipelineAcrossReads() {
        let pipeline = Array("PING\r\nSET k v\r\n".utf8) + encodeCommand("GET", "k") + Array("ECHO hello\n".utf8)
        #expect(trickle(pipeline).requests == [
            .command([Array("PING".utf8)]), .command(["SET", "k", "v"].map { Array($0.utf8) }),
            .command(["GET", "k"].map { Array($0.utf8) }), .command(["ECHO", "hello"].map { Array($0.utf8) }),
        ])
    }
}
