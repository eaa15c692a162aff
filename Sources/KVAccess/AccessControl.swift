import Crypto
import Foundation  // DataProtocol for [UInt8]
import Synchronization

/// An `ACL LOG` entry, in Redis 7.0's shape.
public struct ACLLogEntry: Sendable {
    public enum Reason: String, Sendable { case auth, command, key }
    public var count: Int
    public let reason: Reason
    /// `auth`, the command's full name (`acl|whoami`), or the key refused.
    public let object: String
    public let username: String
    public var lastSeen: ContinuousClock.Instant
    public var clientInfo: String
}

/// The server's users, shared by every connection: the ACL rules applied, authentication, `ACL LOG`, the ACL file.
///
/// Connections keep a snapshot of their user and compare ``generation`` (one relaxed atomic load) before each
/// command: a change to any user (`ACL SETUSER`, `DELUSER`, `LOAD`) bumps it, and the next command of every
/// connection picks up its user's new rules, as Redis applies them at once.
public final class AccessControl: Sendable {
    public let catalog: ACLCatalog
    /// The ACL file (`--aclfile`), for `ACL SAVE` and `ACL LOAD`; nil without one.
    public let aclFile: String?
    private let users: Mutex<[String: ACLUser]>
    private let log = Mutex<[ACLLogEntry]>([])
    public let generation = Atomic<UInt64>(0)
    /// Password checks that succeeded, remembered as keyed digests so that a client reconnecting with the same
    /// password costs a SHA-256 rather than a PBKDF2. The key is random per process: the digests mean nothing
    /// outside it, and nothing here reaches a file.
    private let verified = Mutex<Set<[UInt8]>>([])
    /// Password checks that failed, the same way, keyed by the user's password hashes too (a change of passwords
    /// makes them miss): a client repeating a wrong password costs no PBKDF2 either.
    private let refused = Mutex<Set<[UInt8]>>([])
    private let verificationKey = SymmetricKey(size: .bits256)
    private let iterations: Int

    /// Redis's `acllog-max-len` default.
    public static let maxLogEntries = 128
    static let maxVerifiedEntries = 4096

    /// `users`, plus Redis's default user if they have none (`on nopass ~* &* +@all`, or with `requirePass` as its
    /// only password).
    public init(catalog: ACLCatalog, users: [ACLUser] = [], aclFile: String? = nil, requirePass: String? = nil,
                iterations: Int = PasswordHash.defaultIterations) {
        self.catalog = catalog
        self.aclFile = aclFile
        self.iterations = iterations
        var initial: [String: ACLUser] = [:]
        for user in users { initial[user.name] = user }
        if initial["default"] == nil {
            initial["default"] = Self.defaultUser(catalog: catalog, requirePass: requirePass, iterations: iterations)
        }
        self.users = Mutex(initial)
    }

    /// The users of the ACL file `aclFile` (Redis's format).
    /// - Throws: ``ACLFileError`` naming the file and the line of the first bad rule.
    public static func loading(catalog: ACLCatalog, aclFile: String,
                               iterations: Int = PasswordHash.defaultIterations) throws(ACLFileError) -> AccessControl {
        let hash = { (password: String) in PasswordHash.make(password: Array(password.utf8), iterations: iterations) }
        let users = try ACLFile.parse(ACLFile.read(path: aclFile), path: aclFile, catalog: catalog, hashPassword: hash)
        return AccessControl(catalog: catalog, users: users, aclFile: aclFile, iterations: iterations)
    }

    static func defaultUser(catalog: ACLCatalog, requirePass: String?, iterations: Int) -> ACLUser {
        var user = ACLUser(name: "default", catalog: catalog)
        let rules = ["on", requirePass.map { ">" + $0 } ?? "nopass", "~*", "&*", "+@all"]
        // These rules are valid by construction.
        try? user.apply(rules, catalog: catalog) { PasswordHash.make(password: Array($0.utf8), iterations: iterations) }
        return user
    }

