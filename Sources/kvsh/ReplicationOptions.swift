import ArgumentParser
import Foundation
import KVServer

/// `kvsh serve`'s replication flags, named as Redis's configuration directives.
struct ReplicationOptions: ParsableArguments {
    @Option(name: .customLong("replicaof"), parsing: .upToNextOption,
            help: ArgumentHelp("Start as a replica of the primary at HOST PORT (REPLICAOF at run time).", valueName: "host port"))
    var replicaOf: [String] = []

    @Option(name: .customLong("masteruser"), help: ArgumentHelp("The user this replica authenticates as to its primary.", valueName: "user"))
    var masterUser: String?

    @Option(name: .customLong("masterauth"), help: ArgumentHelp(
        "The password this replica sends its primary (AUTH before the handshake, as Redis). Visible in ps: prefer KVSH_MASTERAUTH.",
        valueName: "password"))
    var masterAuth: String?

    @Option(name: .customLong("replica-announce-ip"), help: ArgumentHelp("The address this replica asks its primary to list.", valueName: "ip"))
    var announceIP: String?

    @Option(name: .customLong("replica-announce-port"), help: ArgumentHelp("The port this replica asks its primary to list.", valueName: "port"))
    var announcePort: Int?

    @Option(name: .customLong("min-replicas-to-write"),
            help: ArgumentHelp("Refuse writes (-NOREPLICAS) unless this many replicas acknowledged within --min-replicas-max-lag.", valueName: "n"))
    var minReplicasToWrite = 0

    @Option(name: .customLong("min-replicas-max-lag"), help: ArgumentHelp("Seconds since a replica's last ACK for it to count as good.", valueName: "seconds"))
    var minReplicasMaxLag = 10

    @Option(name: .customLong("sync-replicas"), help: ArgumentHelp(
        "Acknowledge a write only once this many replicas have it (kvsh replicas: as durable as their --sync makes it). "
            + "Writes are refused (-NOREPLICAS) while fewer replicas are connected.", valueName: "n"))
    var syncReplicas = 0

    @Option(name: .customLong("repl-backlog-size"), help: ArgumentHelp("Stream bytes kept in memory for replicas that reconnect.", valueName: "bytes"))
    var backlogSize = 1 << 20

    @Option(name: .customLong("repl-backlog-log-bytes"), help: ArgumentHelp(
        "Log bytes kept after checkpoints so that a replica away longer than the memory backlog still continues partially; 0 keeps none.",
        valueName: "bytes"))
    var backlogLogBytes = 256 << 20

    @Option(name: .customLong("client-output-buffer-limit-replica"), help: ArgumentHelp(
        "Drop a replica whose unsent stream exceeds this (Redis's client-output-buffer-limit replica hard limit).", valueName: "bytes"))
    var outputBufferLimit = 256 << 20

    @Option(name: .customLong("repl-timeout"), help: ArgumentHelp("Seconds of silence after which a replication link is dropped.", valueName: "seconds"))
    var timeout = 60

    @Option(name: .customLong("repl-ping-replica-period"), help: ArgumentHelp("Seconds between the pings a primary sends its replicas.", valueName: "seconds"))
    var pingPeriod = 10

    func validate() throws {
        if !replicaOf.isEmpty {
            guard replicaOf.count == 2, let port = Int(replicaOf[1]), (1...65535).contains(port), !replicaOf[0].isEmpty else {
                throw ValidationError("--replicaof takes a host and a port: --replicaof 127.0.0.1 6379")
            }
        }
        if masterUser != nil && masterAuth == nil && ProcessInfo.processInfo.environment["KVSH_MASTERAUTH"] == nil {
            throw ValidationError("--masteruser needs a password: --masterauth PASSWORD or the KVSH_MASTERAUTH environment variable")
        }
        if let announcePort, !(0...65535).contains(announcePort) { throw ValidationError("--replica-announce-port must be between 0 and 65535") }
        guard minReplicasToWrite >= 0, syncReplicas >= 0 else { throw ValidationError("--min-replicas-to-write and --sync-replicas cannot be negative") }
        guard minReplicasMaxLag >= 1 else { throw ValidationError("--min-replicas-max-lag must be at least 1 second") }
        guard backlogSize >= 16 << 10 else { throw ValidationError("--repl-backlog-size must be at least 16384 bytes (Redis's minimum)") }
        guard backlogLogBytes >= 0 else { throw ValidationError("--repl-backlog-log-bytes cannot be negative") }
        guard outputBufferLimit >= 64 << 10 else { throw ValidationError("--client-output-buffer-limit-replica must be at least 65536 bytes") }
        guard timeout >= 1, pingPeriod >= 1 else { throw ValidationError("--repl-timeout and --repl-ping-replica-period must be at least 1 second") }
        guard pingPeriod < timeout else { throw ValidationError("--repl-ping-replica-period must be shorter than --repl-timeout, or replicas time out") }
    }

    var settings: ReplicationSettings {
        var settings = ReplicationSettings()
        if replicaOf.count == 2, let port = Int(replicaOf[1]) { settings.replicaOf = (replicaOf[0], port) }
        settings.announceIP = announceIP
        settings.masterUser = masterUser
        settings.masterAuth = masterAuth ?? ProcessInfo.processInfo.environment["KVSH_MASTERAUTH"]
        settings.announcePort = announcePort
        settings.minReplicasToWrite = minReplicasToWrite
        settings.minReplicasMaxLag = minReplicasMaxLag
        settings.syncReplicas = syncReplicas
        settings.backlogSize = backlogSize
        settings.backlogLogBytes = backlogLogBytes
        settings.timeout = timeout
        settings.pingPeriod = pingPeriod
        settings.outputBufferLimit = outputBufferLimit
        return settings
    }
}
