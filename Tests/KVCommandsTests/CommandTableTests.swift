import KVTestSupport
import Testing
@testable import KVCommands
import RESP

@Suite("Command table")
struct CommandTableTests {
    @Test("lookup is case-insensitive and finds aliases", arguments: [
        ("SET", "SET"), ("set", "SET"), ("SeT", "SET"), ("get", "GET"), ("DELETE", "DELETE"), ("del", "DELETE"),
        ("DEL", "DELETE"), ("Exists", "EXISTS"), (":help", ":help"), (":HELP", ":help"), (":quit", ":quit"),
        (":exit", ":quit"), (":EXIT", ":quit"), (":Format", ":format"), (":rebuild", ":rebuild"), (":stats", ":stats"),
        (":source", ":source"), (":timing", ":timing"), ("KEYS", "KEYS"), ("keys", "KEYS"), ("Scan", "SCAN"),
        ("range", "RANGE"), ("COUNT", "COUNT"), ("count", "COUNT"), ("dbsize", "DBSIZE"), ("DBSize", "DBSIZE"),
        ("mset", "MSET"), ("MGet", "MGET"), ("setnx", "SETNX"), ("GETDEL", "GETDEL"), ("incr", "INCR"), ("Decr", "DECR"),
        ("incrBY", "INCRBY"), ("DECRBY", "DECRBY"), ("append", "APPEND"), ("StrLen", "STRLEN"),
    ])
    func lookup(typed: String, expected: String) throws {
        let spec = try #require(CommandTable.lookup(typed), "\(typed) not found")
        #expect(spec.name == expected)
        #expect(CommandTable.lookup(Array(typed.utf8))?.name == expected)
    }

    @Test("lines with secrets are kept out of the history file, as redis-cli keeps them out", arguments: [
        "AUTH hunter2", "AUTH default hunter2", "auth default hunter2", "  Auth   default   hunter2  ", "AUTH",
        "HELLO 3 AUTH default hunter2", "hello 3 auth u p", "HELLO 3 SETNAME app AUTH u p", "HELLO 2 auth u p SETNAME x",
        "HELLO AUTH u p", "HELLO 3 AUTH u \"pass word\"",
        "ACL SETUSER alice on >secret", "acl setuser alice", "ACL DELUSER alice", "ACL GETUSER alice",
        "CONFIG SET requirepass s3cret", "config set MasterAuth s3cret", "CONFIG SET masteruser bob",
        "CONFIG SET maxmemory 1gb requirepass s3cret", "CONFIG SET tls-key-file-pass x", "CONFIG SET tls-client-key-file-pass x",
        "MIGRATE host 6379 key 0 5000 AUTH s3cret", "MIGRATE host 6379 \"\" 0 5000 COPY REPLACE AUTH2 user s3cret KEYS a b",
        "migrate host 6379 key 0 5000 auth s3cret",
        "SENTINEL CONFIG SET sentinel-pass s3cret", "SENTINEL SET mymaster auth-pass s3cret", "SENTINEL SET mymaster auth-user u",
        // An unbalanced quote does not let the secret through: the line is judged on its blank-separated words.
        "AUTH default \"hunter2", "HELLO 3 AUTH u 'p",
    ])
    func sensitiveLines(line: String) {
        #expect(CommandTable.isSensitive(line: line), "\(line)")
    }

    @Test("ordinary lines are saved in history", arguments: [
        "", "   ", "# AUTH in a comment is not a command", "SET a 1", "GET auth", "SET AUTH hunter2", "KEYS *",
        "HELLO 3", "HELLO 3 SETNAME app", "HELLO", "ACL WHOAMI", "ACL LIST", "CONFIG SET maxmemory 1gb", "CONFIG GET requirepass",
        "CONFIG GET *", "MIGRATE host 6379 key 0 5000", "MIGRATE host 6379 \"\" 0 5000 KEYS auth b", "SENTINEL CONFIG GET *",
        ":help AUTH", ":format json",
    ])
    func ordinaryLines(line: String) {
        #expect(!CommandTable.isSensitive(line: line), "\(line)")
    }

