// Access control end to end: the same users and commands against kvsh serve and a real redis-server (replies
// compared word for word), the ACL file, redis-py with a user name, an authenticated replica, protected mode,
// and secrets kept out of everything the server shows.

import Foundation
import RESP
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

private func runs(with tool: String?) -> Bool { tool != nil || ExternalTool.required }

/// The users of the differential test: (name, password, rules).
private let users: [(name: String, password: String, rules: [String])] = [
    ("full", "pw-full", ["on", ">pw-full", "allkeys", "allcommands"]),
    ("reader", "pw-reader", ["on", ">pw-reader", "~app:*", "+@read"]),
    ("split", "pw-split", ["on", ">pw-split", "%W~w:*", "%R~r:*", "+@all", "-@dangerous"]),
    ("keyspace", "pw-keyspace", ["on", ">pw-keyspace", "~app:*", "+@keyspace", "-del"]),
    ("strings", "pw-strings", ["on", ">pw-strings", "~*", "+@string", "-getdel", "+acl|whoami"]),
    ("nothing", "pw-nothing", ["on", ">pw-nothing"]),
    ("disabled", "pw-disabled", ["off", ">pw-disabled", "~*", "+@all"]),
    ("anyone", "whatever", ["on", "nopass", "~app:*", "+get", "+set", "+client|setname"]),
    // As an ACL file written for Redis: commands kvsh does not have (accepted, they change nothing), channels.
    ("ported", "pw-ported", ["on", ">pw-ported", "~*", "&news:*", "+@all", "-debug", "-flushdb", "-@dangerous"]),
]

/// Commands run by every user on every key (`$k` is the key): the data commands both servers have, and a few
/// server commands from different categories.
private let commandsPerKey: [[String]] = [
    ["GET", "$k"], ["SET", "$k", "v1"], ["SET", "$k", "v2", "GET"], ["SETNX", "$k", "v3"], ["STRLEN", "$k"],
    ["EXISTS", "$k"], ["TYPE", "$k"], ["TTL", "$k"], ["APPEND", "$k", "+"], ["MGET", "$k", "app:1"],
    ["MSET", "$k", "m", "app:2", "n"], ["GETDEL", "$k"], ["INCR", "$k"], ["INCRBY", "$k", "5"], ["DECR", "$k"], ["DEL", "$k"],
]
private let keys = ["app:1", "r:1", "w:1", "other"]
/// Replies that are equal on both servers however their internals differ.
private let otherCommands: [[String]] = [
    ["PING"], ["ECHO", "hi"], ["DBSIZE"], ["ACL", "WHOAMI"], ["ACL", "SETUSER", "someone"], ["ACL", "DELUSER", "someone"],
    ["ACL", "CAT"], ["CLIENT", "SETNAME", "x"], ["SELECT", "0"],
]
/// Commands whose successful replies differ between the servers (content, order): only errors are compared.
private let errorOnlyCommands: [[String]] = [
    ["KEYS", "*"], ["SCAN", "0"], ["INFO", "server"], ["CONFIG", "GET", "maxclients"], ["ACL", "LIST"], ["ACL", "USERS"],
    ["CLIENT", "ID"], ["CLIENT", "LIST"], ["SLOWLOG", "LEN"], ["ROLE"], ["ACL", "LOG"],
]

/// What to compare of a reply: its text for errors; for `errorsOnly`, only that it succeeded.
private func normalized(_ reply: RESPValue, errorsOnly: Bool) -> String {
    if case .error(let text) = reply { return "-" + text }
    return errorsOnly ? "(success)" : "\(reply)"
}

