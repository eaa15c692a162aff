/// A rule of `ACL SETUSER` that could not be applied, worded as Redis 7.0 words the reason.
public struct ACLRuleError: Error, Sendable, Equatable, CustomStringConvertible {
    public let rule: String
    public let reason: String

    public static let syntax = "Syntax error"
    public static let unknownCommand = "Unknown command or category name in ACL"
    public static let noSuchPassword = "The password you are trying to remove from the user does not exist"
    public static let badHash = "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters"
    public static let firstArgument = "Allowing first-arg of a subcommand is not supported"

    /// `ACL SETUSER`'s reply text (after `ERR `).
    public var description: String { "Error in ACL SETUSER modifier '\(rule)': \(reason)" }
}

/// A key pattern and what it allows: `~p` (read and write), `%R~p`, `%W~p`, `%RW~p`.
public struct ACLKeyPattern: Sendable, Equatable {
    public let pattern: GlobPattern
    public let access: ACLKeyAccess

    public static func == (a: Self, b: Self) -> Bool { a.pattern.pattern == b.pattern.pattern && a.access == b.access }

    /// As `ACL LIST` shows it.
    public var rule: String {
        let text = String(decoding: pattern.pattern, as: UTF8.self)
        switch access {
        case .read: return "%R~" + text
        case .write: return "%W~" + text
        default: return "~" + text
        }
    }
}

/// One ACL user: Redis 7.0's model without selectors. Built by applying `ACL SETUSER` rules left to right; a
/// value type, so that a connection holds a consistent snapshot of its user.
public struct ACLUser: Sendable {
    public let name: String
    public internal(set) var enabled = false
    public internal(set) var noPassword = false
    public internal(set) var passwords: [PasswordHash] = []
    public internal(set) var keyPatterns: [ACLKeyPattern] = []
    /// Pub/sub channel patterns: kept and shown for Redis's sake (kvsh has no pub/sub).
    public internal(set) var channels: [String] = []
    public internal(set) var sanitizePayload = false
    /// The commands allowed, one bit per catalog entry.
    var allowed: [UInt64]
    /// The command rules as `ACL LIST` shows them: a base (`+@all` or `-@all`) and the rules applied since.
    public internal(set) var commandRules: [String] = ["-@all"]

    /// A new user, as Redis makes one: `off`, no passwords, no keys, no channels, no commands.
    public init(name: String, catalog: ACLCatalog) {
        self.name = name
        allowed = Array(repeating: 0, count: (catalog.entries.count + 63) / 64)
    }

    /// Whether the user may run every command on every key: the connection then skips the checks.
    public var isUnrestricted: Bool {
        allowed.allSatisfy { $0 == .max }
            && keyPatterns.contains { $0.access == .readWrite && $0.pattern.pattern == [UInt8(ascii: "*")] }
    }

    public func mayRun(_ index: Int) -> Bool {
        let word = index >> 6
        return word < allowed.count && allowed[word] & (1 << UInt64(index & 63)) != 0
    }

    /// Whether one of the key patterns matches `key` and allows `access`.
    public func mayAccess(_ key: [UInt8], _ access: ACLKeyAccess) -> Bool {
        key.withUnsafeBytes { mayAccess($0, access) }
    }

    /// The same, on key bytes in place (a server's request buffer).
    public func mayAccess(_ key: UnsafeRawBufferPointer, _ access: ACLKeyAccess) -> Bool {
        keyPatterns.contains { $0.access.isSuperset(of: access) && $0.pattern.matches(key) }
    }

    /// Whether the user may touch every key with `access` (RANGE, which returns values of keys it does not name).
    public func mayAccessAllKeys(_ access: ACLKeyAccess) -> Bool {
        keyPatterns.contains { $0.access.isSuperset(of: access) && $0.pattern.pattern == [UInt8(ascii: "*")] }
    }

    /// Applies rules left to right; stops at the first that fails, which the caller reports (and, as Redis does,
    /// discards the whole change by not storing the copy).
    public mutating func apply(_ rules: [String], catalog: ACLCatalog, hashPassword: (String) -> PasswordHash) throws(ACLRuleError) {
        for rule in rules { try apply(rule, catalog: catalog, hashPassword: hashPassword) }
    }

