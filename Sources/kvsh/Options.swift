import ArgumentParser
import KVCommands
import KVShell
import RESP
import KVStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// kvsh's command line: the root command. Its own options are the shell's; the subcommands are registered here
/// and nowhere else (main.swift dispatches on this list). Validation lives here; `main.swift` only acts on the result.
struct KVSHCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvsh",
        abstract: "A durable key-value store and its shell.",
        usage: """
            kvsh [<options>] [<command> ...]
            kvsh <subcommand> [<options>]
            """,
        discussion: """
            With COMMAND, runs that one command. With --file, runs a script. With a terminal on stdin and \
            stdout, starts the interactive shell; otherwise runs standard input as a script.
            With --connect (or -h/-p), the same shell talks to a kvsh server (kvsh serve) instead of opening a store.
            Exit status: 0 if every command succeeded, 1 if any failed (or the connection was lost), 2 for usage \
            errors, for a store that cannot be opened and for a server that cannot be reached.
            """,
        version: KVSHCommand.version,
        subcommands: [ServeCommand.self, BackupCommand.self, RestoreCommand.self, CheckCommand.self, KeygenCommand.self,
                      RekeyCommand.self],
        // -h is the host, as in redis-cli.
        helpNames: [.long, .customShort("?")]
    )

    /// What --version prints, for kvsh and each subcommand.
    static let version = "1.0.0"

    /// The subcommand `name` names (the first argument: `kvsh serve ...`), if it names one.
    static func subcommand(named name: String) -> (any KVSHSubcommand.Type)? {
        configuration.subcommands.lazy.compactMap { $0 as? any KVSHSubcommand.Type }
            .first { $0.configuration.commandName == name }
    }

    @Option(name: .customLong("connect"), help: ArgumentHelp(
        "Connect to a kvsh server (kvsh serve) instead of opening a store: HOST:PORT, [IPv6]:PORT or HOST (port 7379). "
            + "Several, comma-separated: connect to the primary among them and follow it.",
        valueName: "host:port"))
    var connect: String?

    @Option(name: .customLong("sentinel"), help: ArgumentHelp(
        "Find the primary named --name through these Sentinels (any kvsh cluster node answers), and follow it.", valueName: "host:port,..."))
    var sentinel: String?

    @Option(name: .customLong("name"), help: ArgumentHelp("The primary's name for --sentinel (the --cluster name).", valueName: "name"))
    var primaryName: String?

    @Option(name: [.customShort("h"), .customLong("host")], help: ArgumentHelp(
        "Connect to the kvsh server on this host (as redis-cli -h); port 7379 unless -p says otherwise.", valueName: "host"))
    var host: String?

    @Option(name: [.customShort("p"), .customLong("port")], help: ArgumentHelp(
        "Connect to the kvsh server on this port (as redis-cli -p); host 127.0.0.1 unless -h says otherwise.", valueName: "port"))
    var port: Int?

    @Flag(name: .customLong("tls"), help: "Connect with TLS (as redis-cli --tls); the server's certificate must chain to --cacert.")
    var tls = false

    @Option(name: .customLong("cacert"), help: ArgumentHelp("With --tls: the CA certificate (PEM) to verify the server with; default: the system's CAs.", valueName: "file"))
    var caCertificate: String?

    @Option(name: .customLong("cert"), help: ArgumentHelp("With --tls: the client certificate (PEM) to present.", valueName: "file"))
    var clientCertificate: String?

    @Option(name: .customLong("key"), help: ArgumentHelp("With --tls: the private key (PEM) of --cert.", valueName: "file"))
    var clientKey: String?

    @Flag(name: .customLong("insecure"), help: "With --tls: do not verify the server's certificate (as redis-cli --insecure).")
    var insecure = false

    @Option(name: .customLong("sni"), help: ArgumentHelp("With --tls: the server name to send (SNI); default: the host, if it is a name.", valueName: "name"))
    var serverName: String?

    @Option(name: .customLong("user"), help: ArgumentHelp("Authenticate to the server as this user (as redis-cli --user); needs a password.",
                                                         valueName: "user"))
    var user: String?

    @Option(name: [.customShort("a"), .customLong("pass")], help: ArgumentHelp(
        "Authenticate to the server with this password (as redis-cli -a). Other users of this machine can see it in ps: "
            + "prefer --askpass or the KVSH_AUTH environment variable.", valueName: "password"))
    var password: String?

    @Flag(name: .customLong("askpass"), help: "Read the password from the terminal, without echo (as redis-cli --askpass).")
    var askPassword = false

    @Flag(name: .customLong("no-auth-warning"), help: "Do not warn about a password given on the command line.")
    var noAuthWarning = false

    /// --data-dir, --sync, --compact-*, --backup-*: as for kvsh serve.
    @OptionGroup var store: StoreOptions

    @Option(help: ArgumentHelp(
        "How replies print: human (default on a terminal), raw (default otherwise) or json.", valueName: "format"))
    var format: OutputFormat?

    @Flag(help: "Stop a script at the first failed command.")
    var bail = false

    @Option(help: ArgumentHelp("Run the commands in this file as a script.", valueName: "file"))
    var file: String?

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp(
        "One command to run, such as: SET greeting \"hello world\"", valueName: "command"))
    var command: [String] = []

    /// The one-shot command, without a leading `--` (which ends the options, as for any Unix tool).
    var commandArguments: [String] {
        command.first == "--" ? Array(command.dropFirst()) : command
    }

    func validate() throws {
        // The command captures everything from its first word on (so `SET k -5` works); a first word that looks
        // like an option is one the parser did not know.
        if let first = commandArguments.first, first.hasPrefix("-"), command.first != "--" {
            switch first {
            case "-?", "--help", "-help": throw CleanExit.helpRequest(self)
            case "--version": throw CleanExit.message(Self.configuration.version)
            default: throw ValidationError("unknown option '\(first)'")
            }
        }
        if file != nil && !commandArguments.isEmpty {
            throw ValidationError("give either --file or a command, not both")
        }
        if let directory = store.dataDirectory.path, directory.isEmpty {
            throw ValidationError("--data-dir needs a directory path")
        }
        for path in [store.dataDirectory.path, file, store.backupDirectory].compactMap({ $0 }) { try Paths.validate(path) }
        if (store.backupDirectory == nil) != (store.backupInterval == nil) {
            throw ValidationError("--backup-dir and --backup-every go together")
        }
        try store.validateBackupKeep()
        if let compactRatio = store.compactRatio, compactRatio < 0 { throw ValidationError("--compact-ratio must be 0 (off) or more") }
        if !tls && (caCertificate != nil || clientCertificate != nil || clientKey != nil || insecure || serverName != nil) {
            throw ValidationError("--cacert, --cert, --key, --insecure and --sni need --tls")
        }
        if (clientCertificate == nil) != (clientKey == nil) { throw ValidationError("--cert and --key go together") }
        if tls && server == nil { throw ValidationError("--tls needs a server: --connect HOST:PORT (or -h/-p, --sentinel)") }
        if password != nil && askPassword { throw ValidationError("give either --pass or --askpass, not both") }
        if (user != nil || password != nil || askPassword) && server == nil {
            throw ValidationError("--user, --pass and --askpass are for a server: add --connect HOST:PORT (or -h/-p)")
        }
        if connect != nil && (host != nil || port != nil) {
            throw ValidationError("give either --connect HOST:PORT or -h/-p, not both")
        }
        if let connect, connect.split(separator: ",", omittingEmptySubsequences: false).contains(where: { ServerAddress(String($0)) == nil }) {
            throw ValidationError("--connect takes HOST:PORT, [IPv6]:PORT or HOST, with a port from 1 to 65535 (got '\(connect)')")
        }
        if (sentinel == nil) != (primaryName == nil) { throw ValidationError("--sentinel and --name go together: --sentinel HOST:PORT --name NAME") }
        if sentinel != nil && (connect != nil || host != nil || port != nil) {
            throw ValidationError("give either --sentinel or --connect (or -h/-p), not both")
        }
        if let sentinel, sentinel.split(separator: ",", omittingEmptySubsequences: false).contains(where: { ServerAddress(String($0)) == nil }) {
            throw ValidationError("--sentinel takes HOST:PORT, comma-separated (got '\(sentinel)')")
        }
        if let host, host.isEmpty { throw ValidationError("-h needs a host name or address") }
        if let port, !(1...65535).contains(port) { throw ValidationError("-p takes a port from 1 to 65535") }
        if server != nil {
            // These configure a store opened in this process; the server has its own (kvsh serve's flags).
            let storeOptions = store.given
            if let given = storeOptions.first(where: \.1) {
                throw ValidationError("\(given.0) applies to a store opened by this kvsh, not to a server (set it on kvsh serve)")
            }
        }
    }

    var resolvedDataDirectory: String { store.dataDirectory.resolved }

    func storeOptions() throws -> KVStore.Options { try store.storeOptions(warningHandler: { printError("warning: \($0)") }) }

    /// The server to connect to (--connect, or -h/-p), or nil to open a store.
    var server: ServerAddress? {
        if let sentinel { return ServerAddress(String(sentinel.split(separator: ",")[0])) }
        if let connect { return ServerAddress(String(connect.split(separator: ",")[0])) }
        guard host != nil || port != nil else { return nil }
        return ServerAddress(host: host ?? ServerAddress.defaultHost, port: port ?? ServerAddress.defaultPort)
    }
}

