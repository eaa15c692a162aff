/// Splits a command line into arguments, with the quoting rules of redis-cli:
///
/// - Arguments are separated by blanks (space, tab, CR, LF, vertical tab, form feed).
/// - `"..."` understands the escapes `\n \r \t \a \b \" \\` and `\xHH` (two hex digits); any other
///   backslash-escaped byte stands for itself.
/// - `'...'` is literal, except that `\'` is a single quote.
/// - A quote may open in the middle of an argument (`a"b c"` is `ab c`), but a closing quote must be followed
///   by a blank or the end of the line; anything else, or a quote left open, is an unbalanced-quotes error.
///
/// Works on bytes: arguments are arbitrary byte strings (UTF-8 passes through untouched).
public enum Tokenizer {
    public struct UnbalancedQuotes: Error, Equatable, Sendable {}

    @inline(__always)
    public static func isBlank(_ byte: UInt8) -> Bool {
        byte == 0x20 || (byte >= 0x09 && byte <= 0x0D)
    }

    public static func split(_ line: [UInt8]) throws(UnbalancedQuotes) -> [[UInt8]] {
        let result = line.withUnsafeBytes { bytes in Result { () throws(UnbalancedQuotes) in try split(bytes) } }
        return try result.get()
    }

    public static func split(_ line: UnsafeRawBufferPointer) throws(UnbalancedQuotes) -> [[UInt8]] {
        var arguments: [[UInt8]] = []
        arguments.reserveCapacity(4)  // most commands have a few arguments: one allocation instead of three
        var position = 0
        let end = line.count

        /// The end of the run of bytes from `position` on that are none of `stops` (and not blanks if asked).
        func run(from position: Int, stoppingAtBlanks: Bool, _ stop1: UInt8, _ stop2: UInt8) -> Int {
            var index = position
            while index < end {
                let byte = line[index]
                if byte == stop1 || byte == stop2 || (stoppingAtBlanks && isBlank(byte)) { break }
                index += 1
            }
            return index
        }

        while true {
            while position < end && isBlank(line[position]) { position += 1 }
            if position == end { return arguments }
            // Bytes are copied a run at a time: most arguments are one unquoted run, copied in one go.
            var argument: [UInt8] = []
            argumentLoop: while position < end {
                switch line[position] {
                case UInt8(ascii: "\""):
                    position += 1
                    while true {
                        let stop = run(from: position, stoppingAtBlanks: false, UInt8(ascii: "\\"), UInt8(ascii: "\""))
                        argument.append(contentsOf: UnsafeRawBufferPointer(rebasing: line[position..<stop]))
                        position = stop
                        guard position < end else { throw UnbalancedQuotes() }
                        if line[position] == UInt8(ascii: "\"") { break }
                        // A backslash: \xHH, a named escape, or the next byte itself.
                        if position + 3 < end && line[position + 1] == UInt8(ascii: "x"),
                           let high = hexValue(line[position + 2]), let low = hexValue(line[position + 3]) {
                            argument.append(high << 4 | low)
                            position += 4
                        } else if position + 1 < end {
                            argument.append(unescaped(line[position + 1]))
                            position += 2
                        } else {
                            throw UnbalancedQuotes()
                        }
                    }
                    position += 1
                    guard position == end || isBlank(line[position]) else { throw UnbalancedQuotes() }
                    break argumentLoop
                case UInt8(ascii: "'"):
                    position += 1
                    while true {
                        let stop = run(from: position, stoppingAtBlanks: false, UInt8(ascii: "\\"), UInt8(ascii: "'"))
                        argument.append(contentsOf: UnsafeRawBufferPointer(rebasing: line[position..<stop]))
                        position = stop
                        guard position < end else { throw UnbalancedQuotes() }
                        if line[position] == UInt8(ascii: "'") { break }
                        if position + 1 < end && line[position + 1] == UInt8(ascii: "'") {
                            argument.append(UInt8(ascii: "'"))
                            position += 2
                        } else {
                            argument.append(UInt8(ascii: "\\"))
                            position += 1
                        }
                    }
                    position += 1
                    guard position == end || isBlank(line[position]) else { throw UnbalancedQuotes() }
                    break argumentLoop
                case let byte where isBlank(byte):
                    break argumentLoop
                default:
                    let stop = run(from: position, stoppingAtBlanks: true, UInt8(ascii: "\""), UInt8(ascii: "'"))
                    if argument.isEmpty && (stop == end || isBlank(line[stop])) {
                        argument = Array(UnsafeRawBufferPointer(rebasing: line[position..<stop]))
                    } else {
                        argument.append(contentsOf: UnsafeRawBufferPointer(rebasing: line[position..<stop]))
                    }
                    position = stop
                }
            }
            arguments.append(argument)
        }
    }

    @inline(__always)
    public static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    @inline(__always)
    static func unescaped(_ byte: UInt8) -> UInt8 {
        switch byte {
        case UInt8(ascii: "n"): return 0x0A
        case UInt8(ascii: "r"): return 0x0D
        case UInt8(ascii: "t"): return 0x09
        case UInt8(ascii: "b"): return 0x08
        case UInt8(ascii: "a"): return 0x07
        default: return byte
        }
    }
}
