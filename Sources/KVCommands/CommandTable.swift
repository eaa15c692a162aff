import KVAccess
import RESP

/// One argument of a data command, as Redis 7.0's `COMMAND DOCS` describes arguments (`name`, `type`, `token`,
/// `flags`, nested `arguments`): the usage line is rendered from these, as redis-cli renders its hints.
public struct CommandArgument: Sendable, Equatable {
    /// Redis's argument types (the ones kvsh's commands use).
    public enum Kind: String, Sendable {
        case key, string, integer, pattern
        case pureToken = "pure-token"
        case oneOf = "oneof"
        case block
    }

    public let name: String
    public let kind: Kind
    /// The literal word that introduces the argument (`MATCH` in `[MATCH pattern]`), or is the argument (`NX`).
    public let token: String?
    public let isOptional: Bool
    public let isMultiple: Bool
    /// The alternatives of a `oneof`, the parts of a `block`.
    public let arguments: [CommandArgument]

    public init(_ name: String, _ kind: Kind, token: String? = nil, optional: Bool = false, multiple: Bool = false,
                arguments: [CommandArgument] = []) {
        self.name = name
        self.kind = kind
        self.token = token
        self.isOptional = optional
        self.isMultiple = multiple
        self.arguments = arguments
    }

    static func key(_ name: String = "key", multiple: Bool = false) -> CommandArgument {
        CommandArgument(name, .key, multiple: multiple)
    }
    static func string(_ name: String) -> CommandArgument { CommandArgument(name, .string) }
    static func integer(_ name: String) -> CommandArgument { CommandArgument(name, .integer) }
    static func token(_ word: String, optional: Bool = false) -> CommandArgument {
        CommandArgument(word.lowercased(), .pureToken, token: word, optional: optional)
    }

    /// As redis-cli shows it in hints and `help`: `key [key ...]`, `[MATCH pattern]`, `[NX|XX]`.
    public var synopsis: String {
        var text: String
        switch kind {
        case .pureToken: text = token ?? name
        case .oneOf: text = arguments.map(\.synopsis).joined(separator: "|")
        case .block: text = arguments.map(\.synopsis).joined(separator: " ")
        default: text = token.map { $0 + " " + name } ?? name
        }
        if isMultiple { text += " [" + text + " ...]" }
        return isOptional ? "[" + text + "]" : text
    }
}

/// Every command the shell knows, with what help, completion, arity checks and suggestions need.
/// The one place a command is described: parser, `:help`, Tab completion, `COMMAND DOCS` and the docs follow it.
/// A class, so that handing one around on the hot path costs one retain, not one per field.
public final class CommandSpec: Sendable {
    public enum ID: Sendable {
        case set, get, delete, exists
        case mset, mget, setnx, getdel, incr, decr, incrby, decrby, append, strlen
        case keys, scan, range, count, dbsize
        case ping, echo
        case help, rebuild, compact, backup, rekey, check, stats, source, timing, hints, format, clear, quit
    }

    public let id: ID
    /// Upper case for data commands (`SET`), lower case with a colon for meta-commands (`:help`).
    public let name: String
    public let aliases: [String]
    /// The arguments as shown in usage lines: `key value`, `key [key ...]`. For data commands, rendered from
    /// ``syntax``.
    public let arguments: String
    /// A data command's arguments, structured as `COMMAND DOCS` replies them (empty for meta-commands).
    public let syntax: [CommandArgument]
    /// How many arguments may follow the name.
    public let arity: ClosedRange<Int>
    public let summary: String
    public let example: String
    /// Redis's command group (`string`, `generic`, `connection`); `shell` for meta-commands. `help @group` lists one.
    public let group: String
    /// The kvsh version that added the command (`COMMAND DOCS`'s `since`).
    public let since: String
    /// Its time complexity, as Redis words it (`COMMAND DOCS`'s `complexity`); empty for meta-commands.
    public let complexity: String
    /// Whether running it needs a store (or a server): false for `PING`, `ECHO` and the meta-commands that only
    /// change or describe the shell, which then run without opening (and creating) a data directory.
    public let needsStore: Bool
    /// Its ACL categories (Redis's, for the Redis commands), where its keys are and how it uses them: see
    /// ``CommandTable/access(_:)``, the table that assigns them.
    public let access: CommandAccess