extension KVSHCommand {
    /// How to find and follow the primary: several `--connect` addresses, or `--sentinel` with `--name`; nil for one
    /// server.
    var locator: PrimaryLocator? {
        func endpoints(_ list: String) -> [PrimaryLocator.Endpoint] {
            list.split(separator: ",").compactMap { ServerAddress(String($0)) }.map { PrimaryLocator.Endpoint(host: $0.host, port: $0.port) }
        }
        if let sentinel, let primaryName { return PrimaryLocator(.sentinels(endpoints(sentinel), name: primaryName)) }
        if let connect, connect.contains(",") { return PrimaryLocator(.nodes(endpoints(connect))) }
        return nil
    }

    /// --tls and its files, read.
    /// - Throws: ``RESPClientTLSError`` naming the flag and file that cannot be used.
    func clientTLS() throws -> RESPClientTLS? {
        guard tls else { return nil }
        return try RESPClientTLS(caCertificateFile: caCertificate, certificateFile: clientCertificate, keyFile: clientKey,
                                 insecure: insecure, serverName: serverName)
    }
}

extension KVSHCommand {
    /// The password from `--pass`, `--askpass` or `KVSH_AUTH` (in that order, as redis-cli's `-a`, `--askpass` and
    /// `REDISCLI_AUTH`), with the user from `--user`; nil without a password. Warns, as redis-cli does, when the
    /// password is on the command line.
    func credentials() -> RESPCredentials? {
        var secret = password
        if secret != nil && !noAuthWarning {
            let warning = Array("Warning: Using a password with '-a' or '--pass' option on the command line interface may not be safe.\n".utf8)
            warning.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
        }
        if askPassword {
            // getpass reads /dev/tty with echo off, as redis-cli's --askpass does.
            secret = getpass("Please input password: ").map { String(cString: $0) }
        }
        if secret == nil, let fromEnvironment = getenv("KVSH_AUTH") { secret = String(cString: fromEnvironment) }
        return secret.map { RESPCredentials(user: user, password: $0) }
    }
}