    @Test("the rule on arguments, as bytes")
    func sensitiveArguments() {
        #expect(CommandTable.isSensitive(["AUTH", "x"].map { Array($0.utf8) }))
        #expect(CommandTable.isSensitive(["Config", "sEt", "REQUIREPASS", "x"].map { Array($0.utf8) }))
        #expect(!CommandTable.isSensitive([]))
        #expect(!CommandTable.isSensitive(["GET", "AUTH"].map { Array($0.utf8) }))
    }

    @Test("names that are not commands", arguments: ["", "SE", "SETT", "SET ", " SET", "helpp", "quitt", ":", ":he", "DELETEX", "sEt\u{0}", "ſet", "KEY", "SCANS", "DBSIZ", "RANGES", "LIMIT", "MATCH"])
    func notFound(typed: String) {
        #expect(CommandTable.lookup(typed) == nil, "\(typed.debugDescription)")
    }

    @Test("suggestions for typos", arguments: [
        ("SETT", "SET"), ("sett", "SET"), ("GTE", "GET"), ("DELTE", "DELETE"), ("EXIST", "EXISTS"), ("EXSITS", "EXISTS"),
        (":hlep", ":help"), (":hepl", ":help"), (":qiut", ":quit"), (":stat", ":stats"), (":exti", ":exit"), (":fromat", ":format"),
        ("KEY", "KEYS"), ("SACN", "SCAN"), ("RNAGE", "RANGE"), ("CUONT", "COUNT"), ("DBSIZ", "DBSIZE"), ("dbszie", "DBSIZE"),
    ])
    func suggestion(typed: String, expected: String) {
        #expect(CommandTable.suggestion(for: typed) == expected)
    }

    @Test("no suggestion for nonsense", arguments: ["FROBNICATE", "XYZZYQWERTY", ":frobnicate", "ZZ", "Q", ":xyzzyplugh"])
    func noSuggestion(typed: String) {
        #expect(CommandTable.suggestion(for: typed) == nil, "\(typed) → \(String(describing: CommandTable.suggestion(for: typed)))")
    }

    @Test("data commands are suggested for data typos, meta-commands for meta typos")
    func suggestionKinds() {
        #expect(CommandTable.suggestion(for: "HELP").map { !$0.hasPrefix(":") } ?? true)
        #expect(CommandTable.suggestion(for: ":SET").map { $0.hasPrefix(":") } ?? true)
    }

    @Test("completing the first word follows the user's case")
    func firstWord() {
        let allNames = ["SET", "GET", "MSET", "MGET", "SETNX", "GETDEL", "INCR", "INCRBY", "DECR", "DECRBY", "APPEND", "STRLEN", "DELETE", "DEL", "EXISTS", "KEYS", "SCAN", "RANGE", "COUNT", "DBSIZE", "PING", "ECHO", ":help", ":rebuild", ":compact", ":backup", ":rekey", ":check", ":stats", ":source", ":timing", ":hints", ":format", ":clear", ":quit", ":exit"]
        #expect(Set(CommandTable.completions(forLine: "")) == Set(allNames))
        #expect(CommandTable.completions(forLine: "").count == allNames.count)
        #expect(CommandTable.completions(forLine: "se") == ["set", "setnx"])
        #expect(CommandTable.completions(forLine: "SE") == ["SET", "SETNX"])
        #expect(Set(CommandTable.completions(forLine: "d")) == ["delete", "del", "dbsize", "decr", "decrby"])
        #expect(Set(CommandTable.completions(forLine: "s")) == ["set", "setnx", "scan", "strlen"])
        #expect(Set(CommandTable.completions(forLine: "m")) == ["mset", "mget"])
        #expect(Set(CommandTable.completions(forLine: "INC")) == ["INCR", "INCRBY"])
        #expect(CommandTable.completions(forLine: "ap") == ["append"])
        #expect(CommandTable.completions(forLine: "K") == ["KEYS"])
        #expect(CommandTable.completions(forLine: "ra") == ["range"])
        #expect(CommandTable.completions(forLine: "co") == ["count"])
        #expect(CommandTable.completions(forLine: "DB") == ["DBSIZE"])
        #expect(Set(CommandTable.completions(forLine: "DE")) == ["DELETE", "DEL", "DECR", "DECRBY"])
        #expect(CommandTable.completions(forLine: "e") == ["exists", "echo"], "not exit: EXI completes to EXISTS")
        #expect(CommandTable.completions(forLine: ":he") == [":help"])
        #expect(CommandTable.completions(forLine: ":HE") == [":help"])
        #expect(Set(CommandTable.completions(forLine: ":s")) == [":stats", ":source"])
        #expect(Set(CommandTable.completions(forLine: ":c")) == [":compact", ":check", ":clear"])
        #expect(Set(CommandTable.completions(forLine: ":")) == Set(allNames.filter { $0.hasPrefix(":") }))
        #expect(CommandTable.completions(forLine: "  ge") == ["get", "getdel"])
        #expect(CommandTable.completions(forLine: "x").isEmpty)
    }

