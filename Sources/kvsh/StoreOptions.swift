import ArgumentParser
import KVStore

/// The defaults of a store's options, defined once, in the engine: `--help` shows these.
private let engineDefaults = KVStore.Options()

/// `--data-dir`, for every command that works on a store (the shell, serve, backup, restore, check).
struct DataDirectoryOption: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: ArgumentHelp(
        "The store's directory; the shell and serve create it if missing (default: $KVSH_DATA_DIR, else ./kvsh-data).",
        valueName: "dir"))
    var path: String?

    var resolved: String { resolveDataDirectory(path) }
}

/// `--encryption-key-file`, for every command that opens a store's files (the shell, serve, backup, restore, check,
/// rekey): the key (`kvsh keygen FILE`) that an encrypted store's files are sealed with.
struct EncryptionKeyOption: ParsableArguments {
    @Option(name: .customLong("encryption-key-file"), help: ArgumentHelp(
        "The key file of an encrypted store (32 random bytes, mode 0600, made by kvsh keygen FILE); a new store given one "
            + "is encrypted. Back the key up: without it the store cannot be read.",
        valueName: "file"))
    var path: String?

    /// The key, read from the file (which must be private to its owner); nil without the option.
    func load() throws -> EncryptionKey? {
        try path.map { try EncryptionKey.load(from: $0) }
    }

    /// The keys to open the store with: the one given as the current key (a plain store without it).
    func keyring() throws -> Keyring {
        Keyring(current: try load())
    }
}

/// The options of a store opened in this process, shared by the shell and `kvsh serve`: where it is, when writes
/// reach the disk, when it compacts, and periodic backups. Each is optional here (so that the shell can tell one
/// given with --connect, where it does not apply); an option not given takes the default shown in `--help`.
/// Each command validates them as it needs (the shell wants --backup-dir with --backup-every and the other way
/// round; serve also takes --backup-dir alone, for KVSH.BACKUP).
struct StoreOptions: ParsableArguments {
    /// How many periodic backups are kept when --backup-keep is not given.
    static let defaultBackupKeep = 24

    @OptionGroup var dataDirectory: DataDirectoryOption

    @OptionGroup var encryption: EncryptionKeyOption

    @Option(help: ArgumentHelp(
        "When writes reach the disk: always (fsync before each reply, shared by writes that arrive together), "
            + "everysec (fsync in the background every second) or none (the OS decides); "
            + "default: \(engineDefaults.syncPolicy.rawValue).", valueName: "policy"))
    var sync: KVStore.SyncPolicy?

    @Option(name: .customLong("compact-min-size"), help: ArgumentHelp(
        "Compact in the background only once the log is larger than this "
            + "(default: \(ByteSize(bytes: engineDefaults.compactionMinimumLogBytes).defaultValueDescription)).",
        valueName: "size"))
    var compactMinimumSize: ByteSize?

    @Option(name: .customLong("compact-ratio"), help: ArgumentHelp(
        "Compact once the log is also this many times larger than the last image "
            + "(default: \(describe(ratio: engineDefaults.compactionRatio))); 0 turns automatic compaction off.",
        valueName: "ratio"))
    var compactRatio: Double?

    @Option(name: .customLong("backup-dir"), help: ArgumentHelp(
        "Where backups go: --backup-every's (and, for kvsh serve, KVSH.BACKUP without a path).", valueName: "dir"))
    var backupDirectory: String?

    @Option(name: .customLong("backup-every"), help: ArgumentHelp(
        "How often to take a backup into --backup-dir: 30s, 15m, 1h, 1d.", valueName: "interval"))
    var backupInterval: Interval?

    @Option(name: .customLong("backup-keep"), help: ArgumentHelp(
        "How many backups to keep in --backup-dir (the newest; default: \(Self.defaultBackupKeep)).", valueName: "n"))
    var backupKeep: Int?

    /// Each store option with whether it was given, in the order `--help` lists them.
    var given: [(String, Bool)] {
        [
            ("--data-dir", dataDirectory.path != nil), ("--sync", sync != nil), ("--compact-min-size", compactMinimumSize != nil),
            ("--compact-ratio", compactRatio != nil), ("--backup-dir", backupDirectory != nil),
            ("--backup-every", backupInterval != nil), ("--backup-keep", backupKeep != nil),
            ("--encryption-key-file", encryption.path != nil),
        ]
    }

    func validateBackupKeep() throws {
        if let backupKeep, backupKeep < 1 { throw ValidationError("--backup-keep must be at least 1") }
    }

    /// The store's options: the engine's defaults, with what was given in their place.
    /// - Throws: ``StoreError/encryptionKeyFile(path:reason:)`` when the key file cannot be used.
    func storeOptions(warningHandler: @escaping @Sendable (String) -> Void) throws -> KVStore.Options {
        var options = KVStore.Options(warningHandler: warningHandler)
        options.keyring = try encryption.keyring()
        if let sync { options.syncPolicy = sync }
        if let compactMinimumSize { options.compactionMinimumLogBytes = compactMinimumSize.bytes }
        if let compactRatio { options.compactionRatio = compactRatio }
        return options
    }

    /// Where backups go (--backup-dir), keeping --backup-keep of them; nil without --backup-dir.
    var backups: BackupDirectory? {
        backupDirectory.map { BackupDirectory(path: $0, keep: backupKeep ?? Self.defaultBackupKeep) }
    }
}

/// A ratio as one would type it: `2`, `1.5`.
private func describe(ratio: Double) -> String {
    ratio == ratio.rounded() && abs(ratio) < 1e15 ? String(Int(ratio)) : String(ratio)
}
