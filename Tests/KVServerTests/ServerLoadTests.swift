// The server under load: clients that do not read their replies (back-pressure) and many concurrent clients
// whose every reply is checked against a model.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import KVStore
import Synchronization
import KVTestSupport
import Testing
@testable import KVCommands
@testable import RESP

/// What INFO says about the server's command counter.
func commandsProcessed(_ client: RESPClient) throws -> Int {
    let info = try client.call("INFO").string ?? ""
    for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("total_commands_processed:") {
        if let number = Int(line.dropFirst("total_commands_processed:".count)) { return number }
    }
    throw TestError("INFO has no total_commands_processed: \(info)")
}

@Suite("Server back-pressure", .serialized)
struct ServerBackPressureTests {
    /// A client pipelines 200k requests (GETs of 1 KB values, and an ECHO of its index every 1000th, so that order
    /// shows) and reads nothing. The server must stop reading from it, so its sends block; other clients must be
    /// served meanwhile; once the client reads, every reply arrives, correct and in order.
    @Test("a client that pipelines 200k GETs without reading blocks; others are served; then all replies arrive in order")
    func slowReader() throws {
        try withServer { server in
            let keys = (0..<16).map { "big:" + String(repeating: "k", count: 100) + ":\($0)" }
            let values = (0..<16).map { index in (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index &* 7) } }
            let setup = try server.connect()
            for (key, value) in zip(keys, values) {
                #expect(try setup.call([Array(key.utf8), value].withCommand("SET")) == .simple("OK"))
            }

            let total = 200_000
            let gets = keys.map { encodeCommand("GET", $0) }
            let getReplies = values.map { Array("$\($0.count)\r\n".utf8) + $0 + [0x0D, 0x0A] }
            func isEcho(_ index: Int) -> Bool { index % 1000 == 999 }
            var stream: [UInt8] = []
            stream.reserveCapacity(total * gets[0].count)
            for index in 0..<total {
                if isEcho(index) { stream += encodeCommand("ECHO", "echo:\(index)") } else { stream += gets[index % 16] }
            }
            func expectedReply(_ index: Int) -> [UInt8] {
                if isEcho(index) {
                    let text = "echo:\(index)"
                    return Array("$\(text.utf8.count)\r\n\(text)\r\n".utf8)
                }
                return getReplies[index % 16]
            }

            let before = try commandsProcessed(setup)
            // A small, fixed receive buffer: what the kernel holds for the client is small.
            let slow = try server.connect(receiveBuffer: 64 << 10)
            var sent = 0
            var stalled = false
            let sendDeadline = ContinuousClock.now + .seconds(60)
            while sent < stream.count && ContinuousClock.now < sendDeadline {
                let n = try stream.withUnsafeBytes { try slow.sendSome(UnsafeRawBufferPointer(rebasing: $0[sent...])) }
                sent += n
                // A server that keeps reading frees room within milliseconds; one that stopped never does.
                if n == 0 {
                    let ready = try slow.waitFor(events: Int16(POLLOUT), milliseconds: 1500)
                    if ready == 0 {
                        stalled = true
                        break
                    }
                }
            }
            #expect(stalled, "the client sent all \(sent) bytes of its pipeline without reading a reply: the server kept reading")
            #expect(sent < stream.count)
            // The stall is back-pressure, not a server that never got to this client: it ran the first requests,
            // whose replies wait in the client's socket.
            let answered = ContinuousClock.now + .seconds(60)
            while try slow.waitFor(events: Int16(POLLIN), milliseconds: 100) == 0 && ContinuousClock.now < answered {}
            #expect(try slow.waitFor(events: Int16(POLLIN), milliseconds: 0) != 0,
                    "no reply reached the client within 60 s: the server never ran its requests")