@Suite("Access control end to end", .timeLimit(.minutes(5)))
struct AccessControlEndToEndTests {
    @Test("users × commands × keys: the same replies as redis-server 7.0, word for word",
          .enabled(if: runs(with: ExternalTool.path("redis-server")), "redis-server is not installed (apt-get install redis-server)"))
    func differential() throws {
        guard ExternalTool.path("redis-server") != nil else {
            Issue.record("redis-server is required here (KVSH_REQUIRE_TOOLS or CI is set) but not found: apt-get install redis-server")
            return
        }
        let sandbox = try Sandbox()
        let kvsh = try ServerProcess(sandbox)
        let redis = try RedisServerProcess(sandbox, name: "redis")
        let servers = [("kvsh", kvsh.port), ("redis", redis.port)]
        let admins = try servers.map { try RedisConnection(port: $0.1) }
        var differences: [String] = []
        /// Runs `arguments` on both servers through `connections` and records any difference.
        func both(_ connections: [RedisConnection], _ arguments: [String], errorsOnly: Bool = false, as who: String) throws {
            let replies = try connections.map { connection -> String in
                try connection.send(RedisConnection.encode(arguments))
                return normalized(try connection.reply(), errorsOnly: errorsOnly)
            }
            if replies[0] != replies[1] {
                differences.append("\(who): \(arguments.joined(separator: " ")): kvsh \(replies[0]) ≠ redis \(replies[1])")
            }
        }
        for user in users { try both(admins, ["ACL", "SETUSER", user.name] + user.rules, as: "admin") }
        // The ACL's own replies and errors.
        for arguments in [["ACL", "SETUSER", "x", "badrule"], ["ACL", "SETUSER", "x", "+nosuchcmd"], ["ACL", "SETUSER", "x", "-@nosuch"],
                          ["ACL", "SETUSER", "x", "<never-set"], ["ACL", "SETUSER", "x", "#abc"], ["ACL", "DELUSER", "default"],
                          ["ACL", "GETUSER", "nosuch"], ["ACL", "CAT"], ["ACL", "CAT", "nosuch"], ["ACL", "WHOAMI"],
                          ["ACL", "SETUSER", "fresh"], ["ACL", "GETUSER", "fresh"], ["ACL", "DELUSER", "fresh", "nosuch"],
                          ["ACL", "NOSUCH"], ["AUTH", "x"], ["AUTH", "a", "b", "c"]] {
            try both(admins, arguments, as: "admin")
        }
        // Redis 7.0 lists a user's command rules in its own order (`-@all +set +client|setname +get`), kvsh in the order given.
        try both(admins, ["ACL", "GETUSER", "anyone"], errorsOnly: true, as: "admin")
        // ACL LIST's line for a user set up as for Redis up to its command rules (Redis 7.0 rewrites those from the
        // command bits it computed: `+@all -@dangerous -debug` lists as `+@all -@admin -migrate …`), its password hash
        // aside (Redis's is unsalted, kvsh's not).
        let listed = try admins.map { connection -> String in
            guard case .array(let lines) = try connection.call("ACL", "LIST") else { return "" }
            let texts = lines.map { line -> String in
                if case .bulkString(let text) = line { return String(decoding: text, as: UTF8.self) }
                return "\(line)"
            }
            let line = texts.first { $0.hasPrefix("user ported ") } ?? ""
            return line.split(separator: " ").prefix { !$0.hasPrefix("+") && !$0.hasPrefix("-") }
                .map { $0.hasPrefix("#") ? "#…" : String($0) }.joined(separator: " ")
        }
        #expect(listed[0] == listed[1] && !listed[0].isEmpty, "ACL LIST: kvsh \(listed[0]) ≠ redis \(listed[1])")
        for user in users {
            let connections = try servers.map { try RedisConnection(port: $0.1) }
            try both(connections, ["AUTH", user.name, user.password + "-wrong"], as: user.name)
            try both(connections, ["AUTH", user.name, user.password], as: user.name)
            for key in keys {
                for command in commandsPerKey {
                    try both(connections, command.map { $0 == "$k" ? key : $0 }, as: user.name)
                }
            }
            for command in otherCommands { try both(connections, command, as: user.name) }
            for command in errorOnlyCommands { try both(connections, command, errorsOnly: true, as: user.name) }
        }
        // The newest ACL LOG entry: same reason, object and user (its age and client-info differ).
        let logs = try admins.map { connection -> [String] in
            guard case .array(let entries) = try connection.call("ACL", "LOG", "1"), case .array(let fields)? = entries.first else { return [] }
            return fields.enumerated().filter { $0.offset % 2 == 0 || [3, 7, 9].contains($0.offset) }.map { "\($0.element)" }
        }
        #expect(logs[0] == logs[1] && !logs[0].isEmpty, "ACL LOG 1: kvsh \(logs[0]) ≠ redis \(logs[1])")
        // Authentication required: the default user gets a password on both.
        try both(admins, ["ACL", "SETUSER", "default", "resetpass", ">default-pw"], as: "admin")
        let anonymous = try servers.map { try RedisConnection(port: $0.1) }
        for arguments in [["GET", "app:1"], ["HELLO", "2"], ["ACL", "WHOAMI"], ["AUTH", "wrong"], ["HELLO", "2", "AUTH", "default", "wrong"],
                          ["PING"], ["AUTH", "default-pw"], ["ACL", "WHOAMI"], ["GET", "app:1"]] {
            try both(anonymous, arguments, as: "anonymous")
        }
        #expect(differences.isEmpty, "\(differences.count) differences:\n\(differences.joined(separator: "\n"))")
        #expect(try kvsh.stop() == .exited(0))
    }