    /// A data command.
    init(id: ID, name: String, aliases: [String] = [], syntax: [CommandArgument], arity: ClosedRange<Int>, group: String,
         complexity: String, needsStore: Bool = true, summary: String, example: String) {
        self.id = id
        self.name = name
        self.aliases = aliases
        self.syntax = syntax
        self.arguments = syntax.map(\.synopsis).joined(separator: " ")
        self.arity = arity
        self.summary = summary
        self.example = example
        self.group = group
        self.since = "1.0.0"
        self.complexity = complexity
        self.needsStore = needsStore
        access = CommandTable.access(id)
    }

    /// A meta-command.
    init(id: ID, name: String, aliases: [String], arguments: String, arity: ClosedRange<Int>, needsStore: Bool = true,
         summary: String, example: String) {
        self.id = id
        self.name = name
        self.aliases = aliases
        self.arguments = arguments
        self.syntax = []
        self.arity = arity
        self.summary = summary
        self.example = example
        self.group = "shell"
        self.since = "1.0.0"
        self.complexity = ""
        self.needsStore = needsStore
        access = CommandTable.access(id)
    }

    public var isMeta: Bool { name.hasPrefix(":") }
    /// Whether the command can change data: refused on a read-only replica, propagated to replicas, counted by
    /// `--min-replicas-to-write`.
    public var writesData: Bool {
        switch id {
        case .set, .mset, .setnx, .getdel, .delete, .incr, .incrby, .decr, .decrby, .append: return true
        default: return false
        }
    }
    public var usage: String { arguments.isEmpty ? name : "\(name) \(arguments)" }
    var allNames: [String] { [name] + aliases }
}

/// What the ACL needs to know of a command: its categories, which arguments are keys, and whether it reads their
/// values, writes them, both, or neither (Redis 7.0's key-spec flags: EXISTS and STRLEN use no value).
public struct CommandAccess: Sendable {
    public enum Keys: Sendable {
        /// No key (PING, DBSIZE, KEYS, SCAN: as in Redis, listing names is not checked against key patterns).
        case none
        /// The first argument.
        case first
        /// Every argument.
        case all
        /// Every other argument from the first (MSET's keys).
        case alternate
        /// Every key, named or not: RANGE returns values of keys it does not name, so it needs read access to all.
        case everything
    }

    public let categories: ACLCategories
    public let keys: Keys
    public let keyAccess: ACLKeyAccess

    /// The key arguments of `arguments` (the command name first).
    public func keyIndices(_ count: Int) -> StrideTo<Int> {
        switch keys {
        case .none, .everything: return stride(from: 1, to: 1, by: 1)
        case .first: return stride(from: 1, to: min(2, count), by: 1)
        case .all: return stride(from: 1, to: count, by: 1)
        case .alternate: return stride(from: 1, to: count, by: 2)
        }
    }
}

public enum CommandTable {
    /// The ACL table of the commands of this file: Redis 7.0's categories and key-spec flags for its commands (SET
    /// with GET also reads: see ``keyAccess(_:_:)``), kvsh's for its own. Meta-commands reach a server as `KVSH.*`
    /// maintenance commands, which are `@admin @dangerous @slow`.
    static func access(_ id: CommandSpec.ID) -> CommandAccess {
        switch id {
        case .set: return CommandAccess(categories: [.write, .string, .slow], keys: .first, keyAccess: .write)
        case .get: return CommandAccess(categories: [.read, .string, .fast], keys: .first, keyAccess: .read)
        case .mset: return CommandAccess(categories: [.write, .string, .slow], keys: .alternate, keyAccess: .write)
        case .mget: return CommandAccess(categories: [.read, .string, .fast], keys: .all, keyAccess: .read)
        case .setnx: return CommandAccess(categories: [.write, .string, .fast], keys: .first, keyAccess: .write)
        case .getdel: return CommandAccess(categories: [.write, .string, .fast], keys: .first, keyAccess: .readWrite)
        case .delete: return CommandAccess(categories: [.keyspace, .write, .slow], keys: .all, keyAccess: .write)
        case .exists: return CommandAccess(categories: [.keyspace, .read, .fast], keys: .all, keyAccess: [])
        case .incr, .decr, .incrby, .decrby:
            return CommandAccess(categories: [.write, .string, .fast], keys: .first, keyAccess: .readWrite)
        case .append: return CommandAccess(categories: [.write, .string, .fast], keys: .first, keyAccess: .write)
        case .strlen: return CommandAccess(categories: [.read, .string, .fast], keys: .first, keyAccess: [])
        case .keys: return CommandAccess(categories: [.keyspace, .read, .slow, .dangerous], keys: .none, keyAccess: [])
        case .scan: return CommandAccess(categories: [.keyspace, .read, .slow], keys: .none, keyAccess: [])
        case .range: return CommandAccess(categories: [.keyspace, .read, .slow], keys: .everything, keyAccess: .read)
        case .count: return CommandAccess(categories: [.keyspace, .read, .slow], keys: .none, keyAccess: [])
        case .dbsize: return CommandAccess(categories: [.keyspace, .read, .fast], keys: .none, keyAccess: [])
        case .ping, .echo: return CommandAccess(categories: [.fast, .connection], keys: .none, keyAccess: [])
        case .help, .rebuild, .compact, .backup, .rekey, .check, .stats, .source, .timing, .hints, .format, .clear, .quit:
            return CommandAccess(categories: [.admin, .dangerous, .slow], keys: .none, keyAccess: [])
        }
    }

