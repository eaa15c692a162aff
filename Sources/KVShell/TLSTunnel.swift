#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// TLS for ``RESPClient`` (`kvsh --connect --tls`), configured as redis-cli's `--tls --cacert --cert --key --insecure
/// --sni`: made once, used for every connection the shell makes (a reconnection, the primary found after a failover).
///
/// As redis-cli, the server's certificate must chain to `--cacert` (or to the system's CAs without it); its name is
/// not checked, since servers are usually reached by address.
public final class RESPClientTLS: Sendable {
    let context: NIOSSLContext
    let serverName: String?

    /// Reads the files.
    /// - Throws: ``RESPClientTLSError`` naming the flag and the file that cannot be used.
    public init(caCertificateFile: String?, certificateFile: String?, keyFile: String?, insecure: Bool = false, serverName: String? = nil) throws {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = insecure ? .none : .noHostnameVerification
        if let caCertificateFile {
            configuration.trustRoots = .certificates(try Self.read("--cacert", caCertificateFile) { try NIOSSLCertificate.fromPEMFile($0) })
        }
        if let certificateFile {
            configuration.certificateChain = try Self.read("--cert", certificateFile) { try NIOSSLCertificate.fromPEMFile($0) }
                .map { .certificate($0) }
        }
        if let keyFile {
            configuration.privateKey = .privateKey(try Self.read("--key", keyFile) { try NIOSSLPrivateKey(file: $0, format: .pem) })
        }
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw RESPClientTLSError("--cert and --key cannot be used together (is the key the certificate's?): \(error)")
        }
        self.serverName = serverName
    }

    private static func read<T>(_ option: String, _ path: String, _ parse: (String) throws -> T) throws -> T {
        // NIOSSL's errors do not say that a file is missing or unreadable; open(2) does.
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw RESPClientTLSError("\(option) \(path): \(String(cString: strerror(errno)))") }
        close(fd)
        do {
            return try parse(path)
        } catch {
            throw RESPClientTLSError("\(option) \(path): not a PEM file of the expected kind (\(error))")
        }
    }
}

/// A TLS file that cannot be used; the message names the flag and the file.
public struct RESPClientTLSError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// A TLS connection as a local socket: ``RESPClient`` keeps its one blocking, poll-driven code path over a
/// descriptor, and a NIO channel with swift-nio-ssl's handler carries the bytes between the other end of a socket pair
/// and the server. The plain path does not pay for TLS at all; the TLS path pays one local copy, small beside the
/// encryption itself.
final class TLSTunnel {
    /// The client's end of the socket pair (non-blocking); the client closes it.
    let descriptor: Int32
    private let channels: [any Channel]

    /// Connects and completes the handshake by `timeout`.
    /// - Throws: the reason, worded for `cannot connect to HOST:PORT: <reason>`.
    init(host: String, port: Int, tls: RESPClientTLS, timeout: Duration) throws {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw TunnelError(String(cString: strerror(errno)))
        }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let local: any Channel
        do {
            // The NIO side of the pair: its half-closure (the client shut down writing) is passed on to the server.
            local = try NIOPipeBootstrap(group: loop)
                .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
                .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(GlueHandler()) } }
                .takingOwnershipOfDescriptor(inputOutput: pair[1])
                .wait()
        } catch {
            close(pair[0])
            close(pair[1])
            throw TunnelError("\(error)")
        }
        let handshake = loop.makePromise(of: Void.self)
        let serverName = tls.serverName ?? ((try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil)  // SNI takes names only
        let (seconds, attoseconds) = timeout.components
        let remote: any Channel
        do {
            remote = try ClientBootstrap(group: loop)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
                .connectTimeout(.nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let operations = channel.pipeline.syncOperations
                        try operations.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: serverName))
                        try operations.addHandler(HandshakeWatcher(promise: handshake))
                        let glue = GlueHandler()
                        try operations.addHandler(glue)
                        // Both channels are on `loop`: the local side's handler may be reached from here.
                        let partner = try local.pipeline.syncOperations.handler(type: GlueHandler.self)
                        glue.partner = partner
                        partner.partner = glue
                        partner.partnerBecameWritable()  // the local side held its first read until it had a partner
                    }
                }
                .connect(host: host, port: port)
                .wait()
        } catch {
            local.close(promise: nil)
            close(pair[0])
            throw TunnelError(Self.describe(error))
        }
        let deadline = loop.scheduleTask(in: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)) {
            handshake.fail(TunnelError("the TLS handshake did not finish within \(timeout)"))
        }
        do {
            try handshake.futureResult.wait()
            deadline.cancel()
        } catch {
            deadline.cancel()
            remote.close(promise: nil)
            local.close(promise: nil)
            close(pair[0])
            throw TunnelError(Self.describe(error))
        }
        descriptor = pair[0]
        channels = [local, remote]
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        for channel in channels { channel.close(promise: nil) }
    }

    /// A TLS failure in redis-cli's words where it has them.
    static func describe(_ error: any Error) -> String {
        if let error = error as? TunnelError { return error.description }
        let text = "\(error)"
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return "SSL_connect failed: certificate verify failed (give --cacert the CA that signed the server's certificate, or --insecure to skip the check)"
        }
        if text.contains("WRONG_VERSION_NUMBER") {
            return "SSL_connect failed: wrong version number (the server does not speak TLS on this port: is it the --tls-port?)"
        }
        if let error = error as? NIOSSLError, case .uncleanShutdown = error {
            return "SSL_connect failed: the server closed the connection during the TLS handshake (is this its TLS port?)"
        }
        return "SSL_connect failed: \(text)"
    }
}

struct TunnelError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Completes `promise` when the handshake does, or fails it with the first error or the end of the connection.
private final class HandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let promise: EventLoopPromise<Void>

    init(promise: EventLoopPromise<Void>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted? = event as? TLSUserEvent { promise.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)  // ignored once completed
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(TunnelError("SSL_connect failed: the server closed the connection during the TLS handshake (is this its TLS port?)"))
        context.fireChannelInactive()
    }
}

/// Joins two channels on one event loop: what one reads, the other writes, with back-pressure (a side reads only
/// while the other can take more), half-closure passed on, and a close of one closing the other once what it was
/// given is written.
private final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    private func partnerWrite(_ data: ByteBuffer) { context?.write(wrapOutboundOut(data), promise: nil) }

    private func partnerFlush() { context?.flush() }

    private func partnerWriteEOF() {
        guard let context else { return }
        // After what was written: writes complete in order.
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(mode: .output, promise: nil)
        }
    }

    private func partnerClose() {
        guard let context else { return }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    private var partnerWritable: Bool { partner?.context?.channel.isWritable ?? false }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.partnerWrite(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerClose()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            partner?.partnerWriteEOF()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        partner?.partnerClose()
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partnerWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