/// Where a kvsh server listens: `--connect HOST:PORT`, or `-h HOST -p PORT`.
struct ServerAddress: Equatable {
    static let defaultHost = "127.0.0.1"
    static let defaultPort = 7379

    let host: String
    let port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, `[v6]:port`, `host` or `[v6]` (port 7379); nil if it is none of them.
    init?(_ text: String) {
        var hostPart = Substring(text)
        var portPart: Substring?
        if hostPart.hasPrefix("[") {
            guard let close = hostPart.firstIndex(of: "]") else { return nil }
            let rest = hostPart[hostPart.index(after: close)...]
            hostPart = hostPart[hostPart.index(after: hostPart.startIndex)..<close]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return nil }
                portPart = rest.dropFirst()
            }
        } else if let colon = hostPart.lastIndex(of: ":") {
            guard hostPart.firstIndex(of: ":") == colon else { return nil }  // a bare IPv6 address needs brackets
            portPart = hostPart[hostPart.index(after: colon)...]
            hostPart = hostPart[..<colon]
        }
        guard !hostPart.isEmpty else { return nil }
        var port = Self.defaultPort
        if let portPart {
            guard portPart.allSatisfy(\.isASCII), portPart.allSatisfy(\.isNumber), let number = Int(portPart), (1...65535).contains(number) else {
                return nil
            }
            port = number
        }
        self.init(host: String(hostPart), port: port)
    }
}

/// `--data-dir` if given, else `$KVSH_DATA_DIR`, else `./kvsh-data`.
func resolveDataDirectory(_ option: String?) -> String {
    if let option { return option }
    if let fromEnvironment = getenv("KVSH_DATA_DIR"), fromEnvironment.pointee != 0 { return String(cString: fromEnvironment) }
    return "kvsh-data"
}

extension KVStore.SyncPolicy: ExpressibleByArgument {}
extension OutputFormat: ExpressibleByArgument {}
