#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ArgumentParser
import Dispatch
import Foundation
import Synchronization
import KVCluster
import KVServer
import KVStore
import Logging

struct ServeCommand: KVSHSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a store over the Redis protocol (RESP2/RESP3) to redis-cli, redis-py and any Redis client.",
        discussion: """
            Listens on loopback unless --bind says otherwise. SIGTERM or SIGINT: stops accepting, finishes the \
            requests in flight, fsyncs, releases the store's lock and exits 0.
            """,
        version: KVSHCommand.version,
        helpNames: [.short, .long])

    /// --data-dir, --sync, --compact-*, --backup-*: as for the shell.
    @OptionGroup var storeOptions: StoreOptions

    /// --replicaof, --sync-replicas, --min-replicas-*, --repl-*.
    @OptionGroup(title: "Replication") var replication: ReplicationOptions

    /// --tls-port, --tls-cert-file, --tls-key-file, --tls-ca-cert-file, --tls-auth-clients, --tls-replication.
    @OptionGroup(title: "TLS") var tls: TLSOptions
    /// --requirepass, --aclfile, --protected-mode.
    @OptionGroup(title: "Access control") var accessOptions: AccessOptions

    /// --cluster, --etcd, --announce, --failover-ttl, --priority.
    @OptionGroup(title: "Failover cluster (etcd)") var cluster: ClusterOptions

    @Option(help: ArgumentHelp("Address to listen on; 0.0.0.0 for every interface.", valueName: "addr"))
    var bind = "127.0.0.1"

    @Option(help: ArgumentHelp("TCP port; 0 turns plain TCP off when --tls-port is given (else: any free port).", valueName: "n"))
    var port = 7379

    @Option(help: ArgumentHelp("Most clients connected at once; more are refused with an error.", valueName: "n"))
    var maxclients = 10_000

    @Option(help: ArgumentHelp("Event-loop threads (default: one fewer than the cores, at least 1).", valueName: "n"))
    var threads: Int?

    @Option(help: ArgumentHelp("Close a client idle for this many seconds; 0 never does (Redis's timeout).", valueName: "seconds"))
    var timeout = 0

    @Option(name: .customLong("tcp-keepalive"),
            help: ArgumentHelp("TCP keepalive on client sockets: first probe after this many idle seconds; 0 turns it off (Redis's tcp-keepalive).",
                               valueName: "seconds"))
    var tcpKeepAlive = 300

    @Option(name: .customLong("enable-path-commands"), help: ArgumentHelp(
        "Which clients may name a file of this machine (KVSH.BACKUP PATH, KVSH.REBUILD PATH): no (the default), "
            + "local (loopback connections: every user of this machine) or yes (everyone who can connect).",
        valueName: "no|local|yes"))
    var pathCommands: KVServer.PathCommandPolicy = .no

    /// --metrics-port, --slowlog-*, --log-format, ...: see OperationsOptions.swift and Docs/Operations.md.
    @OptionGroup var operations: OperationsOptions

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard maxclients >= 1 else { throw ValidationError("--maxclients must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        // Redis's range for `timeout` (0 to INT_MAX seconds); `tcp-keepalive` up to the largest idle time the kernel
        // takes (Linux's TCP_KEEPIDLE limit), since a socket the option cannot be set on would be refused.
        guard (0...Int(Int32.max)).contains(timeout) else {
            throw ValidationError("--timeout must be a number of seconds from 0 (never close idle clients) to \(Int32.max)")
        }
        guard (0...KVServer.maxTCPKeepAlive).contains(tcpKeepAlive) else {
            throw ValidationError("--tcp-keepalive must be a number of seconds from 0 (off) to \(KVServer.maxTCPKeepAlive)")
        }
        if storeOptions.backupInterval != nil && storeOptions.backupDirectory == nil { throw ValidationError("--backup-every needs --backup-dir") }
        try storeOptions.validateBackupKeep()
        if let backupDirectory = storeOptions.backupDirectory { try Paths.validate(backupDirectory) }
        if cluster.cluster != nil && !replication.replicaOf.isEmpty {
            throw ValidationError("--replicaof and --cluster exclude each other: in a cluster, etcd says whom to follow")
        }
    }

    func execute() -> Int32 {
        operations.bootstrapLogging()
        let logger = Logger(label: "kvsh.server")
        return Subcommands.reportingErrors {
            // The TLS files first: a wrong one is refused before the store is opened (which may take long).
            let tlsContexts = try tls.contexts()
            // Before anything else: a bad ACL file refuses to start, naming the file and line.
            let access = try accessOptions.makeAccessControl()
            let audit = try accessOptions.makeAuditLog()
            let metrics = operations.makeMetrics(logger: logger)
            let endpoint = try operations.startEndpoint(metrics, logger: logger)
            defer { endpoint?.shutdown() }
            var options = try storeOptions.storeOptions(warningHandler: { logger.warning("\($0)") })
            options.eventObserver = metrics.storeEventObserver
            options.replicationBacklogBytes = replication.backlogLogBytes
            let store = try KVStore(directory: storeOptions.dataDirectory.resolved, options: options)
            metrics.storeOpened(store)
            var closed = false
            defer { if !closed { try? store.close() } }
            if let tail = store.openReport.tornTail { logger.warning("\(tail)") }
            if let reason = store.readOnlyReason { logger.warning("opened read-only: \(reason); writes are refused") }
            // From here on SIGTERM and SIGINT ask for a clean stop. They are caught before the server starts, so
            // that one arriving while it starts (a supervisor stopping it at once) is not lost; until then they kill
            // the process, which keeps Ctrl-C responsive during a long replay (the store is safe either way).
            let stopRequested = DispatchSemaphore(value: 0)
            let registered = DispatchSemaphore(value: 0)
            let signals = [SIGTERM, SIGINT].map { number in
                #if !os(Linux)
                signal(number, SIG_IGN)  // kqueue reports signals the process ignores
                #endif
                // On Linux, libdispatch installs its own handler when the source is registered: until then the
                // default action (end the process) applies, so no signal falls between the two and is lost.
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { stopRequested.signal() }
                source.setRegistrationHandler { registered.signal() }
                source.resume()
                return source
            }
            defer { signals.forEach { $0.cancel() } }
            signals.forEach { _ in registered.wait() }
            // SIGHUP reloads the TLS files (rotated certificates) for connections accepted from then on. Only with TLS:
            // otherwise SIGHUP keeps its usual meaning (the process ends) for whoever relies on it.
            let reload = tlsContexts.map { contexts in
                let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
                source.setEventHandler {
                    do {
                        try contexts.reload()
                        logger.info("TLS certificate reloaded", metadata: ["cert-file": "\(contexts.settings.certificateFile)"])
                    } catch {
                        logger.error("TLS certificate reload failed; the certificate in use stays in use: \(error)")
                    }
                }
                source.setRegistrationHandler { registered.signal() }
                source.resume()
                registered.wait()
                return source
            }
            defer { reload?.cancel() }
            let backups = storeOptions.backups
            let scheduler = backups.flatMap { backups in
                storeOptions.backupInterval.map { interval in
                    BackupScheduler(store: store, directory: backups, interval: interval.duration) { event in
                        if event.failed { logger.warning("\(event.message)") } else { logger.info("\(event.message)") }
                    }
                }
            }
            defer { scheduler?.stop() }
            let server: KVServer
            do {
                var configuration = KVServer.Configuration(host: bind, port: port, maxClients: maxclients,
                                                           idleTimeout: timeout, tcpKeepAlive: tcpKeepAlive)
                if let threads { configuration.threads = threads }
                configuration.pathCommands = pathCommands
                configuration.backupDirectory = backups
                configuration.replication = replication.settings
                configuration.replication.managedByCluster = cluster.cluster != nil
                configuration.metrics = metrics
                configuration.tls = tlsContexts
                if tls.tlsPort != 0 {
                    configuration.tlsPort = tls.tlsPort
                    configuration.listensPlain = port != 0  // Redis's `port 0`
                }
                configuration.tlsReplication = tls.replication == .yes
                configuration.access = access
                configuration.auditLog = audit
                configuration.protectedMode = accessOptions.protectedMode == .yes
                configuration.shutdownRequested = { stopRequested.signal() }
                server = try KVServer(store: store, configuration: configuration, logger: logger)
            } catch {
                let tlsAddress = "\(bind):\(tls.tlsPort) (TLS)"
                let addresses = tls.tlsPort == 0 ? "\(bind):\(port)" : port == 0 ? tlsAddress : "\(bind):\(port) or \(tlsAddress)"
                throw ServeError(message: "cannot listen on \(addresses): \(error)")
            }
            OperationsOptions.logOpened(store, logger: logger)  // once listening: a refusal stays one line
            if let address = server.localAddress?.ipAddress, !Self.isLoopback(address), !access.authenticationRequired {
                let listened = server.localAddress?.port ?? port
                if accessOptions.protectedMode == .yes {
                    logger.warning("listening on \(address) without a password: protected mode refuses clients from other machines; set one with --requirepass or --aclfile (or turn protected mode off with --protected-mode no)")
                } else if port == 0 && tls.tlsPort != 0 && tls.authClients == .yes {
                    // TLS only, client certificates required: not anyone, but anyone holding one.
                    logger.warning("listening on \(address) without a password: only clients with a certificate signed by --tls-ca-cert-file can connect, and each of them can read and change this store; give them users with --aclfile or a password with --requirepass")
                } else {
                    // As Redis with protected mode off: it listens as told, but says what that means.
                    logger.warning("listening on \(address) without authentication: anyone who can reach port \(listened) can read and change this store; set a password with --requirepass or --aclfile, bind to 127.0.0.1 or firewall the port")
                }
            }
            // A failover cluster: join it in the background (etcd may not answer yet); a refusal stops the server.
            var node: ClusterNode?
            let refusal = Mutex<String?>(nil)
            if let settings = cluster.settings(password: ProcessInfo.processInfo.environment["KVSH_ETCD_PASSWORD"]) {
                let member = try ClusterNode(settings: settings, control: server.replicationControl, store: store, logger: logger)
                server.join(member)
                node = member
                Task {
                    do {
                        try await member.start()
                    } catch {
                        logger.error("not joining the cluster: \(error)")
                        refusal.withLock { $0 = "\(error)" }
                        stopRequested.signal()
                    }
                }
            }
            stopRequested.wait()
            if let node {
                let left = DispatchSemaphore(value: 0)
                Task {
                    await node.stop()
                    left.signal()
                }
                _ = left.wait(timeout: .now() + 5)
            }
            server.shutdown()
            audit?.drain()
            scheduler?.stop()
            closed = true
            do {
                try store.close()
            } catch {
                // The last writes may not be on disk: never report a clean stop then.
                logger.error("closing the store failed: \(error)")
                return ExitStatus.commandFailed
            }
            return refusal.withLock { $0 } == nil ? ExitStatus.success : ExitStatus.commandFailed
        }
    }
}

extension ServeCommand {
    /// Whether `address` (as NIO prints it) only accepts connections from this machine.
    static func isLoopback(_ address: String) -> Bool {
        address.hasPrefix("127.") || address == "::1" || address.hasPrefix("::ffff:127.")
    }
}

extension KVServer.PathCommandPolicy: ExpressibleByArgument {}

struct ServeError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
