import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The operations endpoint, HTTP/1.1 on SwiftNIO's NIOHTTP1: `GET /metrics` (Prometheus's text format, or
/// OpenMetrics when the `Accept` header asks for it), `GET /health` (the process answers) and `GET /ready` (200 or
/// 503, with the reasons: ``ServerMetrics/readiness()``). Anything else gets 404, another method 405, a request NIO
/// cannot parse 400.
///
/// It runs on an event loop of its own, never on the server's: a scrape gathers the per-command figures by
/// hopping onto each server loop for a moment (a copy of its counters), and reads the store's figures here.
public final class MetricsEndpoint: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    /// The address listened on (with the actual port when 0 was asked for).
    public var localAddress: SocketAddress? { channel.localAddress }

    /// Binds `host:port` and starts answering.
    /// - Throws: when the address cannot be bound.
    public init(host: String, port: Int, metrics: ServerMetrics, logger: Logger) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(metrics: metrics))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        logger.info("metrics endpoint listening", metadata: [
            "address": "\(channel.localAddress.map { "\($0)" } ?? "?")", "paths": "/metrics /health /ready",
        ])
    }

    /// Stops listening and closes the endpoint's connections.
    public func shutdown() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Answers one HTTP connection's requests, in order (NIO's pipelining handler holds later ones back).
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let metrics: ServerMetrics
    private var head: HTTPRequestHead?

    init(metrics: ServerMetrics) {
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
        case .body:
            break  // no path takes a body: it is read and dropped as it arrives, never collected
        case .end:
            guard let request = head else { return }
            head = nil
            respond(to: request, context: context)
        }
    }

    /// A request NIO could not parse: its error handler (before this one) has answered 400; the connection ends.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    static let paths = ["/metrics", "/health", "/ready"]

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = String(request.uri.prefix { $0 != "?" && $0 != "#" })
        guard Self.paths.contains(path) else {
            return send(.notFound, contentType: "text/plain; charset=utf-8", body: "404 not found: \(path.prefix(200))\n", request: request, context: context)
        }
        guard request.method == .GET || request.method == .HEAD else {
            return send(.methodNotAllowed, contentType: "text/plain; charset=utf-8", body: "405 method not allowed: use GET\n",
                        extraHeaders: [("Allow", "GET, HEAD")], request: request, context: context)
        }
        switch path {
        case "/health":
            send(.ok, contentType: "application/json", body: "{\"status\":\"ok\"}\n", request: request, context: context)
        case "/ready":
            let (ready, reasons) = metrics.readiness()
            let body = "{\"status\":\"\(ready ? "ready" : "unavailable")\",\"reasons\":[" + reasons.map(Self.jsonString).joined(separator: ",") + "]}\n"
            send(ready ? .ok : .serviceUnavailable, contentType: "application/json", body: body, request: request, context: context)
        default:
            let openMetrics = request.headers[canonicalForm: "accept"].contains { $0.lowercased().hasPrefix("application/openmetrics-text") }
            let metrics = self.metrics
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            metrics.commandStatistics(on: context.eventLoop).whenComplete { result in
                let (handler, context) = bound.value
                let commands = (try? result.get()) ?? CommandStatisticsSnapshot()
                let body = MetricsExposition.render(metrics.families(commands: commands), openMetrics: openMetrics)
                handler.send(.ok, contentType: openMetrics ? MetricsExposition.openMetricsContentType : MetricsExposition.textContentType,
                             body: body, request: request, context: context)
            }
        }
    }

    private func send(_ status: HTTPResponseStatus, contentType: String, body: String, extraHeaders: [(String, String)] = [],
                      request: HTTPRequestHead, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
        buffer.writeString(body)
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(buffer.readableBytes))] + extraHeaders)
        let keepAlive = request.isKeepAlive
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil) }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }

    /// `text` as a JSON string literal.
    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
