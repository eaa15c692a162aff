// A small etcd v3 client over the JSON gateway (`POST /v3/…`) on AsyncHTTPClient: KV reads and writes,
// transactions, leases, watches, members and endpoint status. Every call has a short deadline — a primary must learn
// quickly that etcd cannot answer (without quorum, etcd holds writes and lease calls for about 7 s) — and moves on
// to the next endpoint when one cannot be reached.

import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOPosix
import NIOSSL
import Synchronization

/// How to reach etcd.
public struct EtcdConfiguration: Sendable {
    /// etcd's user and password, when etcd has auth enabled: the client gets a token from `/v3/auth/authenticate`
    /// and sends it in the `Authorization` header.
    public struct Credentials: Sendable, Equatable {
        public var user: String
        public var password: String
        public init(user: String, password: String) {
            self.user = user
            self.password = password
        }
    }

    /// PEM files for `https://` endpoints: the CA that signed etcd's certificate, and a client certificate and key
    /// when etcd requires client certificates (`--client-cert-auth`).
    public struct TLS: Sendable, Equatable {
        public var caFile: String?
        public var certificateFile: String?
        public var keyFile: String?
        public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
        }
    }

    /// Client URLs, such as `http://127.0.0.1:2379`. Calls go to the last one that answered, and move on to the
    /// next one when it cannot be reached or does not answer in time.
    public var endpoints: [String]
    /// How long one attempt at one endpoint may take, response body included.
    public var requestTimeout: Duration
    /// How long establishing a TCP (and TLS) connection may take.
    public var connectTimeout: Duration
    public var credentials: Credentials?
    public var tls: TLS?
    /// The largest reply body accepted (a range over many keys can be large).
    public var maxResponseBytes: Int
    /// The largest single line of a watch stream accepted, and how many events may wait for a slow consumer before
    /// the watch is ended (the consumer then watches again from where it was).
    public var maxWatchLineBytes: Int
    public var maxBufferedWatchEvents: Int

    public init(endpoints: [String], requestTimeout: Duration = .seconds(2), connectTimeout: Duration = .seconds(1),
                credentials: Credentials? = nil, tls: TLS? = nil, maxResponseBytes: Int = 8 << 20,
                maxWatchLineBytes: Int = 8 << 20, maxBufferedWatchEvents: Int = 10_000) {
        self.endpoints = endpoints
        self.requestTimeout = requestTimeout
        self.connectTimeout = connectTimeout
        self.credentials = credentials
        self.tls = tls
        self.maxResponseBytes = maxResponseBytes
        self.maxWatchLineBytes = maxWatchLineBytes
        self.maxBufferedWatchEvents = maxBufferedWatchEvents
    }
}

/// An etcd v3 client. Sendable: share one per process. Call ``shutdown()`` when done with it.
public final class EtcdClient: Sendable {
    public let configuration: EtcdConfiguration
    let logger: Logger
    private let http: HTTPClient
    /// Endpoints without a trailing slash.
    private let endpoints: [String]

    private struct State {
        /// The endpoint calls go to first: the last one that answered.
        var preferred = 0
        /// Auth tokens by endpoint (etcd's simple tokens are only known to the member that issued them).
        var tokens: [String: String] = [:]
    }
    private let state = Mutex(State())

    /// - Throws: ``EtcdError/invalidConfiguration(_:)`` for no endpoints, a URL that is not http(s), or TLS files that
    ///   cannot be read.
    public init(_ configuration: EtcdConfiguration, logger: Logger = Logger(label: "kvsh.etcd")) throws {
        guard !configuration.endpoints.isEmpty else {
            throw EtcdError.invalidConfiguration("no endpoints: give at least one client URL, such as http://127.0.0.1:2379")
        }
        var endpoints: [String] = []
        for endpoint in configuration.endpoints {
            var trimmed = endpoint
            while trimmed.hasSuffix("/") { trimmed.removeLast() }
            guard let url = URL(string: trimmed), let scheme = url.scheme, ["http", "https"].contains(scheme),
                  url.host != nil else {
                throw EtcdError.invalidConfiguration("\(endpoint) is not an http:// or https:// client URL")
            }
            endpoints.append(trimmed)
        }
        guard configuration.requestTimeout > .zero, configuration.connectTimeout > .zero else {
            throw EtcdError.invalidConfiguration("the request and connect timeouts must be positive")
        }

        var http = HTTPClient.Configuration()
        if let tls = configuration.tls { http.tlsConfiguration = try Self.tlsConfiguration(tls) }
        http.timeout = .init(connect: configuration.connectTimeout.timeAmount, read: nil)
        // Fail a request at once when its connection cannot be made, instead of retrying until the deadline: the
        // client moves on to the next endpoint itself.
        http.connectionPool.retryConnectionEstablishment = false
        http.httpVersion = .http1Only
        http.redirectConfiguration = .disallow
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
        self.configuration = configuration
        self.endpoints = endpoints
        self.logger = logger
    }

