import Foundation
import KVCommands
import KVTestSupport
import Testing
@testable import KVAccess

/// A catalog with a few commands, one of them with subcommands, as the server's tables describe theirs.
private let catalog = ACLCatalog(CommandTable.aclDescriptors + [
    ACLCommandDescriptor(name: "acl", categories: [.slow], subcommands: [
        ("whoami", [.slow]), ("setuser", [.admin, .slow, .dangerous]),
    ]),
    ACLCommandDescriptor(name: "kvsh.backup", categories: [.admin, .dangerous, .slow]),
])

/// Cheap hashes: the rules are what is tested here, not PBKDF2's cost.
private func hash(_ password: String) -> PasswordHash {
    PasswordHash.make(password: Array(password.utf8), iterations: 1_000)
}

private func user(_ rules: String) throws -> ACLUser {
    var user = ACLUser(name: "u", catalog: catalog)
    try user.apply(rules.split(separator: " ").map(String.init), catalog: catalog, hashPassword: hash)
    return user
}

private func allowed(_ user: ACLUser, _ command: String) -> Bool {
    let arguments = command.split(separator: " ").map { Array($0.utf8) }
    guard let index = catalog.index(for: arguments) else { return false }
    return user.mayRun(index)
}

@Suite("ACL rules")
struct ACLUserTests {
    @Test("a new user is off, has no password, no keys and no commands, as Redis makes one")
    func newUser() throws {
        let fresh = try user("")
        #expect(fresh.description == "user u off resetchannels -@all")
        #expect(!allowed(fresh, "GET"))
        #expect(!fresh.isUnrestricted)
    }

    @Test("rules apply left to right; later ones override earlier ones")
    func leftToRight() throws {
        let u = try user("on +@all -@write +set ~app:* %R~ro:*")
        #expect(u.enabled)
        #expect(allowed(u, "GET") && allowed(u, "SET") && !allowed(u, "MSET") && !allowed(u, "INCR"))
        #expect(u.description == "user u on ~app:* %R~ro:* resetchannels +@all -@write +set")
        let reversed = try user("on +set +@all -@write")
        #expect(!allowed(reversed, "SET"))
        let reset = try user("on allkeys allcommands reset")
        #expect(reset.description == "user u off sanitize-payload resetchannels -@all")
        #expect(try user("+get -get +get").commandRules == ["-@all", "+get"])
    }

    @Test("categories, aliases and subcommands")
    func commandsAndCategories() throws {
        let keyspace = try user("+@keyspace")
        #expect(allowed(keyspace, "DEL") && allowed(keyspace, "DELETE") && allowed(keyspace, "EXISTS") && !allowed(keyspace, "GET"))
        let whoami = try user("+acl|whoami")
        #expect(allowed(whoami, "ACL WHOAMI") && !allowed(whoami, "ACL SETUSER"))
        let acl = try user("+acl -acl|setuser")
        #expect(allowed(acl, "ACL WHOAMI") && !allowed(acl, "ACL SETUSER"))
        let admin = try user("+@all -@dangerous")
        #expect(!allowed(admin, "KVSH.BACKUP") && !allowed(admin, "KEYS") && allowed(admin, "SCAN"))
        #expect(try user("allcommands").isUnrestricted == false, "no keys yet")
        #expect(try user("allcommands allkeys").isUnrestricted)
    }

    @Test("key patterns: ~ is read and write, %R~ and %W~ one of them; a command that uses no value needs any")
    func keyPatterns() throws {
        let u = try user("~rw:* %R~r:* %W~w:* %RW~both")
        #expect(u.mayAccess(Array("rw:1".utf8), .readWrite))
        #expect(u.mayAccess(Array("r:1".utf8), .read) && !u.mayAccess(Array("r:1".utf8), .write))
        #expect(u.mayAccess(Array("w:1".utf8), .write) && !u.mayAccess(Array("w:1".utf8), .read))
        #expect(u.mayAccess(Array("w:1".utf8), []) && !u.mayAccess(Array("other".utf8), []))
        #expect(u.mayAccess(Array("both".utf8), .readWrite))
        #expect(!u.mayAccessAllKeys(.read))
        #expect(try user("allkeys").mayAccessAllKeys(.readWrite))
        #expect(try user("~a %R~a").keyPatterns.count == 1, "one pattern named twice is merged")
        #expect(try user("~a resetkeys").keyPatterns.isEmpty)
        #expect(try user("%rw~x").keysDescription == "~x")
    }

