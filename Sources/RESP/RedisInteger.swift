/// Integer arguments as Redis reads them, shared by the data commands and the server's own (SELECT, HELLO,
/// CLIENT LIST ID).
public enum RedisInteger {
    /// A decimal integer as Redis's `string2ll` reads one: an optional `-`, no `+`, no blanks, no leading zeros,
    /// within 64 bits.
    public static func parse(_ bytes: [UInt8]) -> Int? {
        guard !bytes.isEmpty else { return nil }
        if bytes == [UInt8(ascii: "0")] { return 0 }
        let negative = bytes[0] == UInt8(ascii: "-")
        let digits = negative ? bytes.dropFirst() : bytes[...]
        guard let first = digits.first, first >= UInt8(ascii: "1") && first <= UInt8(ascii: "9") else { return nil }
        var magnitude: UInt64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            guard !overflow1 && !overflow2 else { return nil }
            magnitude = sum
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int(Int64.min) : -Int(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { return nil }
        return Int(magnitude)
    }

    /// Appends `number` in decimal ASCII.
    public static func append(_ number: Int, to bytes: inout [UInt8]) {
        if number >= 0 && number < 10 {
            bytes.append(UInt8(ascii: "0") + UInt8(number))
        } else {
            bytes.append(contentsOf: String(number).utf8)
        }
    }

    /// A length or integer in a reply's header line, as servers write them: an optional `-` and 1 to 19 digits,
    /// within 64 bits. (Leading zeros are accepted here: nothing depends on their absence, unlike arguments.)
    public static func parseHeader(_ bytes: ArraySlice<UInt8>) -> Int? {
        var digits = bytes
        let negative = digits.first == UInt8(ascii: "-")
        if negative { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.count <= 19 else { return nil }
        var value = 0
        for digit in digits {
            guard digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9") else { return nil }
            // Accumulated negatively, so that Int.min is reachable.
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.subtractingReportingOverflow(Int(digit - UInt8(ascii: "0")))
            guard !overflow1 && !overflow2 else { return nil }
            value = sum
        }
        if negative { return value }
        return value == Int.min ? nil : -value
    }
}