    /// Closes the client's connections. Ends open watches.
    public func shutdown() async throws {
        try await http.shutdown()
    }

    private static func tlsConfiguration(_ tls: EtcdConfiguration.TLS) throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        do {
            if let ca = tls.caFile { configuration.trustRoots = .file(ca) }
            switch (tls.certificateFile, tls.keyFile) {
            case (let certificate?, let key?):
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            case (nil, nil):
                break
            default:
                throw EtcdError.invalidConfiguration("a client certificate needs both its certificate and its key file")
            }
        } catch let error as EtcdError {
            throw error
        } catch {
            throw EtcdError.invalidConfiguration("cannot read the TLS files: \(error)")
        }
        return configuration
    }

    // MARK: KV

    /// Writes `value` at `key`, attached to `lease` (0: none). Returns the revision of the write.
    /// - Throws: ``EtcdError/leaseLost(_:)`` when `lease` has expired or was revoked, as ``keepAlive(_:)`` does: a
    ///   caller that publishes under its lease must grant a new one, or it never publishes again.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) async throws -> Int64 {
        do {
            let reply = try await call("/v3/kv/put",
                                       WirePutRequest(key: WireBytes(key), value: WireBytes(value), lease: lease == 0 ? nil : WireInt64(lease)),
                                       as: WirePutResponse.self)
            return EtcdResponseHeader(reply.header).revision
        } catch let error as EtcdError where lease != 0 && error.isLeaseNotFound {
            throw EtcdError.leaseLost(lease)
        }
    }

    @discardableResult
    public func put(_ key: String, _ value: String, lease: Int64 = 0) async throws -> Int64 {
        try await put(key, Array(value.utf8), lease: lease)
    }

    /// The key's current value, or nil when it does not exist.
    public func get(_ key: String) async throws -> EtcdKeyValue? {
        try await range(WireRangeRequest(key: WireBytes(key))).kvs.first
    }

    /// Every key starting with `prefix`, in key order, with the revision of the read (watch from it + 1 to follow
    /// changes without missing one).
    public func range(prefix: String, limit: Int64 = 0) async throws -> EtcdRangeResult {
        try await range(WireRangeRequest(key: WireBytes(prefix), range_end: rangeEnd(ofPrefix: prefix),
                                         limit: limit == 0 ? nil : WireInt64(limit)))
    }

    /// `key` alone, as a range result (its header gives the revision of the read).
    public func range(key: String) async throws -> EtcdRangeResult {
        try await range(WireRangeRequest(key: WireBytes(key)))
    }

    private func range(_ request: WireRangeRequest) async throws -> EtcdRangeResult {
        let reply = try await call("/v3/kv/range", request, as: WireRangeResponse.self)
        let kvs = (reply.kvs ?? []).map(EtcdKeyValue.init)
        return EtcdRangeResult(header: EtcdResponseHeader(reply.header), kvs: kvs,
                               count: reply.count?.value ?? Int64(kvs.count), more: reply.more ?? false)
    }

    /// Deletes `key` (or every key starting with it). Returns how many keys were deleted.
    @discardableResult
    public func delete(_ key: String, prefix: Bool = false) async throws -> Int64 {
        let reply = try await call("/v3/kv/deleterange",
                                   WireDeleteRequest(key: WireBytes(key), range_end: prefix ? rangeEnd(ofPrefix: key) : nil),
                                   as: WireDeleteResponse.self)
        return reply.deleted?.value ?? 0
    }

    /// Runs `success` if every comparison holds, else `failure`, atomically.
    public func txn(compare: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = []) async throws -> EtcdTxnResult {
        let reply = try await call("/v3/kv/txn",
                                   WireTxnRequest(compare: compare.map(\.wire), success: success.map(\.wire),
                                                  failure: failure.map(\.wire)),
                                   as: WireTxnResponse.self)
        return EtcdTxnResult(header: EtcdResponseHeader(reply.header), succeeded: reply.succeeded ?? false,
                             responses: try (reply.responses ?? []).map(EtcdOperationResult.init))
    }

    // MARK: Leases

    /// A new lease of `ttl` (whole seconds, rounded up; etcd grants at least 2 s).
    public func grantLease(ttl: Duration) async throws -> EtcdLease {
        let seconds = max(1, Int64((ttl + .nanoseconds(999_999_999)).components.seconds))
        let reply = try await call("/v3/lease/grant", WireLeaseGrantRequest(TTL: WireInt64(seconds)),
                                   as: WireLeaseGrantResponse.self)
        if let error = reply.error, !error.isEmpty { throw EtcdError.server(httpStatus: 200, code: 0, message: error) }
        guard let id = reply.ID?.value, id != 0, let granted = reply.TTL?.value, granted > 0 else {
            throw EtcdError.malformedResponse("a lease grant without an ID or a TTL")
        }
        return EtcdLease(id: id, ttl: .seconds(granted), header: EtcdResponseHeader(reply.header))
    }

    /// Renews the lease once (one request, one reply). Returns the TTL it now has.
    /// - Throws: ``EtcdError/leaseLost(_:)`` when the lease has expired or was revoked (etcd then answers without a TTL).
    @discardableResult
    public func keepAlive(_ leaseID: Int64) async throws -> Duration {
        let reply: WireLeaseKeepAliveResponse
        do {
            reply = try await call("/v3/lease/keepalive", WireLeaseID(ID: WireInt64(leaseID)), as: WireLeaseKeepAliveResponse.self)
        } catch let error as EtcdError where error.isLeaseNotFound {
            throw EtcdError.leaseLost(leaseID)
        }
        if let error = reply.error {
            throw EtcdError.server(httpStatus: 200, code: error.code ?? 0, message: error.message ?? error.error ?? "keep-alive failed")
        }
        guard let ttl = reply.result?.TTL?.value, ttl > 0 else { throw EtcdError.leaseLost(leaseID) }
        return .seconds(ttl)
    }

    /// Revokes the lease, deleting every key attached to it. A lease that is already gone is not an error.
    public func revokeLease(_ leaseID: Int64) async throws {
        do {
            _ = try await call("/v3/lease/revoke", WireLeaseID(ID: WireInt64(leaseID)), as: WireHeaderOnly.self)
        } catch let error as EtcdError where error.isLeaseNotFound {
            return
        }
    }

    /// The lease's remaining time to live, or nil when it no longer exists.
    public func leaseTimeToLive(_ leaseID: Int64) async throws -> Duration? {
        let reply = try await call("/v3/lease/timetolive", WireLeaseTimeToLiveRequest(ID: WireInt64(leaseID)),
                                   as: WireLeaseTimeToLiveResponse.self)
        guard let ttl = reply.TTL?.value, ttl > 0 else { return nil }
        return .seconds(ttl)
    }

    // MARK: Cluster and health

    /// The cluster's members, as the answering endpoint knows them.
    public func memberList() async throws -> [EtcdMember] {
        let reply = try await call("/v3/cluster/member/list", WireEmpty(), as: WireMemberListResponse.self)
        return (reply.members ?? []).map {
            EtcdMember(id: $0.ID?.value ?? 0, name: $0.name ?? "", peerURLs: $0.peerURLs ?? [],
                       clientURLs: $0.clientURLs ?? [], isLearner: $0.isLearner ?? false)
        }
    }

    /// What `endpoint` (one of the configured client URLs, or any other) says of itself. Asks that endpoint only.
    public func status(endpoint: String) async throws -> EtcdStatus {
        var trimmed = endpoint
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        let body = try Self.encode(WireEmpty())
        let (status, bytes) = try await attempt(trimmed, "/v3/maintenance/status", body)
        let reply = try decode(WireStatusResponse.self, status: status, bytes)
        return EtcdStatus(endpoint: trimmed, version: reply.version ?? "", memberID: reply.header?.member_id?.value ?? 0,
                          leader: reply.leader?.value ?? 0, raftTerm: reply.raftTerm?.value ?? 0,
                          raftIndex: reply.raftIndex?.value ?? 0, dbSize: reply.dbSize?.value ?? 0,
                          errors: reply.errors ?? [])
    }

    /// The status of every configured endpoint, asked concurrently: for `INFO` and health checks.
    public func health() async -> [(endpoint: String, result: Result<EtcdStatus, EtcdError>)] {
        await withTaskGroup(of: (Int, Result<EtcdStatus, EtcdError>).self) { group in
            for (index, endpoint) in endpoints.enumerated() {
                group.addTask {
                    do {
                        return (index, .success(try await self.status(endpoint: endpoint)))
                    } catch let error as EtcdError {
                        return (index, .failure(error))
                    } catch {
                        return (index, .failure(.unreachable(endpoints: [endpoint], lastError: "\(error)")))
                    }
                }
            }
            var results = [(endpoint: String, result: Result<EtcdStatus, EtcdError>)?](repeating: nil, count: endpoints.count)
            for await (index, result) in group { results[index] = (endpoints[index], result) }
            return results.compactMap { $0 }
        }
    }

    // MARK: Watch

    /// Watches `key` (or every key starting with it) from `fromRevision` (nil: from now). Returns once etcd has
    /// created the watch, so a change made after this returns is seen.
    ///
    /// The sequence never ends by itself: it throws ``EtcdError/watchEnded(_:)`` when the stream breaks or
    /// ``EtcdError/watchCompacted(compactRevision:)``; watch again from the last event's `modRevision` + 1.
    /// Cancelling the iterating task closes the stream.
    public func watch(_ key: String, prefix: Bool = false, fromRevision: Int64? = nil,
                      previousValues: Bool = false) async throws -> EtcdWatch {
        let request = WireWatchCreateRequest(create_request: .init(
            key: WireBytes(key), range_end: prefix ? rangeEnd(ofPrefix: key) : nil,
            start_revision: fromRevision.map(WireInt64.init), prev_kv: previousValues ? true : nil))
        let body = try Self.encode(request)
        let endpoint = state.withLock { endpoints[$0.preferred] }
        let created = OnceResult<Int64>()
        let (events, continuation) = AsyncThrowingStream<EtcdWatchEvent, Error>.makeStream(
            bufferingPolicy: .bufferingOldest(configuration.maxBufferedWatchEvents))

        let reader = Task {
            do {
                try await self.readWatch(endpoint, body, created: created, continuation: continuation)
            } catch {
                let mapped: Error
                if error is CancellationError || Task.isCancelled {
                    mapped = CancellationError()
                } else if error is EtcdError {
                    mapped = error
                } else if created.isResolved {
                    // The watch was established: a transport failure now is the stream breaking.
                    mapped = EtcdError.watchEnded("the connection to \(endpoint) failed: \(error)")
                } else {
                    mapped = self.mapTransportError(error, endpoint: endpoint)
                }
                created.resolve(.failure(mapped))
                if mapped is CancellationError { continuation.finish() } else { continuation.finish(throwing: mapped) }
            }
        }
        continuation.onTermination = { _ in reader.cancel() }
        // etcd answers "created" at once; no answer within the request timeout counts as an unreachable endpoint.
        let timeout = configuration.requestTimeout
        let timer = Task {
            try await Task.sleep(for: timeout)
            created.resolve(.failure(EtcdError.timedOut(endpoint: endpoint, after: timeout)))
            reader.cancel()
        }
        defer { timer.cancel() }
        do {
            let revision = try await withTaskCancellationHandler {
                try await created.wait()
            } onCancel: {
                created.resolve(.failure(CancellationError()))
                reader.cancel()
            }
            return EtcdWatch(startRevision: revision, events: events, handle: WatchHandle(reader))
        } catch {
            reader.cancel()
            if error is EtcdError { rotate(from: endpoint) }
            throw error
        }
    }

    private func readWatch(_ endpoint: String, _ body: Data, created: OnceResult<Int64>,
                           continuation: AsyncThrowingStream<EtcdWatchEvent, Error>.Continuation) async throws {
        let token = try await token(for: endpoint)
        let request = makeRequest(endpoint, "/v3/watch", body, token: token)
        // The deadline covers the response head only; the body streams for as long as the watch lives.
        let response = try await http.execute(request, timeout: configuration.requestTimeout.timeAmount, logger: logger)
        guard response.status == .ok else {
            let bytes = try await response.body.collect(upTo: configuration.maxResponseBytes)
            _ = try decode(WireHeaderOnly.self, status: Int(response.status.code), bytes)
            throw EtcdError.malformedResponse("watch answered HTTP \(response.status.code)")
        }
        var lines = LineSplitter(limit: configuration.maxWatchLineBytes)
        for try await chunk in response.body {
            try lines.append(chunk)
            while let line = lines.next() {
                let parsed: WireWatchLine
                do {
                    parsed = try JSONDecoder().decode(WireWatchLine.self, from: Data(line))
                } catch {
                    throw EtcdError.malformedResponse("a watch line that is not JSON of the expected shape: \(error)")
                }
                if let error = parsed.error {
                    throw EtcdError.watchEnded(error.message ?? "etcd reported an error on the stream")
                }
                guard let result = parsed.result else { continue }
                // A refused watch comes as one line that is both created and cancelled: check cancelled first.
                if result.canceled == true {
                    if let compact = result.compact_revision?.value, compact > 0 {
                        throw EtcdError.watchCompacted(compactRevision: compact)
                    }
                    let reason = result.cancel_reason ?? "no reason given"
                    if reason.contains("auth token") {
                        // The next watch authenticates again.
                        state.withLock { _ = $0.tokens.removeValue(forKey: endpoint) }
                        throw EtcdError.server(httpStatus: 200, code: 16, message: reason)
                    }
                    throw EtcdError.watchEnded("etcd cancelled the watch: \(reason)")
                }
                if result.created == true {
                    created.resolve(.success(EtcdResponseHeader(result.header).revision))
                }
                for event in result.events ?? [] {
                    guard let kv = event.kv else { continue }
                    let watchEvent = EtcdWatchEvent(kind: event.type == "DELETE" ? .delete : .put, kv: EtcdKeyValue(kv),
                                                    previous: event.prev_kv.map(EtcdKeyValue.init))
                    if case .dropped = continuation.yield(watchEvent) {
                        throw EtcdError.watchEnded("more than \(configuration.maxBufferedWatchEvents) events waited for a slow consumer")
                    }
                }
            }
        }
        throw EtcdError.watchEnded("etcd at \(endpoint) closed the stream")
    }

    // MARK: Requests

    private static func encode<Request: Encodable>(_ request: Request) throws -> Data {
        do {
            return try JSONEncoder().encode(request)
        } catch {
            throw EtcdError.invalidConfiguration("cannot encode the request: \(error)")
        }
    }

    /// POSTs `request` to `path`, at the preferred endpoint and then at the others, and decodes the reply.
    func call<Request: Encodable, Reply: Decodable>(_ path: String, _ request: Request, as: Reply.Type) async throws -> Reply {
        let body = try Self.encode(request)
        let count = endpoints.count
        let first = state.withLock { $0.preferred }
        // What went wrong at each endpoint, for the error when none answers.
        var failures: [(endpoint: String, error: EtcdError)] = []
        for offset in 0..<count {
            try Task.checkCancellation()
            let endpoint = endpoints[(first + offset) % count]
            do {
                var (status, bytes) = try await attempt(endpoint, path, body)
                let reply = try? decode(WireError.self, status: 200, bytes)
                // An expired token: authenticate again, once.
                if status != 200, configuration.credentials != nil,
                   reply?.code == 16 || (reply?.message ?? reply?.error ?? "").contains("auth token") {
                    state.withLock { _ = $0.tokens.removeValue(forKey: endpoint) }
                    (status, bytes) = try await attempt(endpoint, path, body)
                }
                let decoded = try decode(Reply.self, status: status, bytes)
                state.withLock { $0.preferred = (first + offset) % count }
                return decoded
            } catch let error as EtcdError {
                switch error {
                case .timedOut, .unreachable:
                    // Try the next endpoint; the next call starts there too.
                    logger.debug("etcd endpoint failed", metadata: ["endpoint": "\(endpoint)", "error": "\(error)"])
                    rotate(from: endpoint)
                    failures.append((endpoint, error))
                default:
                    throw error
                }
            }
        }
        if failures.count == 1 || failures.allSatisfy({ if case .timedOut = $0.error { true } else { false } }),
           let last = failures.last {
            throw last.error
        }
        let each = failures.map { failure -> String in
            switch failure.error {
            case .unreachable(_, let message): return "\(failure.endpoint): \(message)"
            case .timedOut(_, let after): return "\(failure.endpoint): no answer within \(after)"
            default: return "\(failure.endpoint): \(failure.error)"
            }
        }
        throw EtcdError.unreachable(endpoints: endpoints, lastError: each.joined(separator: "; "))
    }

    /// One POST to one endpoint, bounded by the request timeout (body included). Transport failures become
    /// ``EtcdError/timedOut(endpoint:after:)`` or ``EtcdError/unreachable(endpoints:lastError:)``.
    private func attempt(_ endpoint: String, _ path: String, _ body: Data) async throws -> (Int, ByteBuffer) {
        let token = try await token(for: endpoint)
        let request = makeRequest(endpoint, path, body, token: token)
        let timeout = configuration.requestTimeout
        let limit = configuration.maxResponseBytes
        let http = self.http
        let logger = self.logger
        do {
            return try await withDeadline(timeout, endpoint: endpoint) {
                let response = try await http.execute(request, timeout: timeout.timeAmount, logger: logger)
                let bytes = try await response.body.collect(upTo: limit)
                return (Int(response.status.code), bytes)
            }
        } catch let error as EtcdError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch is NIOTooManyBytesError {
            throw EtcdError.malformedResponse("a reply larger than \(limit) bytes (raise maxResponseBytes, or read less at once)")
        } catch {
            throw mapTransportError(error, endpoint: endpoint)
        }
    }

    private func mapTransportError(_ error: Error, endpoint: String) -> Error {
        if let error = error as? EtcdError { return error }
        if error is CancellationError { return error }
        if let error = error as? HTTPClientError, error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return EtcdError.timedOut(endpoint: endpoint, after: configuration.requestTimeout)
        }
        return EtcdError.unreachable(endpoints: [endpoint], lastError: Self.describe(error))
    }

    /// A transport error in a few words ("Connection refused"), rather than NIO's nested descriptions.
    private static func describe(_ error: Error) -> String {
        if let error = error as? NIOConnectionError {
            if let last = error.connectionErrors.last { return describe(last.error) }
            if let dns = error.dnsAError ?? error.dnsAAAAError { return "cannot resolve \(error.host): \(dns)" }
        }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        return "\(error)"
    }

    private func rotate(from endpoint: String) {
        guard let index = endpoints.firstIndex(of: endpoint) else { return }
        state.withLock { state in
            if state.preferred == index { state.preferred = (index + 1) % endpoints.count }
        }
    }

    private func makeRequest(_ endpoint: String, _ path: String, _ body: Data, token: String?) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: endpoint + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let token { request.headers.add(name: "Authorization", value: token) }
        request.body = .bytes(ByteBuffer(data: body))
        return request
    }

    private func decode<Reply: Decodable>(_ type: Reply.Type, status: Int, _ bytes: ByteBuffer) throws -> Reply {
        guard status == 200 else {
            let wire = try? JSONDecoder().decode(WireError.self, from: bytes)
            let message = wire?.message ?? wire?.error ?? String(buffer: bytes).prefix(200).description
            throw EtcdError.server(httpStatus: status, code: wire?.code ?? 0, message: message)
        }
        do {
            return try JSONDecoder().decode(Reply.self, from: bytes)
        } catch {
            throw EtcdError.malformedResponse("\(Reply.self): \(error)")
        }
    }

    /// The auth token for `endpoint`, authenticating first when there are credentials and no token yet.
    private func token(for endpoint: String) async throws -> String? {
        guard let credentials = configuration.credentials else { return nil }
        if let token = state.withLock({ $0.tokens[endpoint] }) { return token }
        let body = try Self.encode(WireAuthenticateRequest(name: credentials.user, password: credentials.password))
        let request = makeRequest(endpoint, "/v3/auth/authenticate", body, token: nil)
        let timeout = configuration.requestTimeout
        let limit = configuration.maxResponseBytes
        let http = self.http
        let logger = self.logger
        let (status, bytes): (Int, ByteBuffer)
        do {
            (status, bytes) = try await withDeadline(timeout, endpoint: endpoint) {
                let response = try await http.execute(request, timeout: timeout.timeAmount, logger: logger)
                return (Int(response.status.code), try await response.body.collect(upTo: limit))
            }
        } catch {
            throw mapTransportError(error, endpoint: endpoint)
        }
        let reply = try decode(WireAuthenticateResponse.self, status: status, bytes)
        guard let token = reply.token, !token.isEmpty else {
            throw EtcdError.malformedResponse("authenticate answered without a token")
        }
        state.withLock { $0.tokens[endpoint] = token }
        return token
    }
}