    @Test("ACL SAVE writes salted hashes only, mode 0600; ACL LOAD and a restart read the same users back")
    func saveAndLoad() throws {
        let sandbox = try Sandbox()
        let aclFile = try sandbox.write("users.acl", "user default on nopass ~* &* +@all\nuser alice on >wonderland ~app:* +@read +set\n")
        let server = try ServerProcess(sandbox, options: ["--aclfile", aclFile])
        let admin = try RedisConnection(port: server.port)
        #expect(try admin.call("ACL", "SETUSER", "bob", "on", ">builder", "~b:*", "+@all", "-@dangerous") == .simple("OK"))
        #expect(try admin.call("ACL", "SAVE") == .simple("OK"))
        let saved = try String(contentsOfFile: aclFile, encoding: .utf8)
        #expect(!saved.contains("wonderland") && !saved.contains("builder"), "\(saved)")
        #expect(saved.contains("user alice on #pbkdf2-sha256$") && saved.contains("user bob on #pbkdf2-sha256$"), "\(saved)")
        #expect(permissions(aclFile) == 0o600)
        let listed = try admin.call("ACL", "LIST")
        // ACL LOAD after a change on disk: bob is gone, carol arrives.
        try (saved.split(separator: "\n").filter { !$0.hasPrefix("user bob ") }.joined(separator: "\n") + "\nuser carol on nopass ~c:* +get\n")
            .write(toFile: aclFile, atomically: true, encoding: .utf8)
        let bob = try RedisConnection(port: server.port)
        #expect(try bob.call("AUTH", "bob", "builder") == .simple("OK"))
        #expect(try admin.call("ACL", "LOAD") == .simple("OK"))
        #expect(try admin.call("ACL", "USERS") == .array([.text("alice"), .text("carol"), .text("default")]))
        // A deleted user's connections are closed, as Redis closes them.
        #expect(throws: HarnessError.self) { try bob.call("PING") }
        let alice = try RedisConnection(port: server.port)
        #expect(try alice.call("AUTH", "alice", "wonderland") == .simple("OK"))
        #expect(try alice.call("SET", "app:1", "x") == .simple("OK"))
        #expect(try alice.call("DEL", "app:1") == .error("NOPERM this user has no permissions to run the 'del' command"))
        #expect(try server.stop() == .exited(0))
        // A restart reads the file it saved.
        let restarted = try ServerProcess(sandbox, options: ["--aclfile", aclFile])
        let again = try RedisConnection(port: restarted.port)
        #expect(try again.call("AUTH", "alice", "wonderland") == .simple("OK"))
        if case .array(let before) = listed, case .array(let after) = try again.call("ACL", "LIST") {
            #expect(after.filter { "\($0)".contains("alice") } == before.filter { "\($0)".contains("alice") })
        }
        #expect(try restarted.stop() == .exited(0))
    }