    @Test("after :help the command names, after :format the formats, after :timing on/off")
    func arguments() {
        let names = CommandTable.all.map(\.name) + ["@string", "@generic", "@server", "@connection", "@shell"]
        #expect(CommandTable.completions(forLine: ":help ") == names)
        #expect(CommandTable.completions(forLine: ":help  ") == names)
        #expect(CommandTable.completions(forLine: ":HELP ") == names)
        #expect(CommandTable.completions(forLine: ":help ex") == ["exists"])
        #expect(CommandTable.completions(forLine: ":help EX") == ["EXISTS"])
        #expect(CommandTable.completions(forLine: ":help :st") == [":stats"])
        #expect(CommandTable.completions(forLine: ":format ") == ["human", "raw", "json"])
        #expect(CommandTable.completions(forLine: ":format j") == ["json"])
        #expect(CommandTable.completions(forLine: ":format h") == ["human"])
        #expect(CommandTable.completions(forLine: ":timing ") == ["on", "off"])
        #expect(CommandTable.completions(forLine: ":timing of") == ["off"])
        #expect(CommandTable.completions(forLine: "SET ").isEmpty)
        #expect(CommandTable.completions(forLine: "GET k").isEmpty)
        #expect(CommandTable.completions(forLine: ":quit ").isEmpty)
        #expect(CommandTable.completions(forLine: ":help SET ").isEmpty, "only one argument is completed")
        #expect(CommandTable.completions(forLine: ":format json ").isEmpty)
        #expect(CommandTable.completions(forLine: "nosuch ").isEmpty)
    }

    @Test("help for one command shows usage, summary, aliases and an example")
    func helpForCommand() throws {
        for spec in CommandTable.all {
            let text = try #require(CommandTable.help(for: spec.name))
            #expect(text.hasPrefix(spec.usage + "\n"), "\(spec.name)")
            let unwrapped = text.replacing(/\n +/, with: " ")
            #expect(unwrapped.contains(spec.summary))
            #expect(unwrapped.contains("Example: " + spec.example))
            #expect(text.hasSuffix("\n"))
        }
        let set = try #require(CommandTable.help(for: "set"))
        #expect(set.hasPrefix("SET key value [NX|XX] [GET]\n"))
        #expect(set.contains("EX, PX, EXAT, PXAT and KEEPTTL are refused"))
        #expect(set.contains("Example: SET greeting \"hello world\""))
        let delete = try #require(CommandTable.help(for: "DEL"))
        #expect(delete.hasPrefix("DELETE key [key ...]"))
        #expect(delete.contains("Also: DEL"))
        // A meta-command by its name with or without the colon.
        #expect(CommandTable.help(for: "stats")?.hasPrefix(":stats") == true)
        #expect(CommandTable.help(for: ":rebuild")?.hasPrefix(":rebuild [path]") == true)
        #expect(CommandTable.help(for: "exit")?.hasPrefix(":quit") == true)
        #expect(CommandTable.help(for: "nosuch") == nil)
        #expect(CommandTable.help(for: ":nosuch") == nil)
    }