    /// How `arguments` (a request for `spec`) use their keys: SET with its GET option also reads the old value.
    public static func keyAccess(_ spec: CommandSpec, _ arguments: [[UInt8]]) -> ACLKeyAccess {
        if spec.id == .set, arguments.count > 3,
           arguments.dropFirst(3).contains(where: { word in word.count == 3 && word.map { $0 & 0xDF } == Array("GET".utf8) }) {
            return .readWrite
        }
        return spec.access.keyAccess
    }

    /// The data commands as the ACL catalog describes them (aliases included).
    public static var aclDescriptors: [ACLCommandDescriptor] {
        dataCommands.map { ACLCommandDescriptor(name: $0.name, aliases: $0.aliases, categories: $0.access.categories) }
    }

    public static let dataCommands: [CommandSpec] = [
        CommandSpec(id: .set, name: "SET", aliases: [], syntax: [.key(), .string("value"), CommandArgument("condition", .oneOf, optional: true, arguments: [.token("NX"), .token("XX")]),
                              .token("GET", optional: true)],
                    arity: 2...Int.max, group: "string", complexity: "O(log N) where N is the number of keys",
                    summary: "Set key to hold value, replacing any value it had. Replies OK once the write is durable. "
                        + "NX sets it only if the key does not exist, XX only if it does (nil when nothing was set); "
                        + "GET replies with the old value (or nil) instead of OK. Keys never expire: EX, PX, EXAT, PXAT and KEEPTTL are refused.",
                    example: "SET greeting \"hello world\""),
        CommandSpec(id: .get, name: "GET", syntax: [.key()], arity: 1...1, group: "string", complexity: "O(log N) where N is the number of keys",
                    summary: "Get the value of key, or nil if it does not exist.",
                    example: "GET greeting"),
        CommandSpec(id: .mset, name: "MSET", aliases: [], syntax: [CommandArgument("data", .block, multiple: true, arguments: [.key(), .string("value")])], arity: 2...Int.max,
                    group: "string", complexity: "O(M log N) where M is the number of keys to set and N the number of keys",
                    summary: "Set several keys at once, atomically: one log record, so after a crash either all of them are set or none is. "
                        + "A key named twice gets its last value.",
                    example: "MSET user:1 alice user:2 bob"),
        CommandSpec(id: .mget, name: "MGET", syntax: [.key(multiple: true)], arity: 1...Int.max, group: "string",
                    complexity: "O(M log N) where M is the number of keys to get and N the number of keys",
                    summary: "Get the values of several keys as an array, in order, with nil for each key that does not exist.",
                    example: "MGET user:1 user:2 user:3"),
        CommandSpec(id: .setnx, name: "SETNX", syntax: [.key(), .string("value")], arity: 2...2, group: "string",
                    complexity: "O(log N) where N is the number of keys",
                    summary: "Set key to value only if it does not exist; replies 1 if it was set, 0 if not.",
                    example: "SETNX lock:report worker-7"),
        CommandSpec(id: .getdel, name: "GETDEL", syntax: [.key()], arity: 1...1, group: "string", complexity: "O(log N) where N is the number of keys",
                    summary: "Get the value of key and delete the key, atomically; nil if it does not exist.",
                    example: "GETDEL session:42"),
        CommandSpec(id: .delete, name: "DELETE", aliases: ["DEL"], syntax: [.key(multiple: true)], arity: 1...Int.max, group: "generic",
                    complexity: "O(M log N) where M is the number of keys to delete and N the number of keys",
                    summary: "Delete the keys that exist, atomically; replies with how many were deleted.",
                    example: "DELETE greeting old:1 old:2"),
        CommandSpec(id: .exists, name: "EXISTS", syntax: [.key(multiple: true)], arity: 1...Int.max, group: "generic",
                    complexity: "O(M log N) where M is the number of keys to check and N the number of keys",
                    summary: "Count how many of the keys exist (a key named twice counts twice).",
                    example: "EXISTS greeting"),
        CommandSpec(id: .incr, name: "INCR", syntax: [.key()], arity: 1...1, group: "string", complexity: "O(log N) where N is the number of keys",
                    summary: "Add 1 to the integer value of key (a missing key counts as 0) and reply with the new value. "
                        + "The value must be a decimal integer within 64 bits; it is stored as decimal text.",
                    example: "INCR page:views"),
        CommandSpec(id: .incrby, name: "INCRBY", syntax: [.key(), .integer("increment")], arity: 2...2, group: "string",
                    complexity: "O(log N) where N is the number of keys",
                    summary: "Add increment (an integer, negative to subtract) to the integer value of key (a missing key counts as 0) "
                        + "and reply with the new value.",
                    example: "INCRBY page:views 10"),
        CommandSpec(id: .decr, name: "DECR", syntax: [.key()], arity: 1...1, group: "string", complexity: "O(log N) where N is the number of keys",
                    summary: "Subtract 1 from the integer value of key (a missing key counts as 0) and reply with the new value.",
                    example: "DECR stock:widgets"),
        CommandSpec(id: .decrby, name: "DECRBY", syntax: [.key(), .integer("decrement")], arity: 2...2, group: "string",
                    complexity: "O(log N) where N is the number of keys",
                    summary: "Subtract decrement (an integer) from the integer value of key (a missing key counts as 0) "
                        + "and reply with the new value.",
                    example: "DECRBY stock:widgets 3"),
        CommandSpec(id: .append, name: "APPEND", syntax: [.key(), .string("value")], arity: 2...2, group: "string",
                    complexity: "O(log N + M) where N is the number of keys and M the length of the new value",
                    summary: "Append value to the value of key, creating the key if it does not exist; replies with the new length.",
                    example: "APPEND greeting \", and goodbye\""),
        CommandSpec(id: .strlen, name: "STRLEN", syntax: [.key()], arity: 1...1, group: "string", complexity: "O(log N) where N is the number of keys",
                    summary: "The length in bytes of the value of key (0 if it does not exist).",
                    example: "STRLEN greeting"),
        CommandSpec(id: .keys, name: "KEYS", syntax: [CommandArgument("pattern", .pattern)], arity: 1...1, group: "generic",
                    complexity: "O(N) where N is the number of keys with the pattern's literal prefix",
                    summary: "List the keys matching a glob pattern (* ? [abc] [^a] [a-z], \\ escapes), in bytewise order. "
                        + "A pattern that starts with literal bytes (user:*) looks only at the keys with that prefix.",
                    example: "KEYS user:*"),
        CommandSpec(id: .scan, name: "SCAN",
                    syntax: [.integer("cursor"), CommandArgument("pattern", .pattern, token: "MATCH", optional: true),
                             CommandArgument("n", .integer, token: "COUNT", optional: true)],
                    arity: 1...Int.max, group: "generic",
                    complexity: "O(log N + C) for every call, where C is the COUNT; O(N) for a complete iteration",
                    summary: "Iterate over the keys a few per call, in bytewise order. Start with cursor 0 and pass each returned cursor "
                        + "to the next call; a returned 0 means done. COUNT (default 10) bounds the keys looked at per call; "
                        + "MATCH keeps those matching a pattern. Keys present for the whole iteration are returned exactly once.",
                    example: "SCAN 0 MATCH user:* COUNT 100"),
        CommandSpec(id: .range, name: "RANGE",
                    syntax: [.string("start"), .string("end"), CommandArgument("n", .integer, token: "LIMIT", optional: true)],
                    arity: 2...4, group: "generic", complexity: "O(log N + M) where M is the number of pairs returned",
                    summary: "List the key-value pairs with start <= key < end, in bytewise order, at most n with LIMIT. "
                        + "A start of - or an end of + leaves that side open.",
                    example: "RANGE user:100 user:200 LIMIT 10"),
        CommandSpec(id: .count, name: "COUNT", syntax: [.string("start"), .string("end")], arity: 2...2, group: "generic",
                    complexity: "O(log N + M) where M is the number of keys counted",
                    summary: "Count the keys with start <= key < end. A start of - or an end of + leaves that side open.",
                    example: "COUNT user:100 user:200"),
        CommandSpec(id: .dbsize, name: "DBSIZE", syntax: [], arity: 0...0, group: "server", complexity: "O(1)",
                    summary: "Count the keys in the store.",
                    example: "DBSIZE"),
        CommandSpec(id: .ping, name: "PING", syntax: [CommandArgument("message", .string, optional: true)], arity: 0...1,
                    group: "connection", complexity: "O(1)", needsStore: false,
                    summary: "Reply PONG, or the message if one is given: checks that the store (or the server) answers.",
                    example: "PING"),
        CommandSpec(id: .echo, name: "ECHO", syntax: [.string("message")], arity: 1...1,
                    group: "connection", complexity: "O(1)", needsStore: false,
                    summary: "Reply with the message.",
                    example: "ECHO \"hello world\""),
    ]

