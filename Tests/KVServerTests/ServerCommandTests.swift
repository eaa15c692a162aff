// An in-process KVServer on an ephemeral port, spoken to over plain sockets: the connection and server
// commands, Redis's error wording, inline commands, protocol errors and the client limit.

import KVTestSupport
import Testing
@testable import KVCommands
@testable import RESP
@testable import KVServer

@Suite("Server commands")
struct ServerCommandTests {
    @Test("PING, ECHO, SELECT, AUTH")
    func basics() throws {
        try withServer { server in
            let client = try server.connect()
            #expect(try client.call("PING") == .simple("PONG"))
            #expect(try client.call("ping", "hello") == .text("hello"))
            #expect(try client.call("ECHO", "a b\r\nc") == .text("a b\r\nc"))
            #expect(try client.call("ECHO", "") == .text(""))
            #expect(try client.call("ECHO") == .error("ERR wrong number of arguments for 'echo' command"))
            #expect(try client.call("PING", "a", "b") == .error("ERR wrong number of arguments for 'ping' command"))
            #expect(try client.call("SELECT", "0") == .simple("OK"))
            #expect(try client.call("SELECT", "1") == .error("ERR DB index is out of range"))
            #expect(try client.call("SELECT", "4294967296") == .error("ERR value is out of range, value must between -2147483648 and 2147483647"))
            for notAnInteger in ["x", "+0", "00", "99999999999999999999"] {
                #expect(try client.call("SELECT", notAnInteger) == .error("ERR value is not an integer or out of range"), "\(notAnInteger)")
            }
            #expect(try client.call("SELECT", "-1") == .error("ERR DB index is out of range"))
            // AUTH answers as Redis does while the default user has no password.
            #expect(try client.call("AUTH", "secret") == .error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"))
            #expect(try client.call("AUTH", "default", "secret") == .simple("OK"))
            #expect(try client.call("AUTH", "alice", "secret") == .error("WRONGPASS invalid username-password pair or user is disabled."))
            #expect(try client.call("AUTH", "default", "secret", "extra") == .error("ERR syntax error"))
            #expect(try client.call("AUTH") == .error("ERR wrong number of arguments for 'auth' command"))
            // The connection is still usable after all those errors.
            #expect(try client.call("PING") == .simple("PONG"))
        }
    }

