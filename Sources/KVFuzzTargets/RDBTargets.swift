// The fuzz entry point of the RDB reader (Sources/RDB): snapshots arrive from a primary over the network.
import RDB

extension FuzzTargets {
    /// The RDB reader: fed the input whole and fed it in random pieces (down to single bytes), it yields the same
    /// events and the same error, never traps and never returns a key or value over its limits; a stream it reads to
    /// the end, written again by RDBWriter (with and without LZF), reads back as the same entries.
    public static func rdbReader(_ data: UnsafeRawBufferPointer) throws(FuzzViolation) {
        let limits = RDBReader.Limits(maxKeyLength: 1 << 12, maxValueLength: 1 << 16, maxEntries: 1 << 12, maxDatabaseIndex: 15)
        let bytes = Array(data)
        var random = InputRandom(data, salt: 0x52_44_42)

        func read(_ chunks: [ArraySlice<UInt8>]) -> (events: [RDBEvent], error: RDBError?) {
            var reader = RDBReader(limits: limits)
            var events: [RDBEvent] = []
            do {
                for chunk in chunks {
                    chunk.withUnsafeBytes { reader.feed($0) }
                    while let event = try reader.next() { events.append(event) }
                }
                try reader.finishInput()
                return (events, nil)
            } catch {
                return (events, error)
            }
        }

        let whole = read([bytes[...]])
        let pieced = read(pieces(bytes, maximum: Int(random.next() % 2) == 0 ? 1 : 300, &random))
        guard whole.events == pieced.events, whole.error?.kind == pieced.error?.kind else {
            throw FuzzViolation("RDBReader", "whole: \(whole.events.count) events, error \(whole.error.map(\.description) ?? "none"); "
                                + "in pieces: \(pieced.events.count) events, error \(pieced.error.map(\.description) ?? "none")")
        }
        var entries: [(key: [UInt8], value: [UInt8], expireAtMs: Int64?)] = []
        for event in whole.events {
            if case .entry(let key, let value, let expireAtMs) = event {
                guard key.count <= limits.maxKeyLength, value.count <= limits.maxValueLength else {
                    throw FuzzViolation("RDBReader", "an entry of \(key.count) + \(value.count) bytes passed the limits")
                }
                entries.append((key, value, expireAtMs))
            }
        }
        guard whole.error == nil else { return }
        guard whole.events.last == .end else { throw FuzzViolation("RDBReader", "read to the end without an end event") }
        for compression in [true, false] {
            var writer = RDBWriter(compression: compression)
            writer.selectDB(0)
            for entry in entries { writer.append(key: entry.key, value: entry.value, expireAtMs: entry.expireAtMs) }
            writer.finish()
            let again = read([writer.takeBytes()[...]])
            let reread = again.events.compactMap { event -> [UInt8]? in
                if case .entry(let key, let value, let expireAtMs) = event { return key + [0] + value + [0] + Array(String(describing: expireAtMs).utf8) }
                return nil
            }
            let original = entries.map { $0.key + [0] + $0.value + [0] + Array(String(describing: $0.expireAtMs).utf8) }
            guard again.error == nil, reread == original else {
                throw FuzzViolation("RDBReader", "\(entries.count) entries written again (compression \(compression)) read back as "
                                    + "\(reread.count), error \(again.error.map(\.description) ?? "none")")
            }
        }
    }
}