    public static let metaCommands: [CommandSpec] = [
        CommandSpec(id: .help, name: ":help", aliases: ["help"], arguments: "[command|@group]", arity: 0...1, needsStore: false,
                    summary: "List the commands, show one command's usage, summary and an example, or list a group's commands "
                        + "(@string, @generic, @server, @connection, @shell).",
                    example: ":help SET"),
        CommandSpec(id: .rebuild, name: ":rebuild", aliases: [], arguments: "[path]", arity: 0...1,
                    summary: "Without a path: drop the in-memory index and replay this store's log, verifying every checksum. "
                        + "With a path: replay that log (a kvsh log, or the JSON-lines log of the Go StorageEngine) into this store as new durable writes.",
                    example: ":rebuild old-store/000001.log"),
        CommandSpec(id: .compact, name: ":compact", aliases: [], arguments: "", arity: 0...0,
                    summary: "Write an image of the live data and start a new log, deleting the old log; reports sizes before and after. "
                        + "Also runs by itself in the background when the log outgrows the data.",
                    example: ":compact"),
        CommandSpec(id: .backup, name: ":backup", aliases: [], arguments: "path [--force]", arity: 0...2,
                    summary: "Write a consistent backup of the store to one checksummed file while it keeps serving "
                        + "(restore it with: kvsh restore PATH --data-dir DIR). An existing file is replaced only with --force. "
                        + "Connected to a server, without a path: into the server's --backup-dir.",
                    example: ":backup /backups/kvsh-today.kvbak"),
        CommandSpec(id: .rekey, name: ":rekey", aliases: [], arguments: "key-file", arity: 1...1,
                    summary: "Re-encrypt the store under the key in key-file (kvsh keygen FILE) while it keeps serving: a checkpoint "
                        + "into the new key, then every file sealed with the old one deleted. Restart with --encryption-key-file "
                        + "key-file; backups made before stay sealed with the old key. Connected to a server: the file is on its machine.",
                    example: ":rekey /etc/kvsh/new.key"),
        CommandSpec(id: .check, name: ":check", aliases: [], arguments: "", arity: 0...0,
                    summary: "Verify every file of the store (headers, checksums, sequence numbers, image and log coverage) and print a report.",
                    example: ":check"),
        CommandSpec(id: .stats, name: ":stats", aliases: [], arguments: "", arity: 0...0,
                    summary: "Show keys, log size, sequence numbers, sync policy and fsync count.",
                    example: ":stats"),
        CommandSpec(id: .source, name: ":source", aliases: [], arguments: "file", arity: 1...1,
                    summary: "Run the commands in file as a script (errors report the file and line).",
                    example: ":source fixtures.kv"),
        CommandSpec(id: .timing, name: ":timing", aliases: [], arguments: "on|off", arity: 1...1, needsStore: false,
                    summary: "Print how long each command took, after its reply.",
                    example: ":timing on"),
        CommandSpec(id: .hints, name: ":hints", aliases: [], arguments: "on|off", arity: 1...1, needsStore: false,
                    summary: "Show or hide the grey hint of a command's arguments while typing it (on by default on a terminal).",
                    example: ":hints off"),
        CommandSpec(id: .format, name: ":format", aliases: [], arguments: "human|raw|json", arity: 1...1, needsStore: false,
                    summary: "Change how replies are printed.",
                    example: ":format json"),
        CommandSpec(id: .clear, name: ":clear", aliases: ["clear"], arguments: "", arity: 0...0, needsStore: false,
                    summary: "Clear the terminal screen (does nothing when the output is not a terminal).",
                    example: ":clear"),
        CommandSpec(id: .quit, name: ":quit", aliases: [":exit", "quit", "exit"], arguments: "", arity: 0...0, needsStore: false,
                    summary: "Leave kvsh (Ctrl-D on an empty line does the same).",
                    example: ":quit"),
    ]

