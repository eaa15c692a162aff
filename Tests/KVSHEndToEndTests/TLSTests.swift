// Encryption in transit: `kvsh serve --tls-port` against redis-cli --tls, redis-py ssl=True and openssl s_client;
// client certificates, a plain client on the TLS port, certificate reload on SIGHUP, replication over TLS between
// kvsh nodes and to a redis-server replica. Certificates are made by openssl in each test's sandbox.

import Foundation
import RESP
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A CA, a server certificate for localhost and 127.0.0.1 signed by it, a client certificate, and a second, unrelated
/// CA: PEM files in a sandbox, made by `openssl`.
struct TestCertificates {
    let directory: String
    var caCertificate: String { directory + "/ca.crt" }
    var serverCertificate: String { directory + "/server.crt" }
    var serverKey: String { directory + "/server.key" }
    var clientCertificate: String { directory + "/client.crt" }
    var clientKey: String { directory + "/client.key" }
    /// A CA that signed none of the above, and its key (a self-signed certificate that no CA here vouches for).
    var otherCA: String { directory + "/other-ca.crt" }
    var otherKey: String { directory + "/other-ca.key" }

    static let openssl = ExternalTool.path("openssl")

    init(_ sandbox: Sandbox) throws {
        directory = sandbox.path("tls")
        mkdir(directory, 0o700)
        try makeCA("ca", subject: "kvsh test CA", sandbox: sandbox)
        try makeCA("other-ca", subject: "unrelated CA", sandbox: sandbox)
        try makeLeaf("server", subject: "kvsh-server", serial: 1001, extensions: "subjectAltName=DNS:localhost,IP:127.0.0.1\n", sandbox: sandbox)
        try makeLeaf("client", subject: "kvsh-client", serial: 2001, extensions: "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n", sandbox: sandbox)
    }

    /// A new server certificate and key from the same CA, written over the old files (a rotation), with `subject`.
    func rotateServerCertificate(subject: String, serial: Int, sandbox: Sandbox) throws {
        try makeLeaf("server-new", subject: subject, serial: serial, extensions: "subjectAltName=DNS:localhost,IP:127.0.0.1\n", sandbox: sandbox)
        // rename(2): a reload never sees a half-written file.
        guard rename(directory + "/server-new.key", serverKey) == 0, rename(directory + "/server-new.crt", serverCertificate) == 0 else {
            throw HarnessError("rename: \(String(cString: strerror(errno)))")
        }
    }

    private func makeCA(_ name: String, subject: String, sandbox: Sandbox) throws {
        try run(sandbox, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                 "-subj", "/CN=\(subject)", "-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).crt"])
    }

    private func makeLeaf(_ name: String, subject: String, serial: Int, extensions: String, sandbox: Sandbox) throws {
        let base = "\(directory)/\(name)"
        try Data(extensions.utf8).write(to: URL(fileURLWithPath: base + ".ext"))
        try run(sandbox, ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=\(subject)",
                 "-keyout", base + ".key", "-out", base + ".csr"])
        try run(sandbox, ["x509", "-req", "-in", base + ".csr", "-CA", caCertificate, "-CAkey", directory + "/ca.key",
                 "-set_serial", String(serial), "-days", "2", "-extfile", base + ".ext", "-out", base + ".crt"])
    }

    private func run(_ sandbox: Sandbox, _ arguments: [String]) throws {
        guard let openssl = Self.openssl else { throw HarnessError("openssl is not installed (apt-get install openssl)") }
        let result = try ExternalTool.run(openssl, arguments, sandbox: sandbox)
        guard result.termination == .exited(0) else { throw HarnessError("openssl \(arguments.joined(separator: " ")): \(result.summary)") }
    }
}

