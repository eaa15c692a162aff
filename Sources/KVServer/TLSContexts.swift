#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOSSL
import Synchronization

/// Redis's `tls-*` settings: where the server's certificate, key and trusted CA are, and whether clients must
/// present a certificate.
public struct TLSSettings: Sendable, Equatable {
    /// Redis's `tls-auth-clients`.
    public enum ClientAuthentication: String, Sendable, CaseIterable {
        /// A client must present a certificate the CA signed (Redis's default).
        case yes
        /// Clients are not asked for a certificate.
        case no
        /// A certificate is not required, but one that is presented must verify.
        case optional
    }

    public var certificateFile: String
    public var keyFile: String
    /// The CA that client certificates (and, for `--tls-replication`, the primary's certificate) must chain to.
    public var caCertificateFile: String?
    public var authClients: ClientAuthentication

    public init(certificateFile: String, keyFile: String, caCertificateFile: String? = nil, authClients: ClientAuthentication = .yes) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.caCertificateFile = caCertificateFile
        self.authClients = authClients
    }
}

/// A TLS file that cannot be used: `message` names the option, the file and what is wrong with it.
public struct TLSConfigurationError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// The TLS contexts made from ``TLSSettings``' files: one for the server's listener, one for the replication link's
/// client side. ``reload()`` reads the files again and swaps both at once: channels accepted afterwards get the new
/// certificate, open connections keep the session they negotiated (a handler holds its own reference to the context
/// it was made with).
public final class TLSContexts: Sendable {
    public let settings: TLSSettings
    private let current: Mutex<Loaded>

    struct Loaded: Sendable {
        let server: NIOSSLContext
        let client: NIOSSLContext
    }

    /// Reads and checks every file.
    /// - Throws: ``TLSConfigurationError`` naming the first file that is missing, unreadable or not what it should be.
    public init(settings: TLSSettings) throws {
        self.settings = settings
        let loaded = try Self.load(settings)
        current = Mutex(loaded)
    }

    /// Reads the files again (rotated certificates); on an error, keeps the contexts in use and throws.
    public func reload() throws {
        let loaded = try Self.load(settings)
        current.withLock { $0 = loaded }
    }

    /// The context a newly accepted connection is given.
    var server: NIOSSLContext { current.withLock { $0.server } }
    /// The context a new replication link to a primary is given.
    var client: NIOSSLContext { current.withLock { $0.client } }

    private static func load(_ settings: TLSSettings) throws -> Loaded {
        let chain = try read("--tls-cert-file", settings.certificateFile) { try NIOSSLCertificate.fromPEMFile($0) }
        guard !chain.isEmpty else {
            throw TLSConfigurationError(message: "--tls-cert-file \(settings.certificateFile): no PEM certificate in the file")
        }
        let key = try read("--tls-key-file", settings.keyFile) { try NIOSSLPrivateKey(file: $0, format: .pem) }
        let authorities = try settings.caCertificateFile.map { path in
            let certificates = try read("--tls-ca-cert-file", path) { try NIOSSLCertificate.fromPEMFile($0) }
            guard !certificates.isEmpty else { throw TLSConfigurationError(message: "--tls-ca-cert-file \(path): no PEM certificate in the file") }
            return certificates
        }
        let trust: NIOSSLTrustRoots = authorities.map { .certificates($0) } ?? .default

        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        server.trustRoots = trust
        switch settings.authClients {
        case .yes: server.certificateVerification = .noHostnameVerification  // a client has no name to check
        case .optional: server.certificateVerification = .optionalVerification
        case .no: server.certificateVerification = .none
        }
        // As Redis, the replica presents the server's own certificate and checks the primary's chain, not its name:
        // replicas are usually pointed at addresses, which certificates seldom list.
        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = chain.map { .certificate($0) }
        client.privateKey = .privateKey(key)
        client.trustRoots = trust
        client.certificateVerification = .noHostnameVerification
        do {
            return Loaded(server: try NIOSSLContext(configuration: server), client: try NIOSSLContext(configuration: client))
        } catch {
            throw TLSConfigurationError(message: "--tls-cert-file \(settings.certificateFile) and --tls-key-file \(settings.keyFile) "
                                            + "cannot be used together (is the key the certificate's?): \(error)")
        }
    }

    /// Runs `parse` on `path`, turning a failure into an error that names `option`, the file and the reason.
    private static func read<T>(_ option: String, _ path: String, _ parse: (String) throws -> T) throws -> T {
        // NIOSSL's errors do not say that a file is missing or unreadable; open(2) does.
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TLSConfigurationError(message: "\(option) \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        do {
            return try parse(path)
        } catch {
            throw TLSConfigurationError(message: "\(option) \(path): not a PEM file of the expected kind (\(error))")
        }
    }
}
