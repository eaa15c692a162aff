// Real etcd for the tests: one member or a cluster of three on free loopback ports, data in a temporary directory,
// started by the test and killed (and reaped) at its end. Waits poll with deadlines; nothing sleeps to synchronise.

import Etcd
import Foundation
import KVTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum EtcdBinary {
    /// etcd on PATH, or a skip (a failure under `make test`/CI, which install it: KVSH_REQUIRE_TOOLS / CI).
    static func require() throws -> String {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":")
        for directory in directories where access("\(directory)/etcd", X_OK) == 0 {
            return "\(directory)/etcd"
        }
        let hint = "etcd is not installed: apt-get install etcd-server, or run .ci/install-deps test"
        if required {
            XCTFail("\(hint) (required here: KVSH_REQUIRE_TOOLS or CI is set)")
            throw HarnessError(hint)
        }
        throw XCTSkip(hint)
    }

    static let required = isSet("KVSH_REQUIRE_TOOLS") || isSet("CI")

    private static func isSet(_ variable: String) -> Bool {
        ProcessInfo.processInfo.environment[variable].map { !$0.isEmpty && $0 != "0" && $0.lowercased() != "false" } ?? false
    }
}

/// A TCP port on 127.0.0.1 that nobody listened on a moment ago: bind port 0, read the port, close.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw HarnessError("bind: \(String(cString: strerror(errno)))") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// One etcd member process.
final class EtcdMemberProcess {
    let name: String
    let clientURL: String
    let peerURL: String
    let dataDir: String
    let logPath: String
    private let process: Process
    private(set) var running = true

    init(binary: String, name: String, clientPort: Int, peerPort: Int, cluster: String, token: String, directory: String,
         tls: TestCertificates?) throws {
        self.name = name
        clientURL = "\(tls == nil ? "http" : "https")://127.0.0.1:\(clientPort)"
        peerURL = "http://127.0.0.1:\(peerPort)"
        dataDir = directory + "/" + name
        logPath = directory + "/" + name + ".log"
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "--name", name, "--data-dir", dataDir,
            "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", cluster, "--initial-cluster-token", token, "--initial-cluster-state", "new",
        ]
        if let tls {
            process.arguments? += ["--cert-file", tls.serverCertificate, "--key-file", tls.serverKey,
                                   "--trusted-ca-file", tls.ca, "--client-cert-auth"]
        }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try log.close()
    }

    var pid: pid_t { process.processIdentifier }

    func signal(_ signal: Int32) {
        if running { kill(pid, signal) }
    }

    /// SIGKILL (after SIGCONT, in case it is stopped) and wait for it to exit.
    func kill9() {
        guard running else { return }
        kill(pid, SIGCONT)
        kill(pid, SIGKILL)
        process.waitUntilExit()
        running = false
    }

    var logTail: String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return String(text.suffix(2000))
    }
}

/// One etcd cluster (one or three members) with its temporary directory.
final class EtcdCluster {
    let members: [EtcdMemberProcess]
    let directory: String
    var endpoints: [String] { members.map(\.clientURL) }

    init(size: Int = 1, tls: TestCertificates? = nil) throws {
        let binary = try EtcdBinary.require()
        directory = try makeTempDirectory(prefix: "kvsh-etcd")
        let ports = try (0..<size).map { _ in (client: try freePort(), peer: try freePort()) }
        let cluster = ports.enumerated().map { "n\($0.offset + 1)=http://127.0.0.1:\($0.element.peer)" }.joined(separator: ",")
        let token = "kvsh-test-\(getpid())-\(ports[0].client)"
        var members: [EtcdMemberProcess] = []
        do {
            for (index, port) in ports.enumerated() {
                members.append(try EtcdMemberProcess(binary: binary, name: "n\(index + 1)", clientPort: port.client,
                                                     peerPort: port.peer, cluster: cluster, token: token, directory: directory,
                                                     tls: tls))
            }
        } catch {
            members.forEach { $0.kill9() }
            removeTree(directory)
            throw error
        }
        self.members = members
    }

    /// Polls every member's status until all answer and agree on a raft leader, within `timeout`.
    func waitUntilHealthy(_ client: EtcdClient, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            let statuses = await client.health()
            let leaders = Set(statuses.compactMap { try? $0.result.get().leader })
            if statuses.allSatisfy({ (try? $0.result.get()) != nil }), leaders.count == 1, leaders.first != 0 { return }
            last = statuses.map { "\($0.endpoint): \($0.result)" }.joined(separator: "; ")
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessError("etcd did not become healthy in \(timeout): \(last)\n\(members.map(\.logTail).joined(separator: "\n"))")
    }

    func stop() {
        members.forEach { $0.kill9() }
        removeTree(directory)
    }

    deinit { stop() }
}

/// Waits for the first element of `sequence` that satisfies `predicate`, failing after `timeout`.
func first<S: AsyncSequence & Sendable>(_ sequence: S, within timeout: Duration, _ what: String,
                                        where predicate: @escaping @Sendable (S.Element) -> Bool) async throws -> S.Element
where S.Element: Sendable {
    try await withThrowingTaskGroup(of: S.Element?.self) { group in
        group.addTask {
            for try await element in sequence where predicate(element) { return element }
            return nil
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let result = try await group.next(), let element = result else {
            throw HarnessError("waited \(timeout) for \(what)")
        }
        return element
    }
}

/// A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl command. The
/// server certificate is for client authentication too: etcd's gateway dials its own gRPC port with it.
struct TestCertificates {
    let ca: String
    let serverCertificate: String
    let serverKey: String
    let clientCertificate: String
    let clientKey: String

    init(directory: String) throws {
        let candidates: [String] = ["/usr/bin/openssl", "/usr/local/bin/openssl"]
        guard let openssl = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw XCTSkip("openssl is not installed (apt-get install openssl)")
        }
        func run(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: openssl)
            process.arguments = arguments
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw HarnessError("openssl \(arguments.joined(separator: " ")) failed (\(process.terminationStatus))")
            }
        }
        let key: [String] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try run(["req", "-x509"] + key + ["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=kvsh test CA"])
        let kinds: [(name: String, usage: String)] = [("server", "serverAuth,clientAuth"), ("client", "clientAuth")]
        for (name, usage) in kinds {
            try run(["req"] + key + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=kvsh test \(name)"])
            try "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=\(usage)\n"
                .write(toFile: directory + "/\(name).ext", atomically: true, encoding: .utf8)
            try run(["x509", "-req", "-in", "\(name).csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                     "-out", "\(name).crt", "-days", "2", "-extfile", "\(name).ext"])
        }
        ca = directory + "/ca.crt"
        serverCertificate = directory + "/server.crt"
        serverKey = directory + "/server.key"
        clientCertificate = directory + "/client.crt"
        clientKey = directory + "/client.key"
    }
}