    public static let all = dataCommands + metaCommands

    /// Every name and alias in upper case, as bytes, for `lookup`.
    private static let namesInUpperCase: [(name: [UInt8], spec: CommandSpec)] = all.flatMap { spec in
        spec.allNames.map { (Array($0.uppercased().utf8), spec) }
    }

    /// The command named `name` (case-insensitive, aliases included). Runs once per command: compares bytes
    /// in place, allocating nothing.
    public static func lookup(_ name: [UInt8]) -> CommandSpec? {
        name.withUnsafeBufferPointer { typed in
            namesInUpperCase.withUnsafeBufferPointer { entries in
                for entry in entries where entry.name.count == typed.count {
                    let matches = entry.name.withUnsafeBufferPointer { known in
                        var index = 0
                        while index < known.count && known[index] == asciiUppercased(typed[index]) { index += 1 }
                        return index == known.count
                    }
                    if matches { return entry.spec }
                }
                return nil
            }
        }
    }

    public static func lookup(_ name: String) -> CommandSpec? {
        lookup(Array(name.utf8))
    }

    @inline(__always)
    static func asciiUppercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") ? byte - 32 : byte
    }

    /// The known name closest to `name` (edit distance, ignoring case), if it is close enough to be a typo.
    public static func suggestion(for name: String) -> String? {
        let typed = name.uppercased()
        // Without a colon: the data commands and the shell's words (help, quit, exit, clear).
        let candidates = typed.hasPrefix(":") ? metaCommands.flatMap(\.allNames)
            : dataCommands.flatMap(\.allNames) + metaCommands.flatMap(\.aliases).filter { !$0.hasPrefix(":") }
        let scored = candidates.map { (name: $0, distance: editDistance(typed, $0.uppercased())) }
        guard let best = scored.min(by: { $0.distance < $1.distance }) else { return nil }
        return best.distance <= max(2, typed.count / 2) ? best.name : nil
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8), b = Array(b.utf8)
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }

    // MARK: Secrets

    /// Whether the command line `line` carries a secret (a password, a user's credentials) and must stay out of the
    /// shell's history: see ``isSensitive(_:)``. The line is split as the shell splits it; a line whose quotes do not
    /// balance (the shell refuses it, but it was typed) is judged on its blank-separated words, so a stray quote
    /// cannot let a password through.
    public static func isSensitive(line: String) -> Bool {
        let bytes = Array(line.utf8)
        if let arguments = try? Tokenizer.split(bytes) { return isSensitive(arguments) }
        return isSensitive(bytes.split(whereSeparator: Tokenizer.isBlank).map { word in
            Array(word.drop { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "'") })
        })
    }

    /// Whether a command (its name first) carries a secret, by redis-cli's rule for what it keeps out of its history
    /// file (`isSensitiveCommand` in redis-cli.c; this follows its current list, a superset of Redis 7.0's), matched
    /// without regard to case: `AUTH`; `HELLO` with an `AUTH` option; `ACL SETUSER|DELUSER|GETUSER`; `CONFIG SET` of
    /// one of ``secretConfigParameters``; `MIGRATE` with `AUTH` or `AUTH2` among its options (before `KEYS`);
    /// `SENTINEL CONFIG SET sentinel-pass|sentinel-user` and `SENTINEL SET master auth-pass|auth-user`.
    ///
    /// This is the one place the rule lives: a command that later takes a secret belongs here.
    public static func isSensitive(_ arguments: [[UInt8]]) -> Bool {
        let words = arguments.map { String(decoding: $0, as: UTF8.self).uppercased() }
        guard let name = words.first else { return false }
        switch name {
        case "AUTH":
            return true
        case "HELLO":
            // HELLO [protover [AUTH username password] [SETNAME clientname]]: redis-cli only looks for AUTH where an
            // option may stand; any AUTH after the name is enough here, which keeps out malformed lines too.
            return words.dropFirst().contains("AUTH")
        case "ACL":
            return words.count > 1 && ["SETUSER", "DELUSER", "GETUSER"].contains(words[1])
        case "CONFIG":
            return words.count > 2 && words[1] == "SET" && words.dropFirst(2).contains { secretConfigParameters.contains($0) }
        case "MIGRATE":
            // MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password]
            // [AUTH2 username password] [KEYS key ...]: the options start at the sixth argument; keys may be named AUTH.
            for word in words.dropFirst(6) {
                if word == "AUTH" || word == "AUTH2" { return true }
                if word == "KEYS" { return false }
            }
            return false
        case "SENTINEL":
            guard words.count > 3 else { return false }
            if words[1] == "CONFIG" && words[2] == "SET" { return ["SENTINEL-PASS", "SENTINEL-USER"].contains(words[3]) }
            return words[1] == "SET" && ["AUTH-PASS", "AUTH-USER"].contains(words[3])
        default:
            return false
        }
    }

    /// The configuration parameters whose `CONFIG SET` carries a secret (upper case), as redis-cli lists them.
    public static let secretConfigParameters: Set<String> = [
        "MASTERAUTH", "MASTERUSER", "REQUIREPASS", "TLS-KEY-FILE-PASS", "TLS-CLIENT-KEY-FILE-PASS",
    ]

    /// Tab-completion candidates for the word being typed at the end of `line` (the text before the cursor).
    /// Completes command names in the first word; after `:help`, command names; after `:timing` and `:format`,
    /// their choices. Candidates follow the case the user is typing in.
    public static func completions(forLine line: String) -> [String] {
        let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        let endsWithBlank = line.last == " "
        let current = endsWithBlank ? "" : (words.last ?? "")
        let position = endsWithBlank ? words.count : max(0, words.count - 1)
        let choices: [String]
        if position == 0 {
            // Not redis-cli's words (help, quit, exit, clear): `EXI` should still complete to EXISTS; `:help` and `:quit`
            // complete.
            choices = all.flatMap(\.allNames).filter { name in !metaCommands.contains { $0.aliases.contains(name) && !name.hasPrefix(":") } }
        } else if position == 1, let first = words.first, let spec = lookup(first) {
            switch spec.id {
            case .help: choices = all.map(\.name) + groups.map { "@" + $0 }
            case .timing, .hints: choices = ["on", "off"]
            case .format: choices = OutputFormat.allCases.map(\.rawValue)
            default: choices = []
            }
        } else {
            choices = []
        }
        let typedLowercase = !current.isEmpty && current == current.lowercased() && current != current.uppercased()
        return choices
            .filter { $0.uppercased().hasPrefix(current.uppercased()) }
            .map { typedLowercase ? $0.lowercased() : $0 }
    }

    /// The hint shown in grey after what is typed (`line`), as redis-cli shows it: the arguments of the command named
    /// by the first word that are not typed yet (`SET k` → ` value [NX|XX] [GET] ...`); optional ones stay once
    /// reached. A blank leads the hint unless the line ends with one. Nil when the first word names no command, or
    /// nothing is left to hint.
    public static func hint(forLine line: String) -> String? {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard let first = words.first, let spec = lookup(String(first)), !spec.arguments.isEmpty else { return nil }
        // Drop one word of the usage per argument typed after the name, up to the first optional one.
        var hint = Substring(spec.arguments)
        var typed = words.count - 1
        while typed > 0, let next = hint.first, next != "[" {
            if next == " " { typed -= 1 }
            hint = hint.dropFirst()
        }
        guard !hint.isEmpty, typed == 0 || hint.first == "[" else { return nil }
        let endsWithBlank = line.last == " " || line.last == "\t"
        return endsWithBlank ? String(hint) : " " + hint
    }

    /// The command groups, in the order `help` lists them.
    public static let groups = ["string", "generic", "server", "connection", "shell"]

    /// `:help` text: every command, one command in detail, or the commands of a group (`@string`), wrapped at word
    /// boundaries to `width` columns (a terminal's; 80 elsewhere), continuation lines indented under their column.
    /// The overview lists names in columns by group, so that it fits a 24-row terminal.
    public static func help(for name: String? = nil, width: Int = 80) -> String? {
        guard let name else { return overview(width: width) }
        if name.hasPrefix("@") {
            let group = name.dropFirst().lowercased()
            guard groups.contains(group) else { return nil }
            let specs = all.filter { $0.group == group }
            let column = min((specs.map(\.usage.count).max() ?? 0) + 4, max(width / 2, 8))
            return "Commands in @\(group):\n" + specs.map { spec in
                // A usage too long for its column gets a row of its own, its summary below it.
                let lead = "  " + spec.usage
                let start = lead.count + 2 <= column ? lead + String(repeating: " ", count: column - lead.count) : lead + "\n" + String(repeating: " ", count: column)
                return wrap(firstSentence(spec.summary), width: width, indent: column, firstLine: start)
            }.joined()
        }
        guard let spec = lookup(name) ?? lookup(":" + name) else { return nil }
        var text = spec.usage + "\n" + wrap(spec.summary, width: width, indent: 2, firstLine: "  ")
        if !spec.aliases.isEmpty { text += wrap(spec.aliases.joined(separator: ", "), width: width, indent: 8, firstLine: "  Also: ") }
        text += wrap(spec.example, width: width, indent: 11, firstLine: "  Example: ")
        return text
    }

    private static func overview(width: Int) -> String {
        let column = (groups.map(\.count).max() ?? 0) + 4
        var text = wrap("Commands by group (names are case-insensitive):", width: width, indent: 0, firstLine: "")
        for group in groups {
            let names = all.filter { $0.group == group }.map { spec in
                spec.aliases.isEmpty ? spec.name : spec.name + " (" + spec.aliases.filter { !$0.contains(" ") }.joined(separator: ", ") + ")"
            }
            let lead = "  " + group
            text += wrap(names.joined(separator: "  "), width: width, indent: column,
                         firstLine: lead + String(repeating: " ", count: column - lead.count), keeping: "  ")
        }
        text += wrap("Quoting: \"...\" understands \\n \\r \\t \\a \\b \\\" \\\\ \\xHH; '...' is literal except \\'.",
                     width: width, indent: 2, firstLine: "")
        text += wrap("Type :help COMMAND for its usage, what it does and an example, :help @GROUP for a group's commands "
                     + "with a line each (\(groups.map { "@" + $0 }.joined(separator: ", "))).", width: width, indent: 2, firstLine: "")
        return text
    }

    /// `text` after `firstLine`, broken at blanks into lines of at most `width` columns (a word longer than a line
    /// stands alone, unbroken), lines after the first indented by `indent`; ends with a newline.
    /// - Parameter separator: the blank run between words (two spaces keep the overview's names apart).
    static func wrap(_ text: String, width: Int, indent: Int, firstLine: String, keeping separator: String = " ") -> String {
        let words = separator == " " ? text.split(separator: " ").map(String.init) : text.components(separatedBy: separator)
        var result = ""
        var line = firstLine
        if let lastBreak = firstLine.lastIndex(of: "\n") {  // only the last row of the lead counts towards the width
            result = String(firstLine[...lastBreak])
            line = String(firstLine[firstLine.index(after: lastBreak)...])
        }
        var lineHasWord = false
        for word in words {
            if lineHasWord && line.count + separator.count + word.count > width {
                result += line + "\n"
                line = String(repeating: " ", count: indent)
                lineHasWord = false
            }
            line += (lineHasWord ? separator : "") + word
            lineHasWord = true
        }
        return result + line + "\n"
    }

    private static func firstSentence(_ summary: String) -> String {
        summary.split(separator: ".").first.map(String.init) ?? summary
    }
}

