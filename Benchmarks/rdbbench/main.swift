// Throughput of the RDB writer and reader on a synthetic snapshot (default: 1M keys of ~10 bytes, values of 100
// bytes), in CPU seconds of this thread, without the package build: compiled together with Sources/RDB by `swiftc -O`, see Docs/RDB.md.
//
//     swiftc -O -parse-as-library -module-name rdbbench Sources/RDB/*.swift Benchmarks/rdbbench/main.swift -o /tmp/rdbbench
//     /tmp/rdbbench [keys] [value-bytes]

#if canImport(Glibc)
import Glibc
#endif

@main
struct RDBBench {
    static func main() throws {
        let arguments = CommandLine.arguments
        let keyCount = arguments.count > 1 ? Int(arguments[1]) ?? 1_000_000 : 1_000_000
        let valueSize = arguments.count > 2 ? Int(arguments[2]) ?? 100 : 100
        // Values half text-like (compressible), half pseudo-random (not), as a store of mixed data would hold.
        var state: UInt64 = 42
        func nextRandom() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let keys = (0..<keyCount).map { Array("key:\($0)".utf8) }
        let values: [[UInt8]] = (0..<keyCount).map { index in
            if index % 2 == 0 {
                let text = Array("user:\(index) name=someone status=active score=\(index % 1000) ".utf8)
                return (0..<valueSize).map { text[$0 % text.count] }
            }
            return (0..<valueSize).map { _ in UInt8(truncatingIfNeeded: nextRandom()) }
        }
        let payload = Double(keys.reduce(0) { $0 + $1.count } + values.reduce(0) { $0 + $1.count })

        for compression in [false, true] {
            // First the writer alone, its output drained to nowhere (as to a socket), then again into memory for the reader.
            let discardStart = cpuSeconds()
            var discarding = RDBWriter(compression: compression)
            discarding.selectDB(0)
            var drainedBytes = 0
            for index in 0..<keyCount {
                discarding.append(key: keys[index], value: values[index])
                if discarding.pendingByteCount >= 1 << 16 { discarding.drain { drainedBytes += $0.count } }
            }
            discarding.finish()
            discarding.drain { drainedBytes += $0.count }
            let discardTime = cpuSeconds() - discardStart

            var file: [UInt8] = []
            file.reserveCapacity(Int(payload * 1.2))
            let writeStart = cpuSeconds()
            var writer = RDBWriter(auxFields: RDBWriter.replicationAuxFields(replicationID: String(repeating: "a", count: 40), replicationOffset: 0),
                                   compression: compression)
            writer.selectDB(0)
            writer.resizeDB(keys: keyCount, expires: 0)
            for index in 0..<keyCount {
                writer.append(key: keys[index], value: values[index])
                if writer.pendingByteCount >= 1 << 16 { writer.drain { file.append(contentsOf: $0) } }
            }
            writer.finish()
            writer.drain { file.append(contentsOf: $0) }
            let writeTime = cpuSeconds() - writeStart

            let readStart = cpuSeconds()
            var reader = RDBReader()
            var entries = 0, valueBytes = 0
            var position = 0
            while position < file.count {
                let end = min(position + (1 << 16), file.count)
                file[position..<end].withUnsafeBytes { reader.feed($0) }
                position = end
                while let event = try reader.next() {
                    if case .entry(_, let value, _) = event {
                        entries += 1
                        valueBytes += value.count
                    }
                }
            }
            try reader.finishInput()
            let readTime = cpuSeconds() - readStart
            precondition(entries == keyCount && valueBytes == keyCount * valueSize, "read back \(entries) entries")

            let megabytes = payload / 1e6
            print("""
                compression \(compression ? "on " : "off"): \(keyCount) keys × \(valueSize) B, file \(file.count / 1_000_000) MB; \
                write \(format(discardTime)) s (\(format(megabytes / discardTime)) MB/s of keys+values, \
                \(format(Double(keyCount) / discardTime / 1e6)) M keys/s; into memory \(format(writeTime)) s); \
                read \(format(readTime)) s (\(format(megabytes / readTime)) MB/s, \(format(Double(keyCount) / readTime / 1e6)) M keys/s)
                """)
        }
        var crc = CRC64()
        let block = [UInt8](repeating: 0x5A, count: 100 << 20)
        let crcStart = cpuSeconds()
        crc.update(block)
        let crcTime = cpuSeconds() - crcStart
        print("CRC64: \(format(100 * 1.048576 / crcTime)) MB/s (\(String(crc.value, radix: 16)))")
    }

    /// This thread's CPU time: the machines these run on are shared, and wall time would measure the neighbours.
    static func cpuSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    static func format(_ value: Double) -> String {
        let rounded = (value * 100).rounded() / 100
        return String(rounded)
    }
}