/// A `kvsh serve` with a TLS listener beside its plain port.
private func tlsServer(_ sandbox: Sandbox, _ certificates: TestCertificates, name: String = "server-data",
                       options: [String] = []) throws -> (server: ServerProcess, tlsPort: Int) {
    var lastError: (any Error)?
    for _ in 0..<3 {  // another test may take the free port first
        let tlsPort = try freePort()
        do {
            let server = try ServerProcess(sandbox, dataDir: sandbox.path(name), options: [
                "--tls-port", String(tlsPort), "--tls-cert-file", certificates.serverCertificate,
                "--tls-key-file", certificates.serverKey, "--tls-ca-cert-file", certificates.caCertificate,
            ] + options)
            // Both listeners are bound before the server logs that it listens; the plain one is checked by ServerProcess.
            guard server.process.wait(timeout: .seconds(20), until: { $0.stderr.text.contains("kvsh server listening") }) else {
                throw HarnessError("no 'listening' line: \(server.process.stderr.text)")
            }
            return (server, tlsPort)
        } catch {
            lastError = error
        }
    }
    throw lastError ?? HarnessError("no free port")
}

/// Waits (bounded) until `condition` holds, polling; false if it never did.
private func eventuallyTrue(_ timeout: Duration = .seconds(30), _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        var nothing = pollfd(fd: -1, events: 0, revents: 0)
        _ = poll(&nothing, 0, 50)
    }
    return try condition()
}

private let tlsToolsAvailable = (TestCertificates.openssl != nil && ExternalTool.redisCLI != nil) || ExternalTool.required

/// A missing tool: a failure when the tools are required, else the test was not enabled in the first place.
private func requireTLSTools() -> (openssl: String, cli: String)? {
    guard let openssl = TestCertificates.openssl, let cli = ExternalTool.redisCLI else {
        Issue.record("openssl and redis-cli are required here (KVSH_REQUIRE_TOOLS or CI is set): apt-get install openssl redis-tools, or run `make test-deps` (.ci/install-deps test)")
        return nil
    }
    return (openssl, cli)
}