/// The events of one watch. See ``EtcdClient/watch(_:prefix:fromRevision:previousValues:)``. The stream is closed
/// when the iterating task is cancelled, on ``cancel()``, or when the last copy of the watch and its iterators is
/// released.
public struct EtcdWatch: AsyncSequence, Sendable {
    public typealias Element = EtcdWatchEvent
    /// The store's revision when etcd created the watch.
    public let startRevision: Int64
    let events: AsyncThrowingStream<EtcdWatchEvent, Error>
    let handle: WatchHandle

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<EtcdWatchEvent, Error>.AsyncIterator
        let handle: WatchHandle
        public mutating func next() async throws -> EtcdWatchEvent? { try await base.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: events.makeAsyncIterator(), handle: handle) }

    /// Closes the stream: iteration ends (returns nil).
    public func cancel() { handle.cancel() }
}

/// Owns the task reading a watch's stream: a watch abandoned without being iterated to its end must not keep its
/// connection open until the client shuts down.
final class WatchHandle: Sendable {
    private let reader: Task<Void, Never>
    init(_ reader: Task<Void, Never>) { self.reader = reader }
    func cancel() { reader.cancel() }
    deinit { reader.cancel() }
}

// MARK: - Helpers

extension Duration {
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// Runs `operation`, throwing ``EtcdError/timedOut(endpoint:after:)`` if it has not finished after `timeout` (the
/// operation is then cancelled). AsyncHTTPClient's own deadline stops at the response head; this one covers the body.
func withDeadline<T: Sendable>(_ timeout: Duration, endpoint: String,
                               _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw EtcdError.timedOut(endpoint: endpoint, after: timeout)
        }
        return value
    }
}