    @Test("the overview lists every command by group and the quoting rules, and fits a 24-row terminal of its width",
          arguments: [80, 60, 120])
    func overview(width: Int) throws {
        let text = try #require(CommandTable.help(for: nil, width: width))
        let words = Set(text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        for spec in CommandTable.all {
            #expect(words.contains(spec.name), "\(spec.name) missing from the overview")
        }
        for group in CommandTable.groups { #expect(text.contains("\n  " + group + " "), "\(group)") }
        #expect(text.contains("Quoting"))
        #expect(text.contains(":help COMMAND"))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count <= 24, "\(lines.count) rows")
        for line in lines { #expect(line.count <= width, "wider than \(width): \(line)") }
    }

    @Test("help wraps at word boundaries to the width, continuation lines indented; no word is broken")
    func helpWraps() throws {
        for name in [nil, "SET", "@string", "@shell", ":backup"] as [String?] {
            let narrow = try #require(CommandTable.help(for: name, width: 50))
            let wide = try #require(CommandTable.help(for: name, width: 10_000))
            for line in narrow.split(separator: "\n") {
                #expect(line.count <= 50 || line.split(separator: " ").count == 1, "\(name ?? "overview"): \(line)")
            }
            func words(_ text: String) -> [Substring] { text.split(whereSeparator: { $0 == " " || $0 == "\n" }) }
            #expect(words(narrow) == words(wide), "wrapping changed the words of \(name ?? "the overview")")
        }
    }

    @Test("specs: names, arities, usage")
    func specs() throws {
        #expect(CommandTable.all.count == 34)
        #expect(CommandTable.dataCommands.allSatisfy { !$0.isMeta && $0.name == $0.name.uppercased() })
        #expect(CommandTable.metaCommands.allSatisfy { $0.isMeta && $0.name == $0.name.lowercased() })
        #expect(CommandTable.lookup("SET")?.arity == 2...Int.max)
        #expect(CommandTable.lookup("SET")?.usage == "SET key value [NX|XX] [GET]")
        #expect(CommandTable.lookup("MSET")?.usage == "MSET key value [key value ...]")
        #expect(CommandTable.lookup("MSET")?.arity == 2...Int.max)
        #expect(CommandTable.lookup("MGET")?.usage == "MGET key [key ...]")
        #expect(CommandTable.lookup("MGET")?.arity == 1...Int.max)
        #expect(CommandTable.lookup("SETNX")?.arity == 2...2)
        #expect(CommandTable.lookup("GETDEL")?.arity == 1...1)
        #expect(CommandTable.lookup("INCR")?.arity == 1...1)
        #expect(CommandTable.lookup("DECR")?.arity == 1...1)
        #expect(CommandTable.lookup("INCRBY")?.usage == "INCRBY key increment")
        #expect(CommandTable.lookup("DECRBY")?.usage == "DECRBY key decrement")
        #expect(CommandTable.lookup("INCRBY")?.arity == 2...2)
        #expect(CommandTable.lookup("DECRBY")?.arity == 2...2)
        #expect(CommandTable.lookup("APPEND")?.usage == "APPEND key value")
        #expect(CommandTable.lookup("STRLEN")?.usage == "STRLEN key")
        #expect(CommandTable.lookup("GET")?.arity == 1...1)
        #expect(CommandTable.lookup("DELETE")?.arity.lowerBound == 1)
        #expect(CommandTable.lookup(":stats")?.arity == 0...0)
        #expect(CommandTable.lookup("GET")?.usage == "GET key")
        #expect(CommandTable.lookup(":stats")?.usage == ":stats")
        #expect(CommandTable.lookup(":format")?.usage == ":format human|raw|json")
        #expect(CommandTable.lookup("KEYS")?.usage == "KEYS pattern")
        #expect(CommandTable.lookup("SCAN")?.usage == "SCAN cursor [MATCH pattern] [COUNT n]")
        #expect(CommandTable.lookup("RANGE")?.usage == "RANGE start end [LIMIT n]")
        #expect(CommandTable.lookup("COUNT")?.usage == "COUNT start end")
        #expect(CommandTable.lookup("DBSIZE")?.usage == "DBSIZE")
        #expect(CommandTable.lookup("KEYS")?.arity == 1...1)
        #expect(CommandTable.lookup("SCAN")?.arity.lowerBound == 1)
        #expect(CommandTable.lookup("RANGE")?.arity == 2...4)
        #expect(CommandTable.lookup("COUNT")?.arity == 2...2)
        #expect(CommandTable.lookup("DBSIZE")?.arity == 0...0)
        // Every name and alias is unique, ignoring case.
        let names = CommandTable.all.flatMap { [$0.name] + $0.aliases }.map { $0.uppercased() }
        #expect(Set(names).count == names.count)
    }

    @Test("CommandError messages")
    func errors() throws {
        let get = try #require(CommandTable.lookup("GET"))
        #expect(CommandError.wrongArity(get).message == "ERR wrong number of arguments for 'GET' (usage: GET key)")
        #expect(CommandError.unknownCommand("SETT").message == "ERR unknown command 'SETT' (did you mean 'SET'? type :help for the list)")
        #expect(CommandError.unknownCommand(":hlep").message == "ERR unknown meta-command ':hlep' (did you mean ':help'? type :help for the list)")
        #expect(CommandError.unknownCommand("FROBNICATE").message == "ERR unknown command 'FROBNICATE' (type :help for the list)")
        let timing = try #require(CommandTable.lookup(":timing"))
        #expect(CommandError.badArgument(timing, "maybe").message == "ERR invalid argument 'maybe' for ':timing' (usage: :timing on|off)")
        #expect(CommandError.unbalancedQuotes.message.hasPrefix("ERR unbalanced quotes"))
        let scan = try #require(CommandTable.lookup("SCAN"))
        #expect(CommandError.syntax(scan).message == "ERR syntax error (usage: SCAN cursor [MATCH pattern] [COUNT n])")
        #expect(CommandError.invalidCursor.message.hasPrefix("ERR invalid cursor ("))
        #expect(CommandError.notAnInteger("x").message == "ERR value is not an integer or out of range (x)")
        #expect(CommandError.other("x").description == "ERR x")
    }

    // MARK: redis-cli's habits

    @Test("help, quit, exit and clear are the shell's words, PING and ECHO are commands; typos of them are suggested")
    func redisCLIWords() throws {
        #expect(CommandTable.lookup("help")?.id == .help)
        #expect(CommandTable.lookup("HELP")?.id == .help)
        #expect(CommandTable.lookup("quit")?.id == .quit)
        #expect(CommandTable.lookup("exit")?.id == .quit)
        #expect(CommandTable.lookup("clear")?.id == .clear)
        #expect(CommandTable.lookup("PING").map { !$0.isMeta && !$0.needsStore } == true)
        #expect(CommandTable.lookup("echo").map { !$0.isMeta && !$0.needsStore } == true)
        #expect(CommandTable.suggestion(for: "hlep") == "help")
        #expect(CommandTable.suggestion(for: "exti") == "exit")
        #expect(CommandTable.lookup("GET")?.needsStore == true)
        #expect(CommandTable.lookup(":stats")?.needsStore == true)
        #expect(CommandTable.lookup(":help")?.needsStore == false)
    }

    @Test("help @group lists the group's commands; an unknown group has no help")
    func helpForGroup() throws {
        let strings = try #require(CommandTable.help(for: "@string"))
        #expect(strings.hasPrefix("Commands in @string:\n"))
        for spec in CommandTable.all {
            #expect(strings.contains("  " + spec.usage + " ") == (spec.group == "string"), "\(spec.name)")
        }
        #expect(CommandTable.help(for: "@CONNECTION")?.contains("PING [message]") == true)
        #expect(CommandTable.help(for: "@shell")?.contains(":quit") == true)
        #expect(CommandTable.help(for: "@nosuch") == nil)
        #expect(CommandTable.all.allSatisfy { CommandTable.groups.contains($0.group) })
    }

    @Test("usage lines are rendered from the structured arguments, as redis-cli renders its hints")
    func synopsisFromArguments() throws {
        #expect(CommandTable.dataCommands.allSatisfy { $0.arguments == $0.syntax.map(\.synopsis).joined(separator: " ") })
        #expect(CommandTable.lookup("PING")?.usage == "PING [message]")
        #expect(CommandTable.lookup("ECHO")?.usage == "ECHO message")
        #expect(CommandTable.dataCommands.allSatisfy { !$0.complexity.isEmpty && $0.since == "1.0.0" })
    }

    @Test("COMMAND DOCS entries have Redis 7.0's shape")
    func commandDocs() throws {
        let set = try #require(CommandTable.lookup("SET"))
        let key: RESPValue = .map([(.bulk("name"), .bulk("key")), (.bulk("type"), .bulk("key")), (.bulk("key_spec_index"), .integer(0))])
        let value: RESPValue = .map([(.bulk("name"), .bulk("value")), (.bulk("type"), .bulk("string"))])
        let condition: RESPValue = .map([
            (.bulk("name"), .bulk("condition")), (.bulk("type"), .bulk("oneof")), (.bulk("flags"), .array([.simpleString("optional")])),
            (.bulk("arguments"), .array([
                .map([(.bulk("name"), .bulk("nx")), (.bulk("type"), .bulk("pure-token")), (.bulk("token"), .bulk("NX"))]),
                .map([(.bulk("name"), .bulk("xx")), (.bulk("type"), .bulk("pure-token")), (.bulk("token"), .bulk("XX"))]),
            ])),
        ])
        let get: RESPValue = .map([(.bulk("name"), .bulk("get")), (.bulk("type"), .bulk("pure-token")), (.bulk("token"), .bulk("GET")),
                                   (.bulk("flags"), .array([.simpleString("optional")]))])
        let expected: RESPValue = .map([
            (.bulk("summary"), .bulk(set.summary)), (.bulk("since"), .bulk("1.0.0")), (.bulk("group"), .bulk("string")),
            (.bulk("complexity"), .bulk(set.complexity)), (.bulk("arguments"), .array([key, value, condition, get])),
        ])
        #expect(CommandTable.docs(set) == expected)
        let mget = try #require(CommandTable.lookup("MGET"))
        #expect(CommandTable.docs(mget) == .map([
            (.bulk("summary"), .bulk(mget.summary)), (.bulk("since"), .bulk("1.0.0")), (.bulk("group"), .bulk("string")),
            (.bulk("complexity"), .bulk(mget.complexity)),
            (.bulk("arguments"), .array([.map([(.bulk("name"), .bulk("key")), (.bulk("type"), .bulk("key")),
                                              (.bulk("key_spec_index"), .integer(0)),
                                              (.bulk("flags"), .array([.simpleString("multiple")]))])])),
        ]))
        // No arguments, no `arguments` field (as Redis replies for DBSIZE).
        let dbsize = try #require(CommandTable.lookup("DBSIZE"))
        guard case .map(let fields) = CommandTable.docs(dbsize) else {
            Issue.record("COMMAND DOCS entries are maps")
            return
        }
        #expect(fields.map(\.0) == [.bulk("summary"), .bulk("since"), .bulk("group"), .bulk("complexity")])
    }
}