    public mutating func apply(_ rule: String, catalog: ACLCatalog, hashPassword: (String) -> PasswordHash) throws(ACLRuleError) {
        func fail(_ reason: String) -> ACLRuleError { ACLRuleError(rule: rule, reason: reason) }
        let lower = rule.lowercased()
        switch lower {
        case "on": enabled = true
        case "off": enabled = false
        case "nopass":
            noPassword = true
            passwords = []
        case "resetpass":
            noPassword = false
            passwords = []
        case "allkeys": keyPatterns = [ACLKeyPattern(pattern: GlobPattern(Array("*".utf8)), access: .readWrite)]
        case "resetkeys": keyPatterns = []
        case "allchannels": channels = ["*"]
        case "resetchannels": channels = []
        case "allcommands", "+@all": setAll(true, catalog: catalog)
        case "nocommands", "-@all": setAll(false, catalog: catalog)
        case "sanitize-payload": sanitizePayload = true
        case "skip-sanitize-payload": sanitizePayload = false
        case "reset":
            self = ACLUser(name: name, catalog: catalog)
            sanitizePayload = true
        default:
            guard let first = rule.first else { throw fail(ACLRuleError.syntax) }
            let rest = String(rule.dropFirst())
            switch first {
            case ">":
                let hash = hashPassword(rest)
                // The same password twice is kept once, as in Redis (compared by verifying, since salts differ).
                if !passwords.contains(where: { $0.verify(Array(rest.utf8)) }) { passwords.append(hash) }
                noPassword = false
            case "<":
                guard let index = passwords.firstIndex(where: { $0.verify(Array(rest.utf8)) }) else {
                    throw fail(ACLRuleError.noSuchPassword)
                }
                passwords.remove(at: index)
            case "#":
                guard let hash = PasswordHash(text: rest) else { throw fail(ACLRuleError.badHash) }
                if !passwords.contains(hash) { passwords.append(hash) }
                noPassword = false
            case "!":
                guard PasswordHash(text: rest) != nil else { throw fail(ACLRuleError.badHash) }
                guard let index = passwords.firstIndex(where: { $0.text == rest }) else { throw fail(ACLRuleError.noSuchPassword) }
                passwords.remove(at: index)
            case "~":
                addKeyPattern(rest, .readWrite)
            case "%":
                // %R~pattern, %W~pattern, %RW~pattern (any order, any case, as Redis parses them).
                guard let tilde = rest.firstIndex(of: "~") else { throw fail(ACLRuleError.syntax) }
                var access: ACLKeyAccess = []
                for flag in rest[..<tilde].uppercased() {
                    switch flag {
                    case "R": access.insert(.read)
                    case "W": access.insert(.write)
                    default: throw fail(ACLRuleError.syntax)
                    }
                }
                guard !access.isEmpty else { throw fail(ACLRuleError.syntax) }
                addKeyPattern(String(rest[rest.index(after: tilde)...]), access)
            case "&":
                if rest == "*" { channels = ["*"] } else if !channels.contains("*") && !channels.contains(rest) { channels.append(rest) }
            case "+", "-":
                try applyCommandRule(allow: first == "+", String(lower.dropFirst()), catalog: catalog, rule: rule)
            default:
                throw fail(ACLRuleError.syntax)
            }
        }
    }

    private mutating func addKeyPattern(_ text: String, _ access: ACLKeyAccess) {
        let pattern = ACLKeyPattern(pattern: GlobPattern(Array(text.utf8)), access: access)
        if let index = keyPatterns.firstIndex(where: { $0.pattern.pattern == pattern.pattern.pattern }) {
            // Redis merges the permissions of one pattern named twice.
            keyPatterns[index] = ACLKeyPattern(pattern: pattern.pattern, access: keyPatterns[index].access.union(access))
        } else {
            keyPatterns.append(pattern)
        }
    }

    private mutating func setAll(_ allow: Bool, catalog: ACLCatalog) {
        for index in allowed.indices { allowed[index] = allow ? .max : 0 }
        commandRules = [allow ? "+@all" : "-@all"]
    }

    private mutating func applyCommandRule(allow: Bool, _ name: String, catalog: ACLCatalog, rule: String) throws(ACLRuleError) {
        let targets: [Int]
        let text: String
        if name.hasPrefix("@") {
            guard let category = ACLCategories.named(String(name.dropFirst())) else {
                throw ACLRuleError(rule: rule, reason: ACLRuleError.unknownCommand)
            }
            targets = catalog.indices(in: category)
            text = name
        } else {
            guard let index = catalog.index(named: name) else {
                // `+select|0` (a first argument) is Redis's, for commands without subcommands; kvsh has none to allow.
                if let bar = name.firstIndex(of: "|"), catalog.index(named: String(name[..<bar])) != nil {
                    throw ACLRuleError(rule: rule, reason: allow ? ACLRuleError.firstArgument : ACLRuleError.unknownCommand)
                }
                guard RedisCommandNames.contains(name) else { throw ACLRuleError(rule: rule, reason: ACLRuleError.unknownCommand) }
                // A Redis command kvsh does not have: nothing to allow or deny, the rule is kept as given.
                let key = name.lowercased()
                commandRules.removeAll { $0.dropFirst().lowercased() == key }
                commandRules.append((allow ? "+" : "-") + name)
                return
            }
            let entry = catalog.entries[index]
            targets = [index] + entry.children
            text = name  // as given: `-del` shows as `-del`, not as kvsh's name DELETE
        }
        for index in targets {
            if allow { allowed[index >> 6] |= 1 << UInt64(index & 63) } else { allowed[index >> 6] &= ~(1 << UInt64(index & 63)) }
        }
        // Shown once, where it was last applied.
        let key = name.hasPrefix("@") ? name : catalog.entries[targets[0]].fullName
        commandRules.removeAll { rule in
            let body = String(rule.dropFirst())
            return body.hasPrefix("@") ? body == key : catalog.index(named: body).map { catalog.entries[$0].fullName } == key
        }
        commandRules.append((allow ? "+" : "-") + text)
    }

    /// The flags `ACL GETUSER` lists.
    public var flags: [String] {
        var flags = [enabled ? "on" : "off"]
        if noPassword { flags.append("nopass") }
        if sanitizePayload { flags.append("sanitize-payload") }
        return flags
    }

    /// The key patterns as `ACL GETUSER` shows them (`~app:* %R~ro:*`).
    public var keysDescription: String { keyPatterns.map(\.rule).joined(separator: " ") }

    public var channelsDescription: String { channels.map { "&" + $0 }.joined(separator: " ") }

    /// The user's rules as `ACL LIST` shows them and the ACL file stores them: applied to a new user, they make
    /// this one. Passwords appear only as hashes.
    public var rules: [String] {
        var rules = flags
        rules += passwords.map { "#" + $0.text }
        rules += keyPatterns.map(\.rule)
        // As Redis: `&*` alone for every channel, otherwise `resetchannels` and then the patterns.
        if channels == ["*"] { rules.append("&*") } else { rules += ["resetchannels"] + channels.map { "&" + $0 } }
        rules += commandRules
        return rules
    }

    public var description: String { (["user", name] + rules).joined(separator: " ") }
}