            // Meanwhile another client is served as usual.
            let other = try server.connect()
            #expect(try other.call("PING") == .simple("PONG"))
            #expect(try other.call("SET", "during", "stall") == .simple("OK"))
            #expect(try other.call([Array("GET".utf8), Array(keys[3].utf8)]) == .bulk(values[3]))
            // What the server ran for the stalled client had to be answered into buffers: it must be a bounded part.
            let ran = try commandsProcessed(other) - before - 4
            #expect(ran > 0 && ran < 50_000, "the server ran \(ran) of the stalled client's requests (1 KB replies each) while it read nothing")

            // Now the client reads (and sends the rest): every reply, in order.
            var replyIndex = 0
            var expected = expectedReply(0)
            var offset = 0
            var mismatch: String?
            let readDeadline = ContinuousClock.now + .seconds(120)
            reading: while replyIndex < total {
                guard ContinuousClock.now < readDeadline else {
                    Issue.record("only \(replyIndex) of \(total) replies arrived within 120 s (\(sent) of \(stream.count) bytes sent)")
                    break
                }
                if sent < stream.count {
                    sent += try stream.withUnsafeBytes { try slow.sendSome(UnsafeRawBufferPointer(rebasing: $0[sent...])) }
                }
                let events = Int16(POLLIN) | (sent < stream.count ? Int16(POLLOUT) : 0)
                _ = try slow.waitFor(events: events, milliseconds: 100)
                try slow.receiveAvailable()
                var chunk = try slow.take(upTo: Int.max, until: .now)
                if chunk.isEmpty && slow.sawEOF {
                    Issue.record("the server closed the connection after \(replyIndex) replies")
                    break
                }
                while !chunk.isEmpty {
                    let count = min(chunk.count, expected.count - offset)
                    if !sameBytes(chunk, expected, at: offset, count: count) {
                        mismatch = "reply \(replyIndex) differs: want \"\(escaped(expected[offset...], limit: 60))\", got \"\(escaped(chunk, limit: 60))\""
                        break reading
                    }
                    chunk = chunk.dropFirst(count)
                    offset += count
                    if offset == expected.count {
                        replyIndex += 1
                        offset = 0
                        if replyIndex == total {
                            if !chunk.isEmpty { mismatch = "bytes after the last reply: \"\(escaped(chunk, limit: 60))\"" }
                            break reading
                        }
                        expected = expectedReply(replyIndex)
                    }
                }
            }
            #expect(mismatch == nil, "\(mismatch ?? "")")
            #expect(replyIndex == total)
            #expect(try slow.call("GET", "during") == .text("stall"))
        }
    }

    /// A few bytes of requests can ask for far more bytes of replies: 256 GETs of a 1 MB value are 6 KB, one read,
    /// and 256 MB of replies. A server that runs everything it has read, whatever its output backlog, buffers all
    /// of it for a client that reads nothing; the back-pressure has to hold within one read too.
    @Test("replies held for a client that does not keep up stay bounded even when one read asks for 256 MB")
    func amplifiedPipeline() throws {
        try withServer { server in
            let value = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 131) }
            let setup = try server.connect()
            #expect(try setup.call([Array("SET".utf8), Array("huge".utf8), value]) == .simple("OK"))
            let before = try commandsProcessed(setup)

            let count = 256
            let slow = try server.connect(receiveBuffer: 64 << 10)
            try slow.send((0..<count).flatMap { _ in encodeCommand("GET", "huge") })

            // How many of the slow client's GETs the server has run (INFO on `setup` counts itself too).
            var probes = 0
            func ran() throws -> Int {
                probes += 1
                return try commandsProcessed(setup) - before - probes
            }

            // First the server must have read the pipeline and run some of it: the first reply reaches the client's
            // socket. (Before that, a counter that does not move says nothing about back-pressure.)
            let started = ContinuousClock.now + .seconds(60)
            while try slow.waitFor(events: Int16(POLLIN), milliseconds: 100) == 0 && ContinuousClock.now < started {}
            // The server adds a read's commands to its counter once it has processed the read, which can be just
            // after the first reply went out: wait for the counter too.
            var first = try ran()
            while first < 1 && ContinuousClock.now < started {
                first = try ran()
            }
            #expect(first >= 1, "the server ran none of the GETs within 60 s")

            // Then the client reads, and at every step the replies the server has produced but the client has not
            // taken stay bounded: a server with back-pressure runs a GET only as room frees up (each reply is 1 MB,
            // and the kernel holds a few MB at most); one without runs all 256 at once, holding 256 MB for the client.
            let bound = 64
            var most = first
            let expected = Array("$\(value.count)\r\n".utf8) + value + [0x0D, 0x0A]
            var received = 0
            var offset = 0
            var intact = true
            let readDeadline = ContinuousClock.now + .seconds(60)
            while received < count && ContinuousClock.now < readDeadline {
                let held = try ran() - received
                most = max(most, held)
                if held > bound { break }
                var chunk = try slow.take(upTo: Int.max, until: ContinuousClock.now + .milliseconds(100))
                if chunk.isEmpty && slow.sawEOF { break }
                while !chunk.isEmpty && intact {
                    let n = min(chunk.count, expected.count - offset)
                    intact = sameBytes(chunk, expected, at: offset, count: n)
                    chunk = chunk.dropFirst(n)
                    offset += n
                    if offset == expected.count { received += 1; offset = 0 }
                }
                if !intact { break }
            }
            #expect(most <= bound, "the server held up to \(most) replies of 1 MB (GETs run, not yet read) for a client that read slowly")
            #expect(intact, "reply \(received) differs")
            #expect(received == count)
        }
    }
}