    /// Redis's rule for user names: no spaces or NUL (they would break the ACL file's lines).
    public static func isValidUserName(_ name: String) -> Bool {
        !name.isEmpty && !name.utf8.contains { $0 == 0 || $0 == 32 || $0 == 9 || $0 == 10 || $0 == 13 }
    }

    // MARK: Users

    public func user(named name: String) -> ACLUser? {
        users.withLock { $0[name] }
    }

    /// Every user, by name (as `ACL USERS` and `ACL LIST` order them).
    public func allUsers() -> [ACLUser] {
        users.withLock { $0.values.sorted { $0.name < $1.name } }
    }

    /// Whether a new connection must authenticate first: the default user has passwords, or is off (Redis's
    /// `authRequired`).
    public var authenticationRequired: Bool {
        users.withLock { users in
            guard let user = users["default"] else { return true }
            return !user.noPassword || !user.enabled
        }
    }

    /// `ACL SETUSER name rules...`: creates the user if needed and applies the rules to a copy, stored only if
    /// every rule applies.
    public func setUser(_ name: String, rules: [String]) throws(ACLRuleError) {
        // Hash the new passwords outside the lock: PBKDF2 takes milliseconds.
        let existing = user(named: name) ?? ACLUser(name: name, catalog: catalog)
        var updated = existing
        try updated.apply(rules, catalog: catalog, hashPassword: makeHash)
        users.withLock { $0[name] = updated }
        changed()
    }

    /// `ACL DELUSER`: how many of `names` existed and were removed. The default user cannot be (the caller says so).
    public func deleteUsers(_ names: [String]) -> Int {
        let removed = users.withLock { users in names.reduce(0) { $0 + (users.removeValue(forKey: $1) == nil ? 0 : 1) } }
        if removed > 0 { changed() }
        return removed
    }

    private func changed() {
        generation.wrappingAdd(1, ordering: .releasing)
    }

    private func makeHash(_ password: String) -> PasswordHash {
        PasswordHash.make(password: Array(password.utf8), iterations: iterations)
    }

    // MARK: Authentication

    /// The user `name` if it exists, is on, and `password` is one of its passwords (any password for a `nopass`
    /// user); nil otherwise, without saying which (as Redis's WRONGPASS does not).
    /// May take tens of milliseconds (a PBKDF2 per password hash): a server asks ``quickAuthentication(user:password:)``
    /// on its event loop and calls this elsewhere only when that says `needsHashing`.
    public func authenticate(user name: String, password: [UInt8]) -> ACLUser? {
        if case .decided(let user) = quickAuthentication(user: name, password: password) { return user }
        guard let user = user(named: name) else { return nil }
        let remembered = rememberedDigest(user: name, password: password)
        for hash in user.passwords where hash.verify(password) {
            remember(outcomeDigest(remembered, [hash]), accepted: true)
            if hash.isUnsalted { upgrade(user: name, from: hash, password: password) }
            return self.user(named: name) ?? user
        }
        remember(outcomeDigest(remembered, user.passwords), accepted: false)
        return nil
    }

    /// What checking a password costs now: an answer at once, or a PBKDF2 first.
    public enum QuickAuthentication: Sendable {
        /// The user it authenticates, or nil (no such user, a disabled one, a password checked before).
        case decided(ACLUser?)
        /// Not checked before: ``authenticate(user:password:)`` must hash it.
        case needsHashing
    }

    /// Answers without hashing when it can: a `nopass` or unknown or disabled user, or a password this process
    /// has checked before against the user's current hashes.
    public func quickAuthentication(user name: String, password: [UInt8]) -> QuickAuthentication {
        guard let user = user(named: name), user.enabled else { return .decided(nil) }
        if user.noPassword { return .decided(user) }
        if user.passwords.isEmpty { return .decided(nil) }
        let remembered = rememberedDigest(user: name, password: password)
        let accepted = user.passwords.contains { hash in verified.withLock { $0.contains(outcomeDigest(remembered, [hash])) } }
        if accepted { return .decided(user) }
        if refused.withLock({ $0.contains(outcomeDigest(remembered, user.passwords)) }) { return .decided(nil) }
        return .needsHashing
    }

