import KVStore
import RESP

/// The maintenance commands: the shell's `:stats`, `:rebuild [path]`, `:compact`, `:backup [path] [--force]` and
/// `:check`, which the server serves as `KVSH.STATS`, `KVSH.REBUILD [path]`, `KVSH.COMPACT`, `KVSH.BACKUP [path
/// [FORCE]]` and `KVSH.CHECK`. One definition runs them for both, so `kvsh --connect` prints what the embedded shell
/// does.
public enum MaintenanceCommand: Equatable, Sendable {
    case stats
    /// Without a path: replay the store's own log. With one: import that log as new writes.
    case rebuild(path: String?)
    case compact
    /// Without a path: into the backup directory (a server's `--backup-dir`).
    case backup(path: String?, replace: Bool)
    /// Re-encrypt the store under the key in this file (on the machine that runs the store).
    case rekey(keyFile: String)
    case check

    /// What running one produced: the text the shell prints, and whether it found the store sound (a damaged store
    /// makes `:check` count as a failed command, whether it ran here or on a server).
    public struct Outcome: Equatable, Sendable {
        public var text: String
        public var succeeded: Bool

        public init(text: String, succeeded: Bool = true) {
            self.text = text
            self.succeeded = succeeded
        }
    }

    /// The path the command reads or writes, if it names one: what `--enable-path-commands` guards.
    public var path: String? {
        switch self {
        case .rebuild(let path), .backup(let path, _): return path
        case .rekey(let keyFile): return keyFile
        case .stats, .compact, .check: return nil
        }
    }

    /// The server command's name.
    public var serverName: String {
        switch self {
        case .stats: return "KVSH.STATS"
        case .rebuild: return "KVSH.REBUILD"
        case .compact: return "KVSH.COMPACT"
        case .backup: return "KVSH.BACKUP"
        case .rekey: return "KVSH.REKEY"
        case .check: return "KVSH.CHECK"
        }
    }

    /// Every server command's name: what `COMMAND` lists and the server dispatches here.
    public static let serverNames = ["KVSH.STATS", "KVSH.REBUILD", "KVSH.COMPACT", "KVSH.BACKUP", "KVSH.REKEY", "KVSH.CHECK"]

    /// The command as a client sends it to the server.
    public var serverArguments: [[UInt8]] {
        var words = [serverName]
        switch self {
        case .rebuild(let path?): words.append(path)
        case .rekey(let keyFile): words.append(keyFile)
        case .backup(let path, let replace):
            if let path { words.append(path) }
            if replace { words.append("FORCE") }
        default: break
        }
        return words.map { Array($0.utf8) }
    }

    /// `KVSH.*` arguments (the name first) as the server receives them; nil for a name that is none of them.
    /// - Throws: Redis's arity or syntax error.
    public init?(serverArguments arguments: [[UInt8]]) throws {
        let name = String(decoding: arguments[0], as: UTF8.self).uppercased()
        let count = arguments.count - 1
        let path = count > 0 ? String(decoding: arguments[1], as: UTF8.self) : nil
        func arity(_ allowed: ClosedRange<Int>) throws {
            guard allowed.contains(count) else {
                throw CommandError(message: "ERR wrong number of arguments for '\(name.lowercased())' command")
            }
        }
        switch name {
        case "KVSH.STATS": try arity(0...0); self = .stats
        case "KVSH.COMPACT": try arity(0...0); self = .compact
        case "KVSH.CHECK": try arity(0...0); self = .check
        case "KVSH.REBUILD": try arity(0...1); self = .rebuild(path: path)
        case "KVSH.REKEY": try arity(1...1); self = .rekey(keyFile: path ?? "")
        case "KVSH.BACKUP":
            try arity(0...2)
            let replace = count == 2
            if replace, String(decoding: arguments[2], as: UTF8.self).uppercased() != "FORCE" {
                throw CommandError(message: "ERR syntax error")
            }
            self = .backup(path: path, replace: replace)
        default: return nil
        }
    }

    /// Runs the command on `store`.
    /// - Parameter backups: where a backup without a path goes; nil refuses one.
    public func run(on store: KVStore, backups: BackupDirectory?) throws -> Outcome {
        switch self {
        case .stats:
            return Outcome(text: ShellText.describe(store.statistics))
        case .rebuild(nil):
            return Outcome(text: ShellText.describe(rebuild: try store.rebuild()))
        case .rebuild(let path?):
            let summary = try LogImporter.importLog(at: path, into: store)
            try store.commit()
            return Outcome(text: ShellText.describe(import: summary, keys: store.count))
        case .compact:
            return Outcome(text: ShellText.describe(try store.checkpoint()))
        case .backup(let path?, let replace):
            return Outcome(text: ShellText.describe(backup: try store.backup(to: path, replace: replace), path: path))
        case .backup(nil, _):
            guard let backups else { throw CommandError.noBackupDirectory }
            let taken = try backups.takeBackup(of: store)
            return Outcome(text: ShellText.describe(backup: taken.summary, path: taken.path))
        case .rekey(let keyFile):
            let key = try EncryptionKey.load(from: keyFile)
            let report = try store.rekey(to: key)
            return Outcome(text: ShellText.describe(rekey: report, keyFile: keyFile, keyID: key.idHex))
        case .check:
            let report = try store.check()
            return Outcome(text: ShellText.describe(check: report), succeeded: report.isClean)
        }
    }

    /// The outcome as the server replies: the text as a bulk string, and for `KVSH.CHECK` a map (a flat array in
    /// RESP2) of `clean` (a boolean; 1 or 0 in RESP2) and `report`, so that a client learns the verdict from a
    /// field, not from the report's wording.
    public func reply(_ outcome: Outcome) -> RESPValue {
        guard self == .check else { return .bulk(outcome.text) }
        return .map([(.bulk("clean"), .boolean(outcome.succeeded)), (.bulk("report"), .bulk(outcome.text))])
    }

    /// The outcome a server's reply to this command carries (see ``reply(_:)``).
    /// - Throws: the server's error, or a ``CommandError`` for a reply of another shape.
    public func outcome(fromReply reply: RESPValue) throws -> Outcome {
        switch reply {
        case .error(let text):
            throw CommandError(message: text)
        case .bulkString(let bytes) where self != .check:
            return Outcome(text: String(decoding: bytes, as: UTF8.self))
        case .map(let pairs) where self == .check:
            return try Self.checkOutcome(pairs)
        case .array(let items) where self == .check && items.count % 2 == 0:  // RESP2's flattened map
            return try Self.checkOutcome(stride(from: 0, to: items.count, by: 2).map { (items[$0], items[$0 + 1]) })
        default:
            throw CommandError.other("unexpected reply to \(serverName): \(reply)")
        }
    }

    private static func checkOutcome(_ pairs: [(RESPValue, RESPValue)]) throws -> Outcome {
        func field(_ name: String) -> RESPValue? { pairs.first { $0.0 == .bulk(name) }?.1 }
        let clean: Bool
        switch field("clean") {
        case .boolean(let value)?: clean = value
        case .integer(let value)?: clean = value != 0
        default: throw CommandError.other("the reply to KVSH.CHECK has no 'clean' field")
        }
        guard case .bulkString(let report)? = field("report") else {
            throw CommandError.other("the reply to KVSH.CHECK has no 'report' field")
        }
        return Outcome(text: String(decoding: report, as: UTF8.self), succeeded: clean)
    }
}