    @Test("passwords: >, <, #, !, nopass, resetpass; only hashes are kept")
    func passwords() throws {
        let u = try user("on >secret >other")
        #expect(u.passwords.count == 2)
        #expect(!u.description.contains("secret"))
        #expect(u.passwords[0].verify(Array("secret".utf8)) && !u.passwords[0].verify(Array("Secret".utf8)))
        #expect(try user(">secret <secret").passwords.isEmpty)
        #expect(try user(">a nopass").noPassword && user(">a nopass").passwords.isEmpty)
        #expect(try user("nopass >a").noPassword == false)
        #expect(try user(">a resetpass").passwords.isEmpty)
        let sha = PasswordHash.sha256Hex(Array("pw".utf8))
        #expect(sha == "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4", "Redis's hash of 'pw'")
        let imported = try user("#\(sha)")
        #expect(imported.passwords.first?.isUnsalted == true && imported.passwords[0].verify(Array("pw".utf8)))
        #expect(try user("#\(sha) !\(sha)").passwords.isEmpty)
        // The salted form round-trips through its text, as the ACL file stores it.
        let text = hash("pw").text
        #expect(text.hasPrefix("pbkdf2-sha256$1000$"))
        #expect(PasswordHash(text: text)?.verify(Array("pw".utf8)) == true)
        #expect(hash("pw").text != text, "a fresh salt each time")
    }

    @Test("bad rules fail with Redis's reasons", arguments: [
        ("badrule", ACLRuleError.syntax),
        ("+nosuchcmd", ACLRuleError.unknownCommand),
        ("-@nosuchcategory", ACLRuleError.unknownCommand),
        ("<neverset", ACLRuleError.noSuchPassword),
        ("#abc", ACLRuleError.badHash),
        ("!abc", ACLRuleError.badHash),
        ("%X~a", ACLRuleError.syntax),
        ("+get|x", ACLRuleError.firstArgument),
    ])
    func badRules(rule: String, reason: String) {
        #expect(throws: ACLRuleError(rule: rule, reason: reason)) { try user("on \(rule)") }
        #expect(ACLRuleError(rule: "badrule", reason: ACLRuleError.syntax).description
            == "Error in ACL SETUSER modifier 'badrule': Syntax error")
    }

    @Test("constant-time comparison compares whole arrays")
    func constantTime() {
        #expect(PasswordHash.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!PasswordHash.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!PasswordHash.constantTimeEquals([1, 2], [1, 2, 3]))
        #expect(!PasswordHash.constantTimeEquals([], []))
    }
}

@Suite("ACL file and registry")
struct ACLFileTests {
    @Test("a file round-trips: what ACL SAVE writes, loading makes the same users")
    func roundTrip() throws {
        try withTempDir { directory in try roundTrip(in: directory) }
    }

    private func roundTrip(in directory: String) throws {
        let path = directory + "/users.acl"
        let access = AccessControl(catalog: catalog, aclFile: path, iterations: 1_000)
        try access.setUser("alice", rules: ["on", ">wonderland", "~app:*", "%R~ro:*", "+@read", "-strlen"])
        try access.setUser("bob", rules: ["off", "nopass", "allkeys", "allcommands"])
        try access.save()
        let text = try ACLFile.read(path: path)
        #expect(!text.contains("wonderland"))
        #expect(text.contains("user alice on #pbkdf2-sha256$1000$"))
        let loaded = try AccessControl.loading(catalog: catalog, aclFile: path, iterations: 1_000)
        #expect(loaded.allUsers().map(\.description) == access.allUsers().map(\.description))
        #expect(loaded.authenticate(user: "alice", password: Array("wonderland".utf8)) != nil)
        #expect(loaded.authenticate(user: "alice", password: Array("wrong".utf8)) == nil)
        #expect(loaded.authenticate(user: "bob", password: Array("any".utf8)) == nil, "bob is off")
        // The file is the owner's only.
        var status = stat()
        #expect(stat(path, &status) == 0 && status.st_mode & 0o777 == 0o600)
    }

    @Test("a bad line names the file and line")
    func badLine() throws {
        try withTempDir { directory in try badLine(in: directory) }
    }

    private func badLine(in directory: String) throws {
        let path = directory + "/bad.acl"
        try "user default on nopass ~* +@all\n\nuser alice on +nosuch\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: ACLFileError.self) { try AccessControl.loading(catalog: catalog, aclFile: path) }
        do {
            _ = try AccessControl.loading(catalog: catalog, aclFile: path)
        } catch {
            #expect(error.description == "\(path):3: Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL. ")
        }
        try "alice on\n".write(toFile: path, atomically: false, encoding: .utf8)
        do {
            _ = try AccessControl.loading(catalog: catalog, aclFile: path)
            Issue.record("accepted a line without 'user'")
        } catch {
            #expect(error.description == "\(path):1: should start with user keyword followed by the username. ")
        }
    }