    private func rememberedDigest(user: String, password: [UInt8]) -> [UInt8] {
        Array(user.utf8) + [0] + Array(SHA256.hash(data: password)) + [0]
    }

    /// A keyed digest of a check's inputs: the user and password (``rememberedDigest``) and the hashes tried.
    private func outcomeDigest(_ remembered: [UInt8], _ hashes: [PasswordHash]) -> [UInt8] {
        let key = remembered + hashes.flatMap { Array($0.text.utf8) + [0] }
        return Array(HMAC<SHA256>.authenticationCode(for: key, using: verificationKey))
    }

    private func remember(_ digest: [UInt8], accepted: Bool) {
        func insert(_ set: inout Set<[UInt8]>) {
            if set.count >= Self.maxVerifiedEntries { set.removeAll() }
            set.insert(digest)
        }
        if accepted { verified.withLock { insert(&$0) } } else { refused.withLock { insert(&$0) } }
    }

    /// Replaces Redis's unsalted SHA-256 of a password by kvsh's salted hash, now that the password is known.
    private func upgrade(user name: String, from old: PasswordHash, password: [UInt8]) {
        let new = PasswordHash.make(password: password, iterations: iterations)
        users.withLock { users in
            guard var user = users[name], let index = user.passwords.firstIndex(of: old) else { return }
            user.passwords[index] = new
            users[name] = user
        }
        changed()
    }

    // MARK: ACL LOG

    /// Records a refusal; an entry like a recent one (same reason, object and user, within a minute) counts up
    /// instead, as Redis groups them.
    public func logDenial(_ reason: ACLLogEntry.Reason, object: String, username: String, clientInfo: String) {
        let now = ContinuousClock.now
        log.withLock { entries in
            if let index = entries.firstIndex(where: {
                $0.reason == reason && $0.object == object && $0.username == username && now - $0.lastSeen < .seconds(60)
            }) {
                var entry = entries.remove(at: index)
                entry.count += 1
                entry.lastSeen = now
                entry.clientInfo = clientInfo
                entries.insert(entry, at: 0)
                return
            }
            entries.insert(ACLLogEntry(count: 1, reason: reason, object: object, username: username, lastSeen: now,
                                       clientInfo: clientInfo), at: 0)
            if entries.count > Self.maxLogEntries { entries.removeLast(entries.count - Self.maxLogEntries) }
        }
    }

    /// The newest `limit` entries, newest first.
    public func logEntries(limit: Int = 10) -> [ACLLogEntry] {
        log.withLock { Array($0.prefix(max(0, limit))) }
    }

    public func resetLog() {
        log.withLock { $0.removeAll() }
    }

    // MARK: The ACL file

    /// `ACL SAVE`: every user's rules, passwords as hashes only.
    public func save() throws(ACLFileError) {
        guard let aclFile else { throw ACLFileError(path: "", line: nil, message: "no ACL file") }
        let text = allUsers().map { $0.description + "\n" }.joined()
        try ACLFile.write(text, to: aclFile)
    }

    /// `ACL LOAD`: replaces every user by the file's, or changes nothing if the file has an error.
    public func load() throws(ACLFileError) {
        guard let aclFile else { throw ACLFileError(path: "", line: nil, message: "no ACL file") }
        let parsed = try ACLFile.parse(ACLFile.read(path: aclFile), path: aclFile, catalog: catalog, hashPassword: makeHash)
        var loaded: [String: ACLUser] = [:]
        for user in parsed { loaded[user.name] = user }
        if loaded["default"] == nil {
            loaded["default"] = Self.defaultUser(catalog: catalog, requirePass: nil, iterations: iterations)
        }
        users.withLock { $0 = loaded }
        changed()
    }
}
