import ArgumentParser
import KVServer

/// `kvsh serve`'s TLS flags, named and defaulted as Redis's `tls-*` directives (see Docs/Security.md).
struct TLSOptions: ParsableArguments {
    enum YesNo: String, ExpressibleByArgument, CaseIterable {
        case yes, no
    }

    @Option(name: .customLong("tls-port"), help: ArgumentHelp(
        "Also listen for TLS connections on this port; 0 (the default) for none. With it, --port 0 turns plain TCP off.", valueName: "n"))
    var tlsPort = 0

    @Option(name: .customLong("tls-cert-file"), help: ArgumentHelp("The server's certificate (PEM, leaf first); also the replica's client certificate.", valueName: "file"))
    var certificateFile: String?

    @Option(name: .customLong("tls-key-file"), help: ArgumentHelp("The private key of --tls-cert-file (PEM, unencrypted).", valueName: "file"))
    var keyFile: String?

    @Option(name: .customLong("tls-ca-cert-file"), help: ArgumentHelp(
        "CA certificates (PEM) that client certificates, and a primary's under --tls-replication, must chain to.", valueName: "file"))
    var caCertificateFile: String?

    @Option(name: .customLong("tls-auth-clients"), help: ArgumentHelp(
        "Whether TLS clients must present a certificate signed by --tls-ca-cert-file: yes (the default), no, or optional (checked if presented).",
        valueName: "yes|no|optional"))
    var authClients: TLSSettings.ClientAuthentication = .yes

    @Option(name: .customLong("tls-replication"), help: ArgumentHelp(
        "Connect to the primary over TLS (its --tls-port), presenting --tls-cert-file.", valueName: "yes|no"))
    var replication: YesNo = .no

    /// Whether anything uses TLS.
    var enabled: Bool { tlsPort != 0 || replication == .yes }

    func validate() throws {
        guard (0...65535).contains(tlsPort) else { throw ValidationError("--tls-port must be between 0 (no TLS listener) and 65535") }
        guard enabled else { return }
        let needs = tlsPort != 0 ? "--tls-port" : "--tls-replication yes"
        // Redis: "No tls-cert-file configured!"
        guard certificateFile != nil, keyFile != nil else {
            throw ValidationError("\(needs) needs --tls-cert-file and --tls-key-file (the server's certificate and its key, PEM)")
        }
        // Redis refuses the same: without a CA nothing can be verified.
        if caCertificateFile == nil && (replication == .yes || authClients != .no) {
            throw ValidationError("--tls-ca-cert-file must be given when --tls-replication or --tls-auth-clients is enabled "
                                  + "(the CA that certificates must chain to); or --tls-auth-clients no to accept any client")
        }
    }

    /// The files read and checked, or nil when TLS is off.
    /// - Throws: ``TLSConfigurationError`` naming the file that cannot be used.
    func contexts() throws -> TLSContexts? {
        guard enabled, let certificateFile, let keyFile else { return nil }
        return try TLSContexts(settings: TLSSettings(certificateFile: certificateFile, keyFile: keyFile,
                                                     caCertificateFile: caCertificateFile, authClients: authClients))
    }
}

extension TLSSettings.ClientAuthentication: ExpressibleByArgument {}