    @Test("a bad ACL file refuses to start, naming the file and line")
    func badFile() throws {
        let sandbox = try Sandbox()
        let aclFile = try sandbox.write("bad.acl", "user default on nopass ~* +@all\nuser alice on +nosuchcommand\n")
        let result = try sandbox.run(["serve", "--data-dir", sandbox.path("data"), "--port", "0", "--aclfile", aclFile])
        #expect(result.termination != .exited(0), "\(result.summary)")
        #expect(result.stderr.text.contains("\(aclFile):2: Error in ACL SETUSER modifier '+nosuchcommand'"), "\(result.summary)")
        let both = try sandbox.run(["serve", "--data-dir", sandbox.path("data"), "--port", "0", "--aclfile", aclFile, "--requirepass", "x"])
        #expect(both.termination != .exited(0) && both.stderr.text.contains("exclude each other"), "\(both.summary)")
    }

    @Test("--requirepass: NOAUTH until AUTH; failed attempts are logged, and slowed after a few")
    func requirePass() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox, options: ["--requirepass", "hunter2"])
        let client = try RedisConnection(port: server.port)
        #expect(try client.call("GET", "k") == .error("NOAUTH Authentication required."))
        #expect(try client.call("AUTH", "wrong") == .error("WRONGPASS invalid username-password pair or user is disabled."))
        #expect(try client.call("AUTH", "hunter2") == .simple("OK"))
        #expect(try client.call("SET", "k", "v") == .simple("OK"))
        guard case .array(let log) = try client.call("ACL", "LOG"), case .array(let entry)? = log.first else {
            Issue.record("no ACL LOG entry")
            return
        }
        #expect(Array(entry.prefix(10)) == [.text("count"), .integer(1), .text("reason"), .text("auth"), .text("context"), .text("toplevel"),
                                            .text("object"), .text("auth"), .text("username"), .text("default")])
        // Past three failures from one address, each failed reply is held back (100 ms, then 200 ms, ...).
        let guesser = try RedisConnection(port: server.port)
        for _ in 0..<3 { _ = try guesser.call("AUTH", "guess") }
        let started = ContinuousClock.now
        #expect(try guesser.call("AUTH", "guess") == .error("WRONGPASS invalid username-password pair or user is disabled."))
        #expect(ContinuousClock.now - started >= .milliseconds(100))
        #expect(try guesser.call("AUTH", "hunter2") == .simple("OK"))
        #expect(try server.stop() == .exited(0))
    }

    @Test("secrets never reach SLOWLOG, CLIENT LIST, INFO, ACL LIST or the server's log")
    func secretsStayOut() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox, options: ["--requirepass", "Secret-One", "--slowlog-log-slower-than", "0",
                                                          "--log-format", "json", "--log-level", "debug"])
        let client = try RedisConnection(port: server.port)
        #expect(try client.call("AUTH", "default", "Secret-One") == .simple("OK"))
        #expect(try client.call("ACL", "SETUSER", "app", "on", ">Secret-Two", "~*", "+@all") == .simple("OK"))
        _ = try client.call("HELLO", "2", "AUTH", "app", "Secret-Two")
        _ = try client.call("AUTH", "app", "Secret-Three")
        var shown = ""
        for arguments in [["SLOWLOG", "GET", "100"], ["CLIENT", "LIST"], ["INFO", "everything"], ["ACL", "LIST"], ["ACL", "GETUSER", "app"],
                          ["ACL", "LOG"], ["CONFIG", "GET", "*"]] {
            try client.send(RedisConnection.encode(arguments))
            shown += flattened(try client.reply()) + "\n"
        }
        #expect(shown.contains("(redacted)"), "the slow log shows that AUTH ran: \(shown.prefix(2000))")
        #expect(try server.stop() == .exited(0))
        let everything = shown + server.process.stderr.text + server.process.stdout.text
        for secret in ["Secret-One", "Secret-Two", "Secret-Three"] {
            #expect(!everything.contains(secret), "\(secret) leaked")
        }
    }

    @Test("a replica authenticates to its primary with --masteruser and --masterauth")
    func authenticatedReplica() throws {
        let sandbox = try Sandbox()
        let primary = try ServerProcess(sandbox, dataDir: sandbox.path("primary"), options: ["--requirepass", "primary-pw"])
        let admin = try RedisConnection(port: primary.port)
        #expect(try admin.call("AUTH", "primary-pw") == .simple("OK"))
        #expect(try admin.call("ACL", "SETUSER", "replicator", "on", ">repl-pw", "+psync", "+replconf", "+ping") == .simple("OK"))
        #expect(try admin.call("SET", "before", "1") == .simple("OK"))
        let replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: [
            "--replicaof", "127.0.0.1", String(primary.port), "--masteruser", "replicator", "--masterauth", "repl-pw",
        ])
        #expect(try admin.call("SET", "after", "2") == .simple("OK"))
        let reader = try RedisConnection(port: replica.port)
        #expect(waitFor { (try? reader.call("GET", "after")) == .text("2") }, "the replica never got the write")
        #expect(try reader.call("GET", "before") == .text("1"))
        // A replica with a wrong password never syncs, and says why.
        let refused = try ServerProcess(sandbox, dataDir: sandbox.path("refused"), options: [
            "--replicaof", "127.0.0.1", String(primary.port), "--masterauth", "wrong",
        ])
        #expect(refused.process.wait(timeout: .seconds(30)) { $0.stderr.text.contains("the primary refused AUTH") },
                "\(refused.process.stderr.text)")
        #expect(try RedisConnection(port: refused.port).call("GET", "before") == .null)
        #expect(try refused.stop() == .exited(0))
        #expect(try replica.stop() == .exited(0))
        #expect(try primary.stop() == .exited(0))
    }

    @Test("protected mode: without a password, a client from another address gets -DENIED; loopback is served")
    func protectedMode() throws {
        guard let address = nonLoopbackAddress() else { return }  // a machine without one cannot show it
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox, options: ["--bind", "0.0.0.0"])
        let remote = try RedisConnection(port: server.port, host: address)
        guard case .error(let denial) = try remote.call("PING") else {
            Issue.record("a remote client was served in protected mode")
            return
        }
        #expect(denial.hasPrefix("DENIED kvsh is running in protected mode because protected mode is enabled and no password is set for the default user."))
        #expect(denial.contains("--requirepass") && denial.contains("--protected-mode no"))
        #expect(try RedisConnection(port: server.port).call("PING") == .simple("PONG"))
        let local = try RedisConnection(port: server.port)
        #expect(try local.call("ACL", "SETUSER", "default", "resetpass", ">now-set") == .simple("OK"))
        let later = try RedisConnection(port: server.port, host: address)
        #expect(try later.call("PING") == .error("NOAUTH Authentication required."))
        #expect(try later.call("AUTH", "now-set") == .simple("OK"))
        #expect(try later.call("PING") == .simple("PONG"))
        #expect(try server.stop() == .exited(0))
        let open = try ServerProcess(sandbox, dataDir: sandbox.path("open"), options: ["--bind", "0.0.0.0", "--protected-mode", "no"])
        #expect(try RedisConnection(port: open.port, host: address).call("PING") == .simple("PONG"))
        #expect(try open.stop() == .exited(0))
    }

    @Test("kvsh --connect authenticates with --user/--pass (warned about), KVSH_AUTH, and fails clearly on a wrong password")
    func shellCredentials() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox, options: ["--requirepass", "admin-pw"])
        let admin = try RedisConnection(port: server.port)
        #expect(try admin.call("AUTH", "admin-pw") == .simple("OK"))
        #expect(try admin.call("ACL", "SETUSER", "app", "on", ">app-pw", "~app:*", "+@all") == .simple("OK"))
        let address = "127.0.0.1:\(server.port)"
        let onCommandLine = try sandbox.run(["--connect", address, "--user", "app", "--pass", "app-pw", "SET", "app:1", "v"])
        #expect(onCommandLine.termination == .exited(0) && onCommandLine.stdout.text == "OK\n", "\(onCommandLine.summary)")
        #expect(onCommandLine.stderr.text.contains("Warning: Using a password with '-a' or '--pass' option on the command line interface may not be safe."))
        let quiet = try sandbox.run(["--connect", address, "--user", "app", "-a", "app-pw", "--no-auth-warning", "GET", "app:1"])
        #expect(quiet.stdout.text == "v\n" && quiet.stderr.text.isEmpty, "\(quiet.summary)")
        let fromEnvironment = try sandbox.run(["--connect", address, "GET", "app:1"], env: ["KVSH_AUTH": "admin-pw"])
        #expect(fromEnvironment.stdout.text == "v\n" && fromEnvironment.stderr.text.isEmpty, "\(fromEnvironment.summary)")
        let denied = try sandbox.run(["--connect", address, "--user", "app", "--pass", "app-pw", "GET", "other"])
        #expect(denied.termination == .exited(1) && (denied.stdout + denied.stderr).text.contains("NOPERM"), "\(denied.summary)")
        let wrong = try sandbox.run(["--connect", address, "--user", "app", "--pass", "nope", "--no-auth-warning", "GET", "app:1"])
        #expect(wrong.termination == .exited(2), "\(wrong.summary)")
        #expect(wrong.stderr.text.contains("AUTH failed on \(address): WRONGPASS invalid username-password pair or user is disabled."),
                "\(wrong.summary)")
        let none = try sandbox.run(["--connect", address, "GET", "app:1"])
        #expect(none.termination == .exited(1) && (none.stdout + none.stderr).text.contains("NOAUTH Authentication required."), "\(none.summary)")
        #expect(try server.stop() == .exited(0))
    }

    @Test("--audit-log: a JSON line per command with its user, keys and result, never values or passwords")
    func auditLog() throws {
        let sandbox = try Sandbox()
        let path = sandbox.path("audit.jsonl")
        let server = try ServerProcess(sandbox, options: ["--audit-log", path, "--requirepass", "audit-pw"])
        let client = try RedisConnection(port: server.port)
        #expect(try client.call("AUTH", "wrong-guess") == .error("WRONGPASS invalid username-password pair or user is disabled."))
        #expect(try client.call("AUTH", "audit-pw") == .simple("OK"))
        #expect(try client.call("SET", "user:1", "top-secret-value") == .simple("OK"))
        #expect(try client.call("GET", "user:1") == .text("top-secret-value"))
        #expect(try client.call("MGET", "user:1", "user:2") == .array([.text("top-secret-value"), .null]))
        #expect(try server.stop() == .exited(0))
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "\(lines)")
        #expect(lines.allSatisfy { $0.hasPrefix("{\"time\":\"") && $0.contains("\"addr\":\"127.0.0.1:") }, "\(lines)")
        #expect(lines.first?.contains("\"user\":\"default\",\"cmd\":\"auth\",\"keys\":[],\"result\":\"WRONGPASS\"") == true, "\(lines)")
        #expect(lines.dropFirst(2).first?.contains("\"cmd\":\"set\",\"keys\":[\"user:1\"],\"result\":\"ok\"") == true, "\(lines)")
        #expect(lines.last?.contains("\"cmd\":\"mget\",\"keys\":[\"user:1\",\"user:2\"],\"result\":\"ok\"") == true, "\(lines)")
        let text = lines.joined()
        #expect(!text.contains("top-secret-value") && !text.contains("audit-pw") && !text.contains("wrong-guess"))
        #expect(permissions(path) == 0o600)
    }

    @Test("redis-py connects with username= and password=",
          .enabled(if: runs(with: ExternalTool.python), "python3 with redis-py 5 or newer is not installed (python3 -m pip install redis)"))
    func redisPy() throws {
        guard let python = ExternalTool.python else {
            Issue.record("python3 with redis-py 5 or newer is required here but not found: python3 -m pip install 'redis>=5'")
            return
        }
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox, options: ["--requirepass", "admin-pw"])
        let admin = try RedisConnection(port: server.port)
        #expect(try admin.call("AUTH", "admin-pw") == .simple("OK"))
        #expect(try admin.call("ACL", "SETUSER", "app", "on", ">app-pw", "~app:*", "+@read", "+@write", "+client", "+hello", "+ping")
                == .simple("OK"))
        let script = try sandbox.write("acl_check.py", #"""
        import sys
        import redis

        port = int(sys.argv[1])
        for protocol in (2, 3):
            r = redis.Redis(host="127.0.0.1", port=port, username="app", password="app-pw", protocol=protocol, socket_timeout=10)
            assert r.set("app:1", "v") is True
            assert r.get("app:1") == b"v"
            try:
                r.get("other")
                raise AssertionError("read a key outside ~app:*")
            except redis.exceptions.NoPermissionError as error:
                assert "no permissions to access one of the keys" in str(error), str(error)
            try:
                r.execute_command("KVSH.STATS")
                raise AssertionError("ran an admin command")
            except redis.exceptions.NoPermissionError as error:
                assert "'kvsh.stats' command" in str(error), str(error)
        try:
            redis.Redis(host="127.0.0.1", port=port, username="app", password="wrong", socket_timeout=10).ping()
            raise AssertionError("a wrong password was accepted")
        except redis.exceptions.AuthenticationError:
            pass
        try:
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=10).get("app:1")
            raise AssertionError("no password was accepted")
        except redis.exceptions.AuthenticationError:
            pass
        print("OK")
        """#)
        let result = try ExternalTool.run(python, [script, String(server.port)], sandbox: sandbox, timeout: .seconds(60))
        #expect(result.termination == .exited(0) && result.stdout.text == "OK\n", "\(result.summary)")
        #expect(try server.stop() == .exited(0))
    }
}

/// Every string in `reply`, as text, one per line: what a person (or a log scraper) would see of it.
private func flattened(_ reply: RESPValue) -> String {
    switch reply {
    case .simpleString(let text), .error(let text), .number(let text): return text
    case .bulkString(let bytes): return String(decoding: bytes, as: UTF8.self)
    case .integer(let value): return String(value)
    case .boolean(let value): return String(value)
    case .null: return "(nil)"
    case .array(let items): return items.map(flattened).joined(separator: "\n")
    case .map(let pairs): return pairs.map { flattened($0.0) + "\n" + flattened($0.1) }.joined(separator: "\n")
    }
}

/// An IPv4 address of this machine other than loopback, if it has one.
private func nonLoopbackAddress() -> String? {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0, let first = list else { return nil }
    defer { freeifaddrs(list) }
    var cursor: UnsafeMutablePointer<ifaddrs>? = first
    while let entry = cursor {
        defer { cursor = entry.pointee.ifa_next }
        guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET) else { continue }
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        let ip = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer -> String in
            var raw = pointer.pointee.sin_addr
            inet_ntop(AF_INET, &raw, &text, socklen_t(INET_ADDRSTRLEN))
            return String(cString: text)
        }
        if !ip.hasPrefix("127.") { return ip }
    }
    return nil
}