    @Test("HELLO 2 replies with a flat array, HELLO 3 with a map and switches the connection to RESP3")
    func hello() throws {
        try withServer { server in
            let client = try server.connect()
            let two = try client.call("HELLO", "2")
            guard case .array(let fields) = two else {
                Issue.record("HELLO 2 must reply with an array, got \(two)")
                return
            }
            #expect(fields.count == 14, "\(two)")
            #expect(two.field("server") == .text("kvsh"))
            #expect(two.field("proto") == .integer(2))
            #expect(two.field("mode") == .text("standalone"))
            #expect(two.field("role") == .text("master"))
            #expect(two.field("modules") == .array([]))
            let id = try client.call("CLIENT", "ID")
            #expect(two.field("id") == id)
            #expect(try client.call("GET", "missing") == .nullBulk)

            let three = try client.call("HELLO", "3")
            guard case .map(let items) = three else {
                Issue.record("HELLO 3 must reply with a map, got \(three)")
                return
            }
            #expect(items.count == 14)
            #expect(three.field("proto") == .integer(3))
            #expect(three.field("server") == .text("kvsh"))
            // RESP3 from now on: nil is `_`, CONFIG GET is a map.
            #expect(try client.call("GET", "missing") == .null)
            #expect(try client.call("CONFIG", "GET", "databases") == .map([.text("databases"), .text("1")]))
            // HELLO without a version keeps the protocol; back to 2.
            #expect(try client.call("HELLO").field("proto") == .integer(3))
            #expect(try client.call("HELLO", "2").field("proto") == .integer(2))
            #expect(try client.call("GET", "missing") == .nullBulk)

            #expect(try client.call("HELLO", "4") == .error("NOPROTO unsupported protocol version"))
            #expect(try client.call("HELLO", "x") == .error("ERR Protocol version is not an integer or out of range"))
            // HELLO's options: AUTH as the AUTH command (no passwords are configured), SETNAME names the connection.
            #expect(try client.call("HELLO", "3", "AUTH", "default", "pw", "SETNAME", "app").field("proto") == .integer(3))
            #expect(try client.call("CLIENT", "GETNAME") == .text("app"))
            // A HELLO that fails changes nothing: not the protocol, not the name.
            #expect(try client.call("HELLO", "2", "AUTH", "alice", "pw", "SETNAME", "other")
                    == .error("WRONGPASS invalid username-password pair or user is disabled."))
            #expect(try client.call("HELLO", "2", "SETNAME", "has space")
                    == .error("ERR Client names cannot contain spaces, newlines or special characters."))
            #expect(try client.call("HELLO", "2", "BOGUS") == .error("ERR Syntax error in HELLO option 'BOGUS'"))
            #expect(try client.call("GET", "missing") == .null)
            #expect(try client.call("CLIENT", "GETNAME") == .text("app"))
        }
    }

    @Test("CLIENT SETINFO refuses spaces, newlines and special characters, as SETNAME does: no forged CLIENT LIST entries")
    func clientSetinfoValidation() throws {
        try withServer { server in
            let client = try server.connect()
            let id = try client.call("CLIENT", "ID")
            // A value that would end the line and start a forged entry, one with a space (a forged field), a control
            // character and a byte outside ASCII: each refused with Redis 7.2's text, naming the attribute as sent.
            let forged = "x\nid=999 addr=10.0.0.1:1 laddr=? name=admin"
            for (attribute, value) in [("lib-name", forged), ("LIB-NAME", "a b"), ("lib-ver", "1\t2"), ("lib-ver", "v\u{7F}"),
                                       ("lib-name", "caf\u{E9}"), ("lib-ver", "1\r\n")] {
                #expect(try client.call("CLIENT", "SETINFO", attribute, value)
                        == .error("ERR \(attribute) cannot contain spaces, newlines or special characters."), "\(attribute) \(value)")
            }
            let list = try client.call("CLIENT", "LIST").string ?? ""
            #expect(list.split(separator: "\n").count == 1, "\(list)")
            #expect(!list.contains("id=999") && list.contains(" lib-name= lib-ver=\n"), "\(list)")
            // Every printable character but the space is accepted; an empty value clears the field.
            #expect(try client.call("CLIENT", "SETINFO", "lib-name", "redis-py(sentinel_v1)~!") == .simple("OK"))
            #expect(try client.call("CLIENT", "SETINFO", "lib-ver", "1.2.3") == .simple("OK"))
            #expect((try client.call("CLIENT", "INFO").string ?? "").contains(" lib-name=redis-py(sentinel_v1)~! lib-ver=1.2.3\n"))
            #expect(try client.call("CLIENT", "SETINFO", "lib-name", "") == .simple("OK"))
            #expect((try client.call("CLIENT", "INFO").string ?? "").contains(" lib-name= lib-ver=1.2.3\n"))
            #expect(try client.call("CLIENT", "ID") == id)
        }
    }

    @Test("CLIENT SETNAME, GETNAME, ID, SETINFO, INFO")
    func clientCommands() throws {
        try withServer { server in
            let first = try server.connect()
            let second = try server.connect()
            #expect(try first.call("CLIENT", "GETNAME") == .nullBulk)
            #expect(try first.call("CLIENT", "SETNAME", "worker-1") == .simple("OK"))
            #expect(try first.call("CLIENT", "GETNAME") == .text("worker-1"))
            #expect(try first.call("CLIENT", "SETNAME", "has space") == .error("ERR Client names cannot contain spaces, newlines or special characters."))
            #expect(try first.call("CLIENT", "GETNAME") == .text("worker-1"))
            // An empty name clears it.
            #expect(try first.call("CLIENT", "SETNAME", "") == .simple("OK"))
            #expect(try first.call("CLIENT", "GETNAME") == .nullBulk)
            // Names are per connection.
            #expect(try second.call("CLIENT", "SETNAME", "other") == .simple("OK"))
            #expect(try first.call("CLIENT", "GETNAME") == .nullBulk)

            guard case .integer(let firstID) = try first.call("CLIENT", "ID"),
                  case .integer(let secondID) = try second.call("CLIENT", "ID") else {
                Issue.record("CLIENT ID must reply with an integer")
                return
            }
            #expect(firstID != secondID)
            #expect(try first.call("CLIENT", "ID") == .integer(firstID), "an ID is stable")

            #expect(try first.call("CLIENT", "SETINFO", "LIB-NAME", "redis-py") == .simple("OK"))
            #expect(try first.call("CLIENT", "SETINFO", "lib-ver", "5.0.0") == .simple("OK"))
            #expect(try first.call("CLIENT", "SETINFO", "color", "red").isError)
            let info = try first.call("CLIENT", "INFO").string ?? ""
            #expect(info.hasPrefix("id=\(firstID) addr=127.0.0.1:") && info.hasSuffix("\n"), "\(info)")
            #expect(info.contains(" laddr=127.0.0.1:\(server.port) "), "\(info)")
            #expect(info.contains(" lib-name=redis-py lib-ver=5.0.0"), "\(info)")

            // CLIENT LIST: every connection, one line each, oldest first; ID narrows it.
            let list = try second.call("CLIENT", "LIST").string ?? ""
            let lines = list.split(separator: "\n").map(String.init)
            #expect(lines.count == 2, "\(list)")
            let firstLine = lines.first { $0.hasPrefix("id=\(firstID) ") } ?? ""
            let secondLine = lines.first { $0.hasPrefix("id=\(secondID) ") } ?? ""
            #expect(firstLine.contains(" name= ") && firstLine.contains(" lib-name=redis-py "), "\(list)")
            #expect(secondLine.contains(" name=other ") && secondLine.contains(" lib-name= "), "\(list)")
            #expect(lines.first?.hasPrefix("id=\(min(firstID, secondID)) ") == true, "oldest (lowest ID) first: \(list)")
            // ID: those connections in the order given, repeats included, unknown IDs skipped.
            let byID = try first.call("CLIENT", "LIST", "ID", "\(secondID)", "0", "\(firstID)", "\(secondID)", "-1").string ?? ""
            #expect(byID.split(separator: "\n").map { $0.prefix { $0 != " " } } == ["id=\(secondID)", "id=\(firstID)", "id=\(secondID)"], "\(byID)")
            #expect(try first.call("CLIENT", "LIST", "ID", "999999").string == "")
            #expect(try first.call("CLIENT", "LIST", "ID", "x") == .error("ERR Invalid client ID"))
            #expect(try first.call("CLIENT", "LIST", "ID") == .error("ERR syntax error"))
            #expect(try first.call("CLIENT", "LIST", "BOGUS") == .error("ERR syntax error"))
            // TYPE: every connection is a normal one.
            let normal = try first.call("CLIENT", "LIST", "TYPE", "normal").string ?? ""
            #expect(normal.split(separator: "\n").map { $0.prefix { $0 != " " } } == ["id=\(min(firstID, secondID))", "id=\(max(firstID, secondID))"], "\(normal)")
            #expect(try first.call("CLIENT", "LIST", "TYPE", "pubsub").string == "")
            #expect(try first.call("CLIENT", "LIST", "TYPE", "odd") == .error("ERR Unknown client type 'odd'"))
            // HELLO's changes show in the list too.
            #expect(try second.call("HELLO", "3", "SETNAME", "three").field("proto") == .integer(3))
            let afterHello = try first.call("CLIENT", "LIST", "ID", "\(secondID)").string ?? ""
            #expect(afterHello.contains(" name=three ") && afterHello.contains(" resp=3 "), "\(afterHello)")
            // A connection that closes leaves the list (the server closes it on end of input).
            second.shutdownWriting()
            var remaining = ""
            let deadline = ContinuousClock.now + .seconds(5)
            repeat {
                remaining = try first.call("CLIENT", "LIST").string ?? ""
            } while remaining.contains("id=\(secondID) ") && ContinuousClock.now < deadline
            #expect(!remaining.contains("id=\(secondID) ") && remaining.hasPrefix("id=\(firstID) "), "\(remaining)")
            #expect(try first.call("CLIENT").isError)
            #expect(try first.call("CLIENT", "NOSUCH").isError)
            // Error text that echoes the client's bytes cannot break the reply stream: CR and LF become spaces.
            #expect(try first.call("CLIENT", "x\r\n:1") == .error("ERR unknown subcommand or wrong number of arguments for 'x  :1'. Try CLIENT HELP."))
            #expect(try first.call("PING") == .simple("PONG"), "the next reply is still the next command's")
        }
    }

    @Test("TYPE, TTL and PTTL answer for keys that never expire, as Redis does for keys without a TTL")
    func typeAndTTL() throws {
        try withServer { server in
            let client = try server.connect()
            #expect(try client.call("SET", "k", "v") == .simple("OK"))
            #expect(try client.call("TYPE", "k") == .simple("string"))
            #expect(try client.call("TYPE", "missing") == .simple("none"))
            #expect(try client.call("TTL", "k") == .integer(-1))
            #expect(try client.call("PTTL", "k") == .integer(-1))
            #expect(try client.call("TTL", "missing") == .integer(-2))
            #expect(try client.call("pttl", "missing") == .integer(-2))
            #expect(try client.call("DEL", "k") == .integer(1))
            #expect(try client.call("TYPE", "k") == .simple("none"))
            #expect(try client.call("TTL", "k") == .integer(-2))
            #expect(try client.call("TYPE") == .error("ERR wrong number of arguments for 'type' command"))
            #expect(try client.call("TTL", "a", "b") == .error("ERR wrong number of arguments for 'ttl' command"))
            #expect(try client.call("COMMAND", "INFO", "type", "pttl") == .array([.array([.text("type")]), .array([.text("pttl")])]))
        }
    }

    @Test("COMMAND COUNT, DOCS, INFO; CONFIG GET; INFO; DBSIZE")
    func serverCommands() throws {
        try withServer { server in
            let client = try server.connect()
            guard case .integer(let count) = try client.call("COMMAND", "COUNT") else {
                Issue.record("COMMAND COUNT must reply with an integer")
                return
            }
            #expect(count >= 15)
            guard case .array(let all) = try client.call("COMMAND") else {
                Issue.record("COMMAND must reply with an array")
                return
            }
            #expect(all.count == count)

            // DOCS: a map of name to a map of fields; flattened in RESP2 (redis-cli reads it for its hints).
            let docs = try client.call("COMMAND", "DOCS", "get")
            #expect(docs.field("get")?.field("summary") == .text("Get the value of key, or nil if it does not exist."), "\(docs)")
            guard case .array(let everything) = try client.call("COMMAND", "DOCS") else {
                Issue.record("COMMAND DOCS must reply with an array in RESP2")
                return
            }
            #expect(everything.count >= 2 * 5)
            #expect(try client.call("COMMAND", "INFO", "get", "nosuch") == .array([.array([.text("get")]), .nullBulk]))
            #expect(try client.call("COMMAND", "BOGUS").isError)

            #expect(try client.call("CONFIG", "GET", "maxclients") == .array([.text("maxclients"), .text("10000")]))
            #expect(try client.call("CONFIG", "GET", "appendfsync") == .array([.text("appendfsync"), .text("always")]))
            #expect(try client.call("CONFIG", "GET", "save", "appendonly") == .array([.text("appendonly"), .text("yes"), .text("save"), .text("")]))
            // Asked for port 0, the server listens on an ephemeral port; either number is fair here.
            let port = try client.call("CONFIG", "GET", "port")
            #expect([Wire.array([.text("port"), .text("0")]), .array([.text("port"), .text("\(server.port)")])].contains(port), "\(port)")
            #expect(try client.call("CONFIG", "GET", "nosuch") == .array([]))
            guard case .array(let matched) = try client.call("CONFIG", "GET", "*") else {
                Issue.record("CONFIG GET * must reply with an array")
                return
            }
            #expect(matched.count >= 18)
            #expect(try client.call("CONFIG", "SET", "maxclients", "5").isError)
            #expect(try client.call("CONFIG", "GET") == .error("ERR wrong number of arguments for 'config|get' command"))

            #expect(try client.call("DBSIZE") == .integer(0))
            #expect(try client.call("SET", "a", "1") == .simple("OK"))
            #expect(try client.call("SET", "b", "2") == .simple("OK"))
            #expect(try client.call("DBSIZE") == .integer(2))
            let info = try client.call("INFO").string ?? ""
            for line in ["# Server", "redis_version:", "redis_mode:standalone", "# Clients", "connected_clients:1",
                         "# Keyspace", "db0:keys=2,", "role:master", "aof_enabled:1"] {
                #expect(info.contains(line), "INFO lacks \(line): \(info)")
            }
            #expect(info.contains("\r\n"), "INFO lines end in CRLF, as Redis's do")
            // Sections by name, in any case; several at once; unknown ones give nothing.
            let keyspace = try client.call("INFO", "keyspace").string ?? ""
            #expect(keyspace == "# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n", "\(keyspace)")
            let two = try client.call("INFO", "CLIENTS", "memory").string ?? ""
            #expect(two.hasPrefix("# Clients\r\n") && two.contains("\r\n\r\n# Memory\r\n") && !two.contains("# Server"), "\(two)")
            let memory = two.split(separator: "\r\n").first { $0.hasPrefix("used_memory_rss:") }.flatMap { Int($0.dropFirst(16)) } ?? 0
            #expect(memory > 1 << 20, "a running server has more than 1 MiB resident: \(two)")
            #expect(try client.call("INFO", "nosuch").string == "")
            #expect(try client.call("INFO", "all").string?.contains("# Replication") == true)
            #expect(try client.call("DEL", "a", "b") == .integer(2))
            #expect(try client.call("INFO", "keyspace").string == "# Keyspace\r\n", "an empty database has no line, as in Redis")
        }
    }

    @Test("QUIT replies +OK, then the server closes the connection")
    func quit() throws {
        try withServer { server in
            let client = try server.connect()
            #expect(try client.call("SET", "k", "v") == .simple("OK"))
            // Commands pipelined after QUIT are not run.
            try client.send(encodeCommand("QUIT") + encodeCommand("SET", "k", "changed"))
            #expect(try client.readUntilClosed() == Array("+OK\r\n".utf8))
            let other = try server.connect()
            #expect(try other.call("GET", "k") == .text("v"))
        }
    }

    @Test("an HTTP request (POST, Host:) is dropped without a reply, as Redis does, and runs nothing after it")
    func httpRequestDropped() throws {
        try withServer { server in
            let client = try server.connect()
            try client.send(Array("POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nSET k v\r\nKVSH.STATS\r\n".utf8))
            #expect(try client.readUntilClosed() == [])
            let host = try server.connect()
            try host.send(Array("Host: 127.0.0.1\r\nSET k v\r\n".utf8))
            #expect(try host.readUntilClosed() == [])
            #expect(try server.connect().call("EXISTS", "k") == .integer(0))
        }
    }

    @Test("unknown commands and wrong arities use Redis's exact wording")
    func errorWording() throws {
        try withServer { server in
            let client = try server.connect()
            #expect(try client.call("x") == .error("ERR unknown command 'x', with args beginning with: "))
            #expect(try client.call("NOSUCH", "a", "b c") == .error("ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b c' "))
            #expect(try client.call("foo", "1", "2", "3", "4") == .error("ERR unknown command 'foo', with args beginning with: '1' '2' '3' "))
            #expect(try client.call("GET") == .error("ERR wrong number of arguments for 'get' command"))
            #expect(try client.call("get", "a", "b") == .error("ERR wrong number of arguments for 'get' command"))
            #expect(try client.call("SET", "k") == .error("ERR wrong number of arguments for 'set' command"))
            #expect(try client.call("DBSIZE", "x") == .error("ERR wrong number of arguments for 'dbsize' command"))
            // Shell meta-commands are not server commands.
            #expect(try client.call(":stats").isError)
            #expect(try client.call("PING") == .simple("PONG"))
        }
    }

    @Test("an arity error names the command as Redis does: DEL, not kvsh's DELETE")
    func arityErrorNamesAlias() throws {
        try withServer { server in
            let client = try server.connect()
            // Redis clients (and their users) know DEL; Redis says 'del' here.
            #expect(try client.call("DEL") == .error("ERR wrong number of arguments for 'del' command"))
            #expect(try client.call("del") == .error("ERR wrong number of arguments for 'del' command"))
        }
    }

    @Test("GET and SET, run in place from the read buffer: any letter case, binary values, RESP2 and RESP3 nil")
    func inPlaceGetAndSet() throws {
        try withServer { server in
            let client = try server.connect()
            let binary: [UInt8] = [0x0D, 0x0A, 0x00, 0xFF, 0x24, 0x2A]
            // One write holding several whole requests: the server lends each in place.
            try client.send(encodeCommand([Array("set".utf8), Array("bin".utf8), binary])
                            + encodeCommand("GeT", "bin") + encodeCommand("gET", "missing") + encodeCommand("sEt", "k", "")
                            + encodeCommand("GET", "k"))
            #expect(try client.replies(5) == [.simple("OK"), .bulk(binary), .nullBulk, .simple("OK"), .text("")])
            // Three-letter names that are not GET or SET, and other arities, take the general path.
            #expect(try client.call("GET") == .error("ERR wrong number of arguments for 'get' command"))
            #expect(try client.call("get", "a", "b") == .error("ERR wrong number of arguments for 'get' command"))
            #expect(try client.call("SET", "k") == .error("ERR wrong number of arguments for 'set' command"))
            #expect(try client.call("SET", "k", "v", "NX") == .nullBulk)
            #expect(try client.call("DEL", "k") == .integer(1))
            #expect(try client.call("GEX", "k").isError)
            #expect(try client.call("HELLO", "3").field("proto") == .integer(3))
            #expect(try client.call("GET", "missing") == .null)
            // A request split across writes is decoded whole by the general decoder, and answered the same.
            let split = encodeCommand("SET", "split", "across reads")
            try client.send(Array(split[..<11]))
            try client.send(Array(split[11...]) + encodeCommand("GET", "split"))
            #expect(try client.replies(2) == [.simple("OK"), .text("across reads")])
            // Each in-place command counts in INFO, like any other.
            let before = try commandsProcessed(client)
            try client.send(encodeCommand("GET", "split") + encodeCommand("SET", "x", "1"))
            _ = try client.replies(2)
            #expect(try commandsProcessed(client) == before + 3)  // the two, and the INFO before them
        }
    }

    @Test("inline commands, telnet style, with quotes")
    func inlineCommands() throws {
        try withServer { server in
            let client = try server.connect()
            try client.send("PING\r\n")
            #expect(try client.reply() == .simple("PONG"))
            try client.send("SET greeting \"hello world\"\r\nGET greeting\r\n")
            #expect(try client.replies(2) == [.simple("OK"), .text("hello world")])
            try client.send("ECHO 'a \\'quoted\\' b'\n")
            #expect(try client.reply() == .text("a 'quoted' b"))
            try client.send("set \"with\\nnewline\" \"\\x41\\x42\"\r\nget \"with\\nnewline\"\r\n")
            #expect(try client.replies(2) == [.simple("OK"), .text("AB")])
            // Blank lines are ignored; inline and multibulk mix on one connection.
            try client.send(Array("\r\n\r\n".utf8) + encodeCommand("GET", "greeting") + Array("EXISTS greeting nope\r\n".utf8))
            #expect(try client.replies(2) == [.text("hello world"), .integer(1)])
        }
    }

    @Test("malformed RESP: -ERR Protocol error, that connection is closed, another keeps working")
    func protocolError() throws {
        try withServer { server in
            let bad = try server.connect()
            let good = try server.connect()
            #expect(try good.call("SET", "k", "v") == .simple("OK"))
            // A complete request before the garbage is answered; nothing after it runs.
            try bad.send(encodeCommand("PING") + Array("*1\r\n:5\r\n".utf8) + encodeCommand("SET", "k", "changed"))
            let bytes = try bad.readUntilClosed()
            #expect(bytes.text == "+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n", "\(escaped(bytes))")
            #expect(try good.call("GET", "k") == .text("v"))

            for garbage in ["*x\r\n", "*1\r\n$-3\r\n", "SET k \"open\r\n", "*1\r\n$3\r\nabcdef\r\n"] {
                let client = try server.connect()
                try client.send(garbage)
                let reply = try client.readUntilClosed()
                #expect(reply.text.hasPrefix("-ERR Protocol error: "), "for \(escaped(Array(garbage.utf8))): \(escaped(reply))")
                #expect(try good.call("PING") == .simple("PONG"))
            }
            #expect(try good.call("GET", "k") == .text("v"))
        }
    }

    @Test("past maxclients a connection gets -ERR max number of clients reached and is closed")
    func maxClients() throws {
        try withServer(maxClients: 2) { server in
            let first = try server.connect()
            let second = try server.connect()
            #expect(try first.call("PING") == .simple("PONG"))
            #expect(try second.call("PING") == .simple("PONG"))
            let third = try server.connect()
            #expect(try third.readUntilClosed() == Array("-ERR max number of clients reached\r\n".utf8))
            // The admitted clients are unaffected.
            #expect(try first.call("SET", "k", "v") == .simple("OK"))
            #expect(try second.call("GET", "k") == .text("v"))
            let info = try first.call("INFO").string ?? ""
            #expect(info.contains("rejected_connections:1"), "\(info)")

            // Once a client leaves, its place is free again (the server notices the close asynchronously).
            first.shutdownWriting()
            _ = try first.readUntilClosed()
            let deadline = ContinuousClock.now + .seconds(10)
            var admitted = false
            while !admitted && ContinuousClock.now < deadline {
                let next = try server.connect()
                try next.send(encodeCommand("PING"))
                admitted = (try? next.reply()) == .simple("PONG")
            }
            #expect(admitted, "a connection was still refused 10 s after a client left")
        }
    }

    @Test("data commands through the server")
    func dataCommands() throws {
        try withServer { server in
            let client = try server.connect()
            #expect(try client.call("SET", "k", "v1") == .simple("OK"))
            #expect(try client.call("GET", "k") == .text("v1"))
            #expect(try client.call("SET", "k", "v2", "GET") == .text("v1"))
            #expect(try client.call("SET", "k", "v3", "NX") == .nullBulk)
            #expect(try client.call("SET", "new", "x", "XX") == .nullBulk)
            #expect(try client.call("SET", "k", "v", "EX", "10").isError)
            #expect(try client.call("MSET", "a", "1", "b", "2") == .simple("OK"))
            #expect(try client.call("MGET", "a", "nope", "b") == .array([.text("1"), .nullBulk, .text("2")]))
            #expect(try client.call("INCR", "a") == .integer(2))
            #expect(try client.call("INCRBY", "a", "10") == .integer(12))
            #expect(try client.call("DECR", "a") == .integer(11))
            #expect(try client.call("DECRBY", "a", "20") == .integer(-9))
            #expect(try client.call("INCR", "k") == .error("ERR value is not an integer or out of range"))
            #expect(try client.call("APPEND", "k", "++") == .integer(4))
            #expect(try client.call("STRLEN", "k") == .integer(4))
            #expect(try client.call("GETDEL", "k") == .text("v2++"))
            #expect(try client.call("EXISTS", "k", "a", "a") == .integer(2))
            #expect(try client.call("SETNX", "a", "z") == .integer(0))
            #expect(try client.call("DEL", "a", "b", "nope") == .integer(2))
            #expect(try client.call("KEYS", "*") == .array([]))
            #expect(try client.call("DBSIZE") == .integer(0))
        }
    }
}

extension Wire {
    var isError: Bool {
        if case .error = self { return true }
        return false
    }
}

@Suite("INFO's figures")
struct ProcessMemoryTests {
    @Test("INFO's _human byte counts read as Redis's: bytes below 1K, then two decimals and K, M, G")
    func humanBytes() {
        #expect(ProcessMemory.human(0) == "0B")
        #expect(ProcessMemory.human(1023) == "1023B")
        #expect(ProcessMemory.human(1024) == "1.00K")
        #expect(ProcessMemory.human(939_968) == "917.94K")
        #expect(ProcessMemory.human(7_094_272) == "6.77M")
        #expect(ProcessMemory.human(3 << 30) == "3.00G")
        #expect(ProcessMemory.human(1_100) == "1.07K")
    }
}