    @Test("Redis's unsalted hash is replaced by a salted one at the first successful AUTH")
    func upgradesUnsaltedHashes() throws {
        let access = AccessControl(catalog: catalog, iterations: 1_000)
        try access.setUser("carol", rules: ["on", "#" + PasswordHash.sha256Hex(Array("pw".utf8)), "+@all", "allkeys"])
        let before = access.generation.load(ordering: .relaxed)
        #expect(access.authenticate(user: "carol", password: Array("pw".utf8)) != nil)
        #expect(access.user(named: "carol")?.passwords.first?.isUnsalted == false)
        #expect(access.generation.load(ordering: .relaxed) > before)
        #expect(access.authenticate(user: "carol", password: Array("pw".utf8)) != nil)
    }

    @Test("a password is hashed once: the outcome, right or wrong, is known at once the next time, until the user's passwords change")
    func quickAuthenticationRemembersOutcomes() throws {
        let access = AccessControl(catalog: catalog, iterations: 1_000)
        try access.setUser("dave", rules: ["on", ">right", "+@all", "allkeys"])
        func quick(_ password: String) -> String {
            switch access.quickAuthentication(user: "dave", password: Array(password.utf8)) {
            case .needsHashing: return "hash"
            case .decided(let user?): return "accepted \(user.name)"
            case .decided(nil): return "refused"
            }
        }
        #expect(quick("right") == "hash")
        #expect(quick("wrong") == "hash")
        #expect(access.authenticate(user: "dave", password: Array("right".utf8)) != nil)
        #expect(access.authenticate(user: "dave", password: Array("wrong".utf8)) == nil)
        #expect(quick("right") == "accepted dave")
        #expect(quick("wrong") == "refused")
        #expect(quick("other") == "hash")
        // Unknown and disabled users need no hashing.
        #expect(access.quickAuthentication(user: "nobody", password: Array("x".utf8)).isRefused)
        // A new password set: the remembered outcomes no longer apply.
        try access.setUser("dave", rules: [">wrong"])
        #expect(quick("wrong") == "hash")
        #expect(access.authenticate(user: "dave", password: Array("wrong".utf8)) != nil)
        try access.setUser("dave", rules: ["off"])
        #expect(quick("wrong") == "refused")
    }

    @Test("requirepass gives the default user a password; without it no authentication is required")
    func defaultUser() {
        #expect(!AccessControl(catalog: catalog).authenticationRequired)
        let protected = AccessControl(catalog: catalog, requirePass: "s3cret", iterations: 1_000)
        #expect(protected.authenticationRequired)
        #expect(protected.user(named: "default")?.description.hasPrefix("user default on #pbkdf2-sha256$") == true)
        #expect(protected.authenticate(user: "default", password: Array("s3cret".utf8)) != nil)
    }

    @Test("ACL LOG groups repeated refusals and keeps at most 128 entries")
    func log() {
        let access = AccessControl(catalog: catalog)
        access.logDenial(.auth, object: "auth", username: "x", clientInfo: "id=1")
        access.logDenial(.auth, object: "auth", username: "x", clientInfo: "id=2")
        access.logDenial(.command, object: "get", username: "x", clientInfo: "id=2")
        let entries = access.logEntries()
        #expect(entries.map(\.object) == ["get", "auth"] && entries[1].count == 2)
        for index in 0..<200 { access.logDenial(.key, object: "k\(index)", username: "x", clientInfo: "") }
        #expect(access.logEntries(limit: 1000).count == AccessControl.maxLogEntries)
        access.resetLog()
        #expect(access.logEntries().isEmpty)
    }

    @Test("failed authentications are slowed per address after a few, and a success clears them")
    func throttle() {
        let throttle = AuthThrottle(freeAttempts: 2, baseDelay: .milliseconds(100), maxDelay: .milliseconds(350))
        #expect(throttle.failed(address: "10.0.0.1") == .zero)
        #expect(throttle.failed(address: "10.0.0.1") == .zero)
        #expect(throttle.failed(address: "10.0.0.1") == .milliseconds(100))
        #expect(throttle.failed(address: "10.0.0.1") == .milliseconds(200))
        #expect(throttle.failed(address: "10.0.0.1") == .milliseconds(350))
        #expect(throttle.failed(address: "10.0.0.2") == .zero, "another address is not slowed")
        throttle.succeeded(address: "10.0.0.1")
        #expect(throttle.failed(address: "10.0.0.1") == .zero)
        #expect(AuthThrottle.host(of: "[::1]:5000") == "[::1]" && AuthThrottle.host(of: "1.2.3.4:5") == "1.2.3.4")
    }
}

extension AccessControl.QuickAuthentication {
    var isRefused: Bool {
        if case .decided(nil) = self { return true }
        return false
    }
}