/// A result delivered once, to one waiter: later results are ignored.
final class OnceResult<Value: Sendable>: Sendable {
    private enum State {
        case pending(CheckedContinuation<Value, Error>?)
        case done(Result<Value, Error>)
    }
    private let state = Mutex(State.pending(nil))

    func resolve(_ result: Result<Value, Error>) {
        let waiter: CheckedContinuation<Value, Error>? = state.withLock { state in
            guard case .pending(let waiter) = state else { return nil }
            state = .done(result)
            return waiter
        }
        waiter?.resume(with: result)
    }

    var isResolved: Bool {
        state.withLock { state in
            if case .done = state { return true }
            return false
        }
    }

    func wait() async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<Value, Error>? = state.withLock { state in
                switch state {
                case .done(let result): return result
                case .pending: state = .pending(continuation); return nil
                }
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// Splits a byte stream into newline-terminated lines (the watch stream's NDJSON), refusing a line over `limit`.
struct LineSplitter {
    let limit: Int
    private var pending: [UInt8] = []
    private var start = 0

    init(limit: Int) { self.limit = limit }

    mutating func append(_ buffer: ByteBuffer) throws {
        if start > 0 {
            pending.removeFirst(start)
            start = 0
        }
        pending.append(contentsOf: buffer.readableBytesView)
        if pending.count > limit, !pending.contains(UInt8(ascii: "\n")) {
            throw EtcdError.malformedResponse("a watch line longer than \(limit) bytes (raise maxWatchLineBytes)")
        }
    }

    /// The next complete line without its newline; blank lines are skipped.
    mutating func next() -> ArraySlice<UInt8>? {
        while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = pending[start..<newline]
            start = newline + 1
            if !line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { return line }
        }
        return nil
    }
}