/// Whether the first `count` bytes of `chunk` are `expected[offset..<offset + count]` (memcmp: fast in debug builds).
private func sameBytes(_ chunk: ArraySlice<UInt8>, _ expected: [UInt8], at offset: Int, count: Int) -> Bool {
    guard count > 0 else { return true }
    return chunk.withUnsafeBytes { got in
        expected.withUnsafeBytes { want in memcmp(got.baseAddress!, want.baseAddress! + offset, count) == 0 }
    }
}

extension Array where Element == [UInt8] {
    /// The arguments with a command name in front.
    func withCommand(_ name: String) -> [[UInt8]] {
        [[UInt8](name.utf8)] + self
    }
}

/// Failures reported from the client threads.
private final class Failures: Sendable {
    let list = Mutex<[String]>([])
    func add(_ failure: String) { list.withLock { $0.append(failure) } }
}

/// A value shared between threads that the test hands over whole (a connection to its thread).
private final class Handoff<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

@Suite("Server concurrency")
struct ServerConcurrencyTests {
    /// One connection's random workload on its own keys, with the reply a model predicts for each command.
    struct Workload {
        var batches: [(commands: [UInt8], replies: [Wire], descriptions: [String])] = []
        var model: [String: [UInt8]] = [:]

        init(connection: Int, seed: UInt64, useIncr: Bool) {
            var generator = SplitMix64(seed: seed)
            let strings = (0..<8).map { "c\(connection):s\($0)" }
            let counters = (0..<4).map { "c\(connection):n\($0)" }
            let everyKey = strings + counters
            for _ in 0..<8 {
                var commands: [UInt8] = []
                var replies: [Wire] = []
                var descriptions: [String] = []
                for _ in 0..<Int.random(in: 1...40, using: &generator) {
                    let arguments: [[UInt8]]
                    let reply: Wire
                    switch Int.random(in: 0..<10, using: &generator) {
                    case 0..<3:
                        let key = strings.randomElement(using: &generator)!
                        let value = (0..<Int.random(in: 0...64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                        arguments = [Array("SET".utf8), Array(key.utf8), value]
                        model[key] = value
                        reply = .simple("OK")
                    case 3..<5:
                        let key = everyKey.randomElement(using: &generator)!
                        arguments = [Array("GET".utf8), Array(key.utf8)]
                        reply = model[key].map(Wire.bulk) ?? .nullBulk
                    case 5:
                        let keys = (0..<Int.random(in: 1...3, using: &generator)).map { _ in everyKey.randomElement(using: &generator)! }
                        arguments = [Array("DEL".utf8)] + keys.map { Array($0.utf8) }
                        let removed = Set(keys).filter { model[$0] != nil }
                        removed.forEach { model[$0] = nil }
                        reply = .integer(removed.count)
                    case 6:
                        let keys = (0..<Int.random(in: 1...3, using: &generator)).map { _ in everyKey.randomElement(using: &generator)! }
                        arguments = [Array("EXISTS".utf8)] + keys.map { Array($0.utf8) }
                        reply = .integer(keys.filter { model[$0] != nil }.count)
                    default:
                        let key = counters.randomElement(using: &generator)!
                        if useIncr {
                            arguments = [Array("INCR".utf8), Array(key.utf8)]
                            let next = (model[key].flatMap { Int($0.text) } ?? 0) + 1
                            model[key] = Array(String(next).utf8)
                            reply = .integer(next)
                        } else {
                            arguments = [Array("GET".utf8), Array(key.utf8)]
                            reply = model[key].map(Wire.bulk) ?? .nullBulk
                        }
                    }
                    commands += encodeCommand(arguments)
                    replies.append(reply)
                    descriptions.append(arguments.map { escaped($0, limit: 40) }.joined(separator: " "))
                }
                batches.append((commands, replies, descriptions))
            }
        }
    }

    @Test("200 concurrent connections pipelining random SET/GET/DEL/EXISTS/INCR: every reply as the model says")
    func concurrentConnections() throws {
        try withServer { server in
            let connections = 200
            let probe = try server.connect()
            // INCR is checked when the command table has it.
            let useIncr = try probe.call("INCR", "probe:counter") == .integer(1)
            _ = try probe.call("DEL", "probe:counter")

            let workloads = (0..<connections).map { Workload(connection: $0, seed: UInt64($0) &* 7919 &+ 1, useIncr: useIncr) }
            // Every connection is open before any starts: all 200 are connected at once.
            let clients = try (0..<connections).map { _ in try server.connect() }

            let failures = Failures()
            let finished = DispatchSemaphore(value: 0)
            for index in 0..<connections {
                let handoff = Handoff((clients[index], workloads[index]))
                let thread = Thread {
                    let (client, workload) = handoff.value
                    defer { finished.signal() }
                    do {
                        for (batchIndex, batch) in workload.batches.enumerated() {
                            try client.send(batch.commands, timeout: .seconds(60))
                            let got = try client.replies(batch.replies.count, timeout: .seconds(60))
                            for (position, (want, have)) in zip(batch.replies, got).enumerated() where want != have {
                                failures.add("connection \(index), batch \(batchIndex): \(batch.descriptions[position]) → want \(want), got \(have)")
                                return
                            }
                        }
                    } catch {
                        failures.add("connection \(index): \(error)")
                    }
                }
                thread.stackSize = 1 << 20
                thread.start()
            }
            var done = 0
            while done < connections, finished.wait(timeout: .now() + .seconds(120)) == .success { done += 1 }
            #expect(done == connections, "only \(done) of \(connections) connections finished within the deadline")
            let problems = failures.list.withLock { $0 }
            #expect(problems.isEmpty, "\(problems.count) connections failed; first: \(problems.prefix(5).joined(separator: "; "))")

            // The store holds exactly the union of the models.
            var union: [[UInt8]: [UInt8]] = [:]
            for workload in workloads {
                for (key, value) in workload.model { union[Array(key.utf8)] = value }
            }
            let stored = server.store.range(from: nil, to: nil)
            #expect(stored.count == union.count, "the store has \(stored.count) keys, the models \(union.count)")
            var wrong = 0
            for (key, value) in stored where union[key] != value { wrong += 1 }
            #expect(wrong == 0, "\(wrong) keys differ from the models")
            #expect(try probe.call("DBSIZE") == .integer(union.count))
            withExtendedLifetime(clients) {}
        }
    }
}