@Suite("TLS: encryption in transit", .timeLimit(.minutes(3)))
struct TLSTests {
    @Test("redis-cli --tls with a client certificate; without one refused under --tls-auth-clients yes, accepted under no",
          .enabled(if: tlsToolsAvailable, "openssl or redis-cli is not installed (apt-get install openssl redis-tools)"))
    func redisCLIOverTLS() throws {
        guard let cli = requireTLSTools()?.cli else { return }
        let sandbox = try Sandbox()
        let certificates = try TestCertificates(sandbox)
        let (server, tlsPort) = try tlsServer(sandbox, certificates)
        let withCertificate = ["-p", String(tlsPort), "--tls", "--cacert", certificates.caCertificate,
                               "--cert", certificates.clientCertificate, "--key", certificates.clientKey]
        let set = try ExternalTool.run(cli, withCertificate + ["SET", "secret", "over tls"], sandbox: sandbox)
        #expect(set.termination == .exited(0) && set.stdout.text == "OK\n", "\(set.summary)")
        let get = try ExternalTool.run(cli, withCertificate + ["GET", "secret"], sandbox: sandbox)
        #expect(get.stdout.text == "over tls\n", "\(get.summary)")
        // The plain port serves the same store.
        #expect(try RedisConnection(port: server.port).call("GET", "secret") == .text("over tls"))

        // No client certificate: the server ends the handshake (Redis's default, tls-auth-clients yes).
        let anonymous = try ExternalTool.run(cli, ["-p", String(tlsPort), "--tls", "--cacert", certificates.caCertificate, "PING"], sandbox: sandbox)
        #expect(!anonymous.stdout.text.contains("PONG"), "\(anonymous.summary)")
        #expect(anonymous.stdout.text.contains("rror") || anonymous.stderr.text.contains("rror") || anonymous.termination != .exited(0),
                "\(anonymous.summary)")
        // A certificate from another CA is refused too.
        let foreign = try ExternalTool.run(cli, ["-p", String(tlsPort), "--tls", "--cacert", certificates.caCertificate,
                                                 "--cert", certificates.otherCA, "--key", certificates.otherKey, "PING"],
                                           sandbox: sandbox)
        #expect(!foreign.stdout.text.contains("PONG"), "\(foreign.summary)")
        // The client checks the server: a CA that did not sign the server's certificate fails, as with Redis.
        let wrongCA = try ExternalTool.run(cli, withCertificate.map { $0 == certificates.caCertificate ? certificates.otherCA : $0 } + ["PING"],
                                           sandbox: sandbox)
        #expect(!wrongCA.stdout.text.contains("PONG") && (wrongCA.stdout.text + wrongCA.stderr.text).contains("certificate verify failed"),
                "\(wrongCA.summary)")
        // The server goes on.
        let again = try ExternalTool.run(cli, withCertificate + ["PING"], sandbox: sandbox)
        #expect(again.stdout.text == "PONG\n", "\(again.summary)")
        #expect(try server.stop() == .exited(0))

        // --tls-auth-clients no: no certificate needed (and no CA either).
        let open = try tlsServer(sandbox, certificates, name: "open-data", options: ["--tls-auth-clients", "no"])
        let noCertificate = try ExternalTool.run(cli, ["-p", String(open.tlsPort), "--tls", "--cacert", certificates.caCertificate, "PING"],
                                                 sandbox: sandbox)
        #expect(noCertificate.stdout.text == "PONG\n", "\(noCertificate.summary)")
        #expect(try open.server.stop() == .exited(0))

        // optional: none is fine, a foreign one is not.
        let optional = try tlsServer(sandbox, certificates, name: "optional-data", options: ["--tls-auth-clients", "optional"])
        let none = try ExternalTool.run(cli, ["-p", String(optional.tlsPort), "--tls", "--cacert", certificates.caCertificate, "PING"],
                                        sandbox: sandbox)
        #expect(none.stdout.text == "PONG\n", "\(none.summary)")
        let good = try ExternalTool.run(cli, withCertificate.map { $0 == String(tlsPort) ? String(optional.tlsPort) : $0 } + ["PING"], sandbox: sandbox)
        #expect(good.stdout.text == "PONG\n", "\(good.summary)")
        let bad = try ExternalTool.run(cli, ["-p", String(optional.tlsPort), "--tls", "--cacert", certificates.caCertificate,
                                             "--cert", certificates.otherCA, "--key", certificates.otherKey, "PING"],
                                       sandbox: sandbox)
        #expect(!bad.stdout.text.contains("PONG"), "\(bad.summary)")
        #expect(try optional.server.stop() == .exited(0))
    }

    @Test("redis-py with ssl=True and a client certificate",
          .enabled(if: tlsToolsAvailable && (ExternalTool.python != nil || ExternalTool.required), "openssl, redis-cli or redis-py is not installed"))
    func redisPyOverTLS() throws {
        guard requireTLSTools() != nil else { return }
        guard let python = ExternalTool.python else {
            Issue.record("python3 with redis-py 5 or newer is required here: python3 -m pip install 'redis>=5'")
            return
        }
        let sandbox = try Sandbox()
        let certificates = try TestCertificates(sandbox)
        let (server, tlsPort) = try tlsServer(sandbox, certificates)
        let script = try sandbox.write("tls_check.py", #"""
            import sys
            import redis

            port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
            for protocol in (2, 3):
                r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, ssl=True, ssl_ca_certs=ca,
                                ssl_certfile=cert, ssl_keyfile=key, ssl_cert_reqs="required", socket_timeout=10)
                assert r.set(f"py{protocol}", "x" * 100000) is True
                assert r.get(f"py{protocol}") == b"x" * 100000
                p = r.pipeline(transaction=False)
                for i in range(1000):
                    p.set(f"k{i}", i)
                assert all(p.execute())
                assert r.dbsize() == 1000 + protocol - 1, r.dbsize()
                r.close()
            print("OK")
            """#)
        let result = try ExternalTool.run(python, [script, String(tlsPort), certificates.caCertificate, certificates.clientCertificate,
                                                   certificates.clientKey], sandbox: sandbox, timeout: .seconds(60))
        #expect(result.termination == .exited(0) && result.stdout.text == "OK\n", "\(result.summary)")
        #expect(try server.stop() == .exited(0))
    }

    @Test("a plain-TCP client on the TLS port gets nothing usable; the server goes on",
          .enabled(if: tlsToolsAvailable, "openssl or redis-cli is not installed (apt-get install openssl redis-tools)"))
    func plainClientOnTLSPort() throws {
        guard let cli = requireTLSTools()?.cli else { return }
        let sandbox = try Sandbox()
        let certificates = try TestCertificates(sandbox)
        let (server, tlsPort) = try tlsServer(sandbox, certificates)
        let plain = try RedisConnection(port: tlsPort)
        try plain.send(RedisConnection.encode(["PING"]))
        let answer = try plain.waitForClose()
        #expect(!answer.text.contains("PONG"), "\(escaped(answer))")
        let ping = try ExternalTool.run(cli, ["-p", String(tlsPort), "--tls", "--cacert", certificates.caCertificate,
                                              "--cert", certificates.clientCertificate, "--key", certificates.clientKey, "PING"], sandbox: sandbox)
        #expect(ping.stdout.text == "PONG\n", "\(ping.summary)")
        #expect(try RedisConnection(port: server.port).call("PING") == .simple("PONG"))
        #expect(try server.stop() == .exited(0))
    }

    @Test("SIGHUP reloads the certificate: a connection opened before keeps working, a new one gets the new certificate; a bad file keeps the old",
          .enabled(if: tlsToolsAvailable, "openssl or redis-cli is not installed (apt-get install openssl redis-tools)"))
    func reloadOnSIGHUP() throws {
        guard let openssl = requireTLSTools()?.openssl else { return }
        let sandbox = try Sandbox()
        let certificates = try TestCertificates(sandbox)
        let (server, tlsPort) = try tlsServer(sandbox, certificates)
        func servedSubject() throws -> String {
            let result = try ExternalTool.run(openssl, ["s_client", "-connect", "127.0.0.1:\(tlsPort)", "-CAfile", certificates.caCertificate,
                                                        "-cert", certificates.clientCertificate, "-key", certificates.clientKey,
                                                        "-verify_return_error"], sandbox: sandbox)
            let subject = result.stdout.text.split(separator: "\n").first { $0.hasPrefix("subject=") }
            return subject.map(String.init) ?? "no subject: \(result.summary)"
        }
        #expect(try servedSubject().contains("kvsh-server"))

        // A client connected before the reload, speaking RESP through s_client.
        let before = try PipedProcess(executable: openssl, arguments: [
            "s_client", "-connect", "127.0.0.1:\(tlsPort)", "-CAfile", certificates.caCertificate, "-cert", certificates.clientCertificate,
            "-key", certificates.clientKey, "-quiet", "-crlf", "-verify_return_error",
        ], environment: sandbox.environment(), directory: sandbox.root)
        defer {
            before.signal(SIGKILL)
            _ = try? before.finish(timeout: .seconds(5))
        }
        before.send("SET before 1\n")
        #expect(before.wait(timeout: .seconds(20)) { $0.stdout.text.contains("+OK") }, "\(before.stdout.text) \(before.stderr.text)")

        try certificates.rotateServerCertificate(subject: "kvsh-server-rotated", serial: 1002, sandbox: sandbox)
        server.process.signal(SIGHUP)
        #expect(server.process.wait(timeout: .seconds(20)) { $0.stderr.text.contains("TLS certificate reloaded") }, "\(server.process.stderr.text)")
        #expect(try servedSubject().contains("kvsh-server-rotated"))
        before.send("GET before\n")
        #expect(before.wait(timeout: .seconds(20)) { $0.stdout.text.contains("$1\r\n1\r\n") }, "\(before.stdout.text) \(before.stderr.text)")

        // A broken file: the reload is refused, logged, and the certificate in use stays.
        try Data("not a certificate\n".utf8).write(to: URL(fileURLWithPath: certificates.serverCertificate))
        server.process.signal(SIGHUP)
        #expect(server.process.wait(timeout: .seconds(20)) { $0.stderr.text.contains("TLS certificate reload failed") }, "\(server.process.stderr.text)")
        let failure = server.process.stderr.text.split(separator: "\n").first { $0.contains("TLS certificate reload failed") }
        #expect(failure?.contains("--tls-cert-file \(certificates.serverCertificate)") == true, "\(failure ?? "")")
        #expect(try servedSubject().contains("kvsh-server-rotated"))
        #expect(server.process.isRunning)
        #expect(try server.stop() == .exited(0))
    }

    @Test("--port 0 with --tls-port: TLS only, as Redis's port 0",
          .enabled(if: tlsToolsAvailable, "openssl or redis-cli is not installed (apt-get install openssl redis-tools)"))
    func tlsOnly() throws {
        guard let cli = requireTLSTools()?.cli else { return }
        let sandbox = try Sandbox()
        let certificates = try TestCertificates(sandbox)
        let tlsPort = try freePort()
        let process = try PipedProcess(arguments: [
            "serve", "--data-dir", sandbox.path("data"), "--port", "0", "--tls-port", String(tlsPort),
            "--tls-cert-file", certificates.serverCertificate, "--tls-key-file", certificates.serverKey, "--tls-auth-clients", "no",
        ], environment: sandbox.environment(), directory: sandbox.root)
        #expect(process.wait(timeout: .seconds(20)) { $0.stderr.text.contains("kvsh server listening") }, "\(process.stderr.text)")
        let listening = process.stderr.text.split(separator: "\n").first { $0.contains("kvsh server listening") } ?? ""
        #expect(listening.contains("address=-") && listening.contains("tls-address=[IPv4]127.0.0.1/127.0.0.1:\(tlsPort)"), "\(listening)")
        let ping = try ExternalTool.run(cli, ["-p", String(tlsPort), "--tls", "--cacert", certificates.caCertificate, "PING"], sandbox: sandbox)
        #expect(ping.stdout.text == "PONG\n", "\(ping.summary)")
        // INFO and CONFIG GET say port 0, as Redis does with TLS only (the TLS port was once reported as tcp_port).
        let info = try ExternalTool.run(cli, ["-p", String(tlsPort), "--tls", "--cacert", certificates.caCertificate, "INFO", "server"], sandbox: sandbox)
        #expect(info.stdout.text.contains("tcp_port:0\r\n"), "\(info.summary)")
        let config = try ExternalTool.run(cli, ["-p", String(tlsPort), "--tls", "--cacert", certificates.caCertificate, "CONFIG", "GET", "port"],
                                          sandbox: sandbox)
        #expect(config.stdout.text == "port\n0\n", "\(config.summary)")
        process.signal(SIGTERM)
        #expect(try process.finish(timeout: .seconds(20)) == .exited(0))

        // Beyond loopback without a password but with client certificates required: the warning says who can connect.
        let exposed = try PipedProcess(arguments: [
            "serve", "--data-dir", sandbox.path("exposed"), "--bind", "0.0.0.0", "--protected-mode", "no", "--port", "0",
            "--tls-port", String(try freePort()), "--tls-cert-file", certificates.serverCertificate, "--tls-key-file", certificates.serverKey,
            "--tls-ca-cert-file", certificates.caCertificate, "--tls-auth-clients", "yes",
        ], environment: sandbox.environment(), directory: sandbox.root)
        #expect(exposed.wait(timeout: .seconds(20)) { $0.stderr.text.contains("only clients with a certificate signed by --tls-ca-cert-file") },
                "\(exposed.stderr.text)")
        #expect(!exposed.stderr.text.contains("anyone who can reach"), "\(exposed.stderr.text)")
        exposed.signal(SIGTERM)
        #expect(try exposed.finish(timeout: .seconds(20)) == .exited(0))
    }

    @Test("bad TLS settings refuse to start (exit 2), naming the flag and the file")
    func startupErrors() throws {
        guard TestCertificates.openssl != nil else {
            if ExternalTool.required { Issue.record("openssl is required here: apt-get install openssl") }
            return
        }
        let sandbox = try Sandbox()
        let certificates = try TestCertificates(sandbox)
        let port = try freePort(), tlsPort = try freePort()
        func serve(_ options: [String]) throws -> RunResult {
            try sandbox.run(["serve", "--data-dir", sandbox.path("data"), "--port", String(port), "--tls-port", String(tlsPort)] + options)
        }
        let missing = sandbox.path("missing.crt")
        let cases: [([String], String)] = [
            (["--tls-cert-file", missing, "--tls-key-file", certificates.serverKey, "--tls-ca-cert-file", certificates.caCertificate],
             "--tls-cert-file \(missing): No such file or directory"),
            (["--tls-cert-file", certificates.serverCertificate, "--tls-key-file", certificates.serverCertificate,
              "--tls-ca-cert-file", certificates.caCertificate], "--tls-key-file \(certificates.serverCertificate)"),
            (["--tls-cert-file", certificates.serverCertificate, "--tls-key-file", certificates.clientKey,
              "--tls-ca-cert-file", certificates.caCertificate], "cannot be used together"),
            (["--tls-cert-file", certificates.serverCertificate, "--tls-key-file", certificates.serverKey, "--tls-ca-cert-file", missing],
             "--tls-ca-cert-file \(missing): No such file or directory"),
            (["--tls-cert-file", certificates.serverCertificate, "--tls-key-file", certificates.serverKey], "--tls-ca-cert-file must be given"),
            (["--tls-key-file", certificates.serverKey], "--tls-port needs --tls-cert-file and --tls-key-file"),
        ]
        for (options, message) in cases {
            let result = try serve(options)
            #expect(result.termination == .exited(2), "\(options): \(result.summary)")
            #expect(result.stderr.text.contains(message), "\(options): \(result.summary)")
        }
    }

    @Test("replication over TLS: a kvsh replica and a redis-server replica of a kvsh primary",
          .enabled(if: tlsToolsAvailable && (ExternalTool.path("redis-server") != nil || ExternalTool.required), "openssl, redis-cli or redis-server is missing"))
    func replicationOverTLS() throws {
        guard requireTLSTools() != nil else { return }
        let sandbox = try Sandbox()
        let certificates = try TestCertificates(sandbox)
        let (primary, primaryTLS) = try tlsServer(sandbox, certificates, name: "primary")
        let writer = try RedisConnection(port: primary.port)
        _ = try writer.call("SET", "before", "sync")
        let replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: [
            "--replicaof", "127.0.0.1", String(primaryTLS), "--tls-replication", "yes", "--tls-cert-file", certificates.serverCertificate,
            "--tls-key-file", certificates.serverKey, "--tls-ca-cert-file", certificates.caCertificate,
        ])
        defer { _ = try? replica.stop() }
        let redis = try RedisServerProcess(sandbox, name: "redis", options: [
            "--tls-port", String(try freePort()), "--tls-cert-file", certificates.serverCertificate, "--tls-key-file", certificates.serverKey,
            "--tls-ca-cert-file", certificates.caCertificate, "--tls-replication", "yes", "--replicaof", "127.0.0.1", String(primaryTLS),
        ])
        _ = try writer.call("SET", "after", "sync")
        #expect(try writer.call("WAIT", "2", "20000") == .integer(2))
        for port in [replica.port, redis.port] {
            #expect(try eventuallyTrue {
                let connection = try RedisConnection(port: port)
                return try connection.call("GET", "before") == .text("sync") && connection.call("GET", "after") == .text("sync")
            }, "replica on port \(port)")
        }
        #expect(try primary.stop() == .exited(0))
    }

    @Test("kvsh --connect --tls: a client certificate, a pipelined script, --insecure, a wrong CA and a plain port as redis-cli",
          .enabled(if: tlsToolsAvailable, "openssl or redis-cli is not installed (apt-get install openssl redis-tools)"))
    func shellOverTLS() throws {
        guard requireTLSTools() != nil else { return }
        let sandbox = try Sandbox()
        let certificates = try TestCertificates(sandbox)
        let (server, tlsPort) = try tlsServer(sandbox, certificates)
        let address = "127.0.0.1:\(tlsPort)"
        let identity = ["--cert", certificates.clientCertificate, "--key", certificates.clientKey]
        let verified = ["--connect", address, "--tls", "--cacert", certificates.caCertificate] + identity

        let set = try sandbox.run(verified + ["SET", "k", "over tls"])
        #expect(set.termination == .exited(0) && set.stdout.text == "OK\n", "\(set.summary)")
        #expect(try RedisConnection(port: server.port).call("GET", "k") == .text("over tls"))
        // A pipelined script with values larger than the socket buffers: back-pressure through the tunnel both ways.
        let big = String(repeating: "v", count: 1 << 20)
        var script = ""
        for index in 0..<200 { script += "SET key:\(index) \(index)\n" }
        script += "SET big \(big)\nGET big\nDBSIZE\n"
        let piped = try sandbox.run(verified, input: Array(script.utf8))
        #expect(piped.termination == .exited(0), "\(piped.summary)")
        let lines = piped.stdout.text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 204 && lines[201] == big && lines[202] == "202", "\(lines.count) lines; stderr: \(piped.stderr.text)")

        // The server's certificate is not from the CA given: refused, in redis-cli's words.
        let wrongCA = try sandbox.run(["--connect", address, "--tls", "--cacert", certificates.otherCA] + identity + ["PING"])
        #expect(wrongCA.termination == .exited(2), "\(wrongCA.summary)")
        #expect(wrongCA.stderr.text.contains("cannot connect to \(address): SSL_connect failed: certificate verify failed"), "\(wrongCA.summary)")
        // --insecure: not verified, still encrypted.
        let insecure = try sandbox.run(["--connect", address, "--tls", "--insecure", "--cacert", certificates.otherCA] + identity + ["GET", "k"])
        #expect(insecure.termination == .exited(0) && insecure.stdout.text == "over tls\n", "\(insecure.summary)")
        // --sni is sent and accepted (the server has one certificate for every name).
        let sni = try sandbox.run(verified + ["--sni", "localhost", "PING"])
        #expect(sni.stdout.text == "PONG\n", "\(sni.summary)")
        // No client certificate on a server that requires one: the server ends the connection.
        let anonymous = try sandbox.run(["--connect", address, "--tls", "--cacert", certificates.caCertificate, "PING"])
        #expect(anonymous.termination != .exited(0) && !anonymous.stdout.text.contains("PONG"), "\(anonymous.summary)")
        // TLS to the plain port, and plain to the TLS port.
        let tlsToPlain = try sandbox.run(["--connect", "127.0.0.1:\(server.port)", "--tls", "--cacert", certificates.caCertificate] + identity + ["PING"])
        #expect(tlsToPlain.termination == .exited(2) && tlsToPlain.stderr.text.contains("SSL_connect failed"), "\(tlsToPlain.summary)")
        let plainToTLS = try sandbox.run(["--connect", address, "PING"])
        #expect(plainToTLS.termination != .exited(0) && !plainToTLS.stdout.text.contains("PONG"), "\(plainToTLS.summary)")
        #expect(plainToTLS.stderr.text.contains("the server speaks TLS on this port: connect with --tls"), "\(plainToTLS.summary)")
        // Files that cannot be used, and flags without --tls.
        let missing = try sandbox.run(["--connect", address, "--tls", "--cacert", sandbox.path("nope.crt"), "PING"])
        #expect(missing.termination == .exited(2) && missing.stderr.text.contains("--cacert \(sandbox.path("nope.crt")): No such file or directory"),
                "\(missing.summary)")
        let noTLS = try sandbox.run(["--connect", address, "--cacert", certificates.caCertificate, "PING"])
        #expect(noTLS.termination == .exited(2) && noTLS.stderr.text.contains("need --tls"), "\(noTLS.summary)")
        #expect(try server.stop() == .exited(0))
    }
}
