import Crypto
import Foundation  // DataProtocol for [UInt8]
import _CryptoExtras

/// A stored password: never the password itself.
///
/// kvsh makes `pbkdf2-sha256$<iterations>$<salt hex>$<digest hex>` (PBKDF2-HMAC-SHA256, a random 16-byte salt),
/// so that a stolen ACL file costs an attacker a slow, per-user guess. Redis's unsalted `<64 hex>` SHA-256 form is
/// accepted too (`#hex` in `ACL SETUSER` and ACL files written by Redis), for import: it is replaced by the salted
/// form the first time the user authenticates with it (see ``AccessControl/authenticate(user:password:)``).
public struct PasswordHash: Sendable, Hashable, CustomStringConvertible {
    /// The text after `#` in a rule: what `ACL LIST`, `ACL GETUSER` and `ACL SAVE` show.
    public let text: String

    /// PBKDF2 rounds for new hashes: about 50 ms on one core, once per password per server (successful checks are
    /// remembered in memory, see ``AccessControl``).
    public static let defaultIterations = 100_000
    static let prefix = "pbkdf2-sha256$"
    /// Bounds what an ACL file can ask of AUTH: a hash with a billion rounds would stall the server.
    static let iterationRange = 1_000...10_000_000

    public var description: String { text }

    /// Parses the text of a `#hash` rule: Redis's 64 lowercase hex digits, or kvsh's salted form.
    public init?(text: String) {
        if Self.isSHA256Hex(text) {
            self.text = text
            return
        }
        guard text.hasPrefix(Self.prefix) else { return nil }
        let parts = text.dropFirst(Self.prefix.count).split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 3, let rounds = Int(parts[0]), Self.iterationRange.contains(rounds),
              let salt = Self.bytes(hex: parts[1]), salt.count >= 8, salt.count <= 64,
              let digest = Self.bytes(hex: parts[2]), digest.count == 32 else { return nil }
        self.text = text
    }

    /// Hashes a new password with a fresh random salt.
    public static func make(password: [UInt8], iterations: Int = defaultIterations) -> PasswordHash {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let digest = pbkdf2(password, salt: salt, iterations: iterations)
        // Only our own well-formed text reaches init(text:), which accepts it.
        return PasswordHash(uncheckedText: "\(prefix)\(iterations)$\(hex(salt))$\(hex(digest))")
    }

    /// Redis's form: the SHA-256 of the password in lowercase hex.
    public static func sha256Hex(_ password: [UInt8]) -> String {
        hex(Array(SHA256.hash(data: password)))
    }

    private init(uncheckedText: String) { text = uncheckedText }

    /// Whether this is Redis's unsalted form (upgraded on the next successful authentication).
    public var isUnsalted: Bool { !text.hasPrefix(Self.prefix) }

    /// Whether `password` is the one hashed, compared in constant time.
    public func verify(_ password: [UInt8]) -> Bool {
        if isUnsalted {
            return Self.constantTimeEquals(Array(Self.sha256Hex(password).utf8), Array(text.utf8))
        }
        let parts = text.dropFirst(Self.prefix.count).split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 3, let rounds = Int(parts[0]), let salt = Self.bytes(hex: parts[1]),
              let expected = Self.bytes(hex: parts[2]) else { return false }
        return Self.constantTimeEquals(Self.pbkdf2(password, salt: salt, iterations: rounds), expected)
    }

    static func pbkdf2(_ password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        // deriveKey throws only for an unsupported hash or a zero-length output, neither possible here.
        guard let key = try? KDF.Insecure.PBKDF2.deriveKey(from: password, salt: salt, using: .sha256,
                                                           outputByteCount: 32, unsafeUncheckedRounds: iterations) else {
            return []
        }
        return key.withUnsafeBytes { Array($0) }
    }

    /// Compares without an early exit, so the time taken says nothing about where the first difference is.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count, !a.isEmpty else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    static func isSHA256Hex(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func bytes(hex: Substring) -> [UInt8]? {
        let utf8 = Array(hex.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            default: return nil
            }
        }
        var out: [UInt8] = []
        var index = 0
        while index < utf8.count {
            guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }
}