// MARK: - COMMAND DOCS

extension CommandTable {
    /// A data command's entry in `COMMAND DOCS`, in Redis 7.0's shape: `summary`, `since`, `group`, `complexity` and
    /// (for commands that take any) `arguments`, each argument a map of `name`, `type`, `key_spec_index` (keys),
    /// `token`, `flags` (`optional`, `multiple`, as status strings) and nested `arguments`. redis-cli builds its hints
    /// and the synopsis of `help COMMAND` from the arguments.
    public static func docs(_ spec: CommandSpec) -> RESPValue {
        var fields: [(RESPValue, RESPValue)] = [
            (.bulk("summary"), .bulk(spec.summary)), (.bulk("since"), .bulk(spec.since)), (.bulk("group"), .bulk(spec.group)),
        ]
        if !spec.complexity.isEmpty { fields.append((.bulk("complexity"), .bulk(spec.complexity))) }
        if !spec.syntax.isEmpty { fields.append((.bulk("arguments"), .array(spec.syntax.map(\.docs)))) }
        return .map(fields)
    }
}

extension CommandArgument {
    /// This argument as `COMMAND DOCS` describes it.
    public var docs: RESPValue {
        var fields: [(RESPValue, RESPValue)] = [(.bulk("name"), .bulk(name)), (.bulk("type"), .bulk(kind.rawValue))]
        // Every key of kvsh's commands is found by one key specification (the keys from the first argument on).
        if kind == .key { fields.append((.bulk("key_spec_index"), .integer(0))) }
        if let token { fields.append((.bulk("token"), .bulk(token))) }
        let flags = (isOptional ? ["optional"] : []) + (isMultiple ? ["multiple"] : [])
        if !flags.isEmpty { fields.append((.bulk("flags"), .array(flags.map { .simpleString($0) }))) }
        if !arguments.isEmpty { fields.append((.bulk("arguments"), .array(arguments.map(\.docs)))) }
        return .map(fields)
    }
}
