// The errors the etcd client and the election throw: values with a message that says what happened and what to do.

/// An etcd call that failed. `description` is worded for an operator's log.
public enum EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration cannot work (no endpoints, a malformed URL, unreadable TLS files).
    case invalidConfiguration(String)
    /// No endpoint answered within the request timeout: etcd is down, unreachable, or has no quorum (etcd then
    /// holds writes and lease calls for about 7 s before failing them).
    case timedOut(endpoint: String, after: Duration)
    /// No endpoint answered: each refused or dropped the connection, or did not answer in time (`lastError` says which).
    case unreachable(endpoints: [String], lastError: String)
    /// etcd answered with an error (`code` is the gRPC status code: 5 not found, 9 failed precondition, 16
    /// unauthenticated, 14 unavailable…).
    case server(httpStatus: Int, code: Int, message: String)
    /// A reply etcd's gateway should never send: not JSON of the expected shape, or larger than the limit.
    case malformedResponse(String)
    /// The watch was cancelled by etcd because `revision` has been compacted: read the current value and watch again
    /// from the read's revision + 1.
    case watchCompacted(compactRevision: Int64)
    /// The watch stream ended or broke (etcd restarted, the connection dropped): watch again from the last revision
    /// seen + 1.
    case watchEnded(String)
    /// The lease no longer exists (expired or revoked): grant a new one.
    case leaseLost(Int64)

    public var description: String {
        switch self {
        case .invalidConfiguration(let message):
            return "etcd client configuration: \(message)"
        case .timedOut(let endpoint, let after):
            return "etcd at \(endpoint) did not answer within \(after): it is down, unreachable or without quorum; "
                + "check `etcdctl endpoint health`"
        case .unreachable(let endpoints, let lastError):
            return "no etcd endpoint answered (\(endpoints.joined(separator: ", "))): \(lastError); "
                + "check that etcd runs and that --etcd names its client URLs"
        case .server(let httpStatus, let code, let message):
            return "etcd refused the request (HTTP \(httpStatus), gRPC code \(code)): \(message)"
        case .malformedResponse(let message):
            return "etcd sent a reply this client cannot read: \(message); is the endpoint an etcd 3.4+ client URL?"
        case .watchCompacted(let revision):
            return "the watch's start revision was compacted (compact revision \(revision)): read the key again and "
                + "watch from the read's revision + 1"
        case .watchEnded(let why):
            return "the etcd watch stream ended (\(why)): watch again from the last revision seen + 1"
        case .leaseLost(let id):
            return "etcd lease \(String(id, radix: 16)) has expired or was revoked: grant a new lease"
        }
    }

    /// Whether the error is etcd saying the lease is unknown (it expired or was revoked).
    var isLeaseNotFound: Bool {
        if case .server(_, let code, let message) = self { return code == 5 && message.contains("lease not found") }
        return false
    }

    /// Whether the error means the auth token expired or is invalid (so a fresh one may cure it).
    var isInvalidToken: Bool {
        if case .server(_, let code, let message) = self {
            return code == 16 || message.contains("invalid auth token")
        }
        return false
    }
}
