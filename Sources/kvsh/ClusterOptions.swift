import ArgumentParser
import Etcd
import KVCluster

/// `kvsh serve`'s failover-cluster flags (see Docs/Failover.md).
struct ClusterOptions: ParsableArguments {
    @Option(name: .customLong("cluster"), help: ArgumentHelp("Join the failover cluster of this name (needs --etcd and --announce).", valueName: "name"))
    var cluster: String?

    @Option(name: .customLong("etcd"), help: ArgumentHelp("etcd endpoints, comma-separated: http://127.0.0.1:2379,...", valueName: "urls"))
    var etcd: String?

    @Option(name: .customLong("announce"), help: ArgumentHelp("Where clients and the other nodes reach this node.", valueName: "host:port"))
    var announce: String?

    @Option(name: .customLong("node-name"), help: ArgumentHelp("This node's name in the cluster (default: its --announce address).", valueName: "name"))
    var nodeName: String?

    @Option(name: .customLong("failover-ttl"), help: ArgumentHelp(
        "How long a primary that stopped renewing its lease keeps the role: 2s at least; 5s to 10s with a multi-member etcd.", valueName: "interval"))
    var ttl: Interval?

    @Option(name: .customLong("priority"), help: ArgumentHelp("Election priority: 0 never becomes primary; higher wins ties of offset.", valueName: "n"))
    var priority = 100

    @Option(name: .customLong("etcd-user"), help: ArgumentHelp("etcd user (its password in $KVSH_ETCD_PASSWORD).", valueName: "user"))
    var etcdUser: String?

    @Option(name: .customLong("etcd-cacert"), help: ArgumentHelp("CA certificate for etcd over https.", valueName: "file"))
    var etcdCA: String?

    @Option(name: .customLong("etcd-cert"), help: ArgumentHelp("Client certificate for etcd.", valueName: "file"))
    var etcdCert: String?

    @Option(name: .customLong("etcd-key"), help: ArgumentHelp("Client key for etcd.", valueName: "file"))
    var etcdKey: String?

    func validate() throws {
        let given = [cluster != nil, etcd != nil, announce != nil]
        guard given.allSatisfy({ $0 }) || !given.contains(true) else {
            throw ValidationError("--cluster, --etcd and --announce go together: --cluster NAME --etcd URL --announce HOST:PORT")
        }
        if let announce {
            guard let colon = announce.lastIndex(of: ":"), let port = Int(announce[announce.index(after: colon)...]),
                  (1...65535).contains(port), colon != announce.startIndex else {
                throw ValidationError("--announce takes HOST:PORT, e.g. 10.0.0.5:7379")
            }
        }
        if let ttl, ttl.duration < .seconds(2) { throw ValidationError("--failover-ttl must be at least 2s (etcd's shortest lease)") }
        guard priority >= 0 else { throw ValidationError("--priority cannot be negative") }
        if let etcd, etcd.split(separator: ",").contains(where: { !$0.hasPrefix("http://") && !$0.hasPrefix("https://") }) {
            throw ValidationError("--etcd takes http:// or https:// URLs, comma-separated")
        }
        if (etcdCert == nil) != (etcdKey == nil) { throw ValidationError("--etcd-cert and --etcd-key go together") }
    }

    /// The settings, when clustering was asked for.
    func settings(password: String?) -> ClusterSettings? {
        guard let cluster, let etcd, let announce, let colon = announce.lastIndex(of: ":"),
              let port = Int(announce[announce.index(after: colon)...]) else { return nil }
        var configuration = EtcdConfiguration(endpoints: etcd.split(separator: ",").map(String.init))
        if let etcdUser { configuration.credentials = .init(user: etcdUser, password: password ?? "") }
        if etcdCA != nil || etcdCert != nil {
            configuration.tls = .init(caFile: etcdCA, certificateFile: etcdCert, keyFile: etcdKey)
        }
        var settings = ClusterSettings(cluster: cluster, etcd: configuration, announceHost: String(announce[..<colon]), announcePort: port,
                                       nodeName: nodeName)
        if let ttl { settings.ttl = ttl.duration }
        settings.priority = priority
        return settings
    }
}
