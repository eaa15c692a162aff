// Encryption at rest through the kvsh binary: keygen, --encryption-key-file on the shell, check, backup, restore and
// rekey, and the refusals (exit 2, one line naming the file and what to do).

import Foundation
import RESP
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Makes a key with `kvsh keygen` in the sandbox and returns its path (for the encrypted runs of the kill -9 tests too).
func makeKeyFile(_ sandbox: Sandbox, _ name: String = "store.key") throws -> String {
    let path = sandbox.path(name)
    let result = try sandbox.run(["keygen", path])
    #expect(result.termination == .exited(0), "keygen: \(result.summary)")
    return path
}

@Suite("kvsh encryption at rest", .timeLimit(.minutes(2)))
struct EncryptionEndToEndTests {
    @Test("kvsh keygen writes 32 bytes with mode 0600 and refuses to replace a file")
    func keygenMode() throws {
        let sandbox = try Sandbox()
        let key = try makeKeyFile(sandbox)
        #expect(permissions(key) == 0o600)
        #expect(fileSize(key) == 32)
        let before = try Data(contentsOf: URL(fileURLWithPath: key))
        expectRefusal(try sandbox.run(["keygen", key]), mentioning: ["already exists"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: key)) == before)
    }

    @Test("an encrypted store through the shell, check, backup and restore with the key")
    func roundTrip() throws {
        let sandbox = try Sandbox()
        let key = try makeKeyFile(sandbox)
        let write = try sandbox.kvsh(["--encryption-key-file", key], script: "SET city Lisbon\nSET river Tagus\n")
        #expect(write.termination == .exited(0), "\(write.summary)")
        let read = try sandbox.kvsh(["--encryption-key-file", key], script: "GET city\nGET river\n")
        #expect(read.stdoutLines == ["Lisbon", "Tagus"], "\(read.summary)")

        let check = try sandbox.run(["check", "--data-dir", sandbox.dataDir, "--encryption-key-file", key])
        #expect(check.termination == .exited(0), "\(check.summary)")

        let backup = sandbox.path("b.kvbak")
        let made = try sandbox.run(["backup", "--data-dir", sandbox.dataDir, "--encryption-key-file", key, backup])
        #expect(made.termination == .exited(0), "\(made.summary)")
        let contents = try Data(contentsOf: URL(fileURLWithPath: backup))
        #expect(contents.range(of: Data("Lisbon".utf8)) == nil, "the backup shows a value in clear")
        let restored = sandbox.path("restored")
        let restore = try sandbox.run(["restore", backup, "--data-dir", restored, "--encryption-key-file", key])
        #expect(restore.termination == .exited(0), "\(restore.summary)")
        let again = try sandbox.run(["--data-dir", restored, "--encryption-key-file", key, "GET", "river"])
        #expect(again.stdoutLines == ["Tagus"], "\(again.summary)")
        // The backup needs its key too.
        expectRefusal(try sandbox.run(["restore", backup, "--data-dir", sandbox.path("nokey")]), mentioning: ["encrypted", "--encryption-key-file"])
    }

    @Test("a wrong key, a missing key, a key for a plain store and an unsafe key file each exit 2 with one line")
    func refusals() throws {
        let sandbox = try Sandbox()
        let key = try makeKeyFile(sandbox)
        let other = try makeKeyFile(sandbox, "other.key")
        #expect(try sandbox.kvsh(["--encryption-key-file", key], script: "SET a 1\n").termination == .exited(0))

        expectRefusal(try sandbox.kvsh(["--encryption-key-file", other], script: "GET a\n"), mentioning: ["another key", other])
        expectRefusal(try sandbox.kvsh(script: "GET a\n"), mentioning: ["is encrypted", "--encryption-key-file"])
        expectRefusal(try sandbox.run(["check", "--data-dir", sandbox.dataDir]), mentioning: ["is encrypted"])
        expectRefusal(try sandbox.run(["check", "--data-dir", sandbox.dataDir, "--encryption-key-file", other]), mentioning: ["another key"])

        let plain = sandbox.path("plain")
        #expect(try sandbox.run(["--data-dir", plain, "SET", "a", "1"]).termination == .exited(0))
        expectRefusal(try sandbox.run(["--data-dir", plain, "--encryption-key-file", key, "GET", "a"]),
                      mentioning: ["is not encrypted", "rekey"])

        #expect(chmod(key, 0o644) == 0)
        expectRefusal(try sandbox.kvsh(["--encryption-key-file", key], script: "GET a\n"), mentioning: [key, "chmod 600"])
        let short = sandbox.path("short.key")
        try sandbox.write("short.key", "too short")
        #expect(chmod(short, 0o600) == 0)
        expectRefusal(try sandbox.kvsh(["--encryption-key-file", short], script: "GET a\n"), mentioning: ["9 bytes", "keygen"])
        expectRefusal(try sandbox.kvsh(["--encryption-key-file", sandbox.path("nope.key")], script: "GET a\n"), mentioning: ["keygen"])
        // The refusals changed nothing: the right key still opens the store.
        #expect(chmod(key, 0o600) == 0)
        let read = try sandbox.kvsh(["--encryption-key-file", key], script: "GET a\n")
        #expect(read.stdoutLines == ["1"], "\(read.summary)")
    }

    @Test("kvsh rekey: afterwards the old key is refused, the new one reads everything")
    func rekey() throws {
        let sandbox = try Sandbox()
        let old = try makeKeyFile(sandbox, "old.key")
        let new = try makeKeyFile(sandbox, "new.key")
        let script = (0..<300).map { "SET k\($0) v\($0)\n" }.joined()
        #expect(try sandbox.kvsh(["--encryption-key-file", old], script: script).termination == .exited(0))
        let rekey = try sandbox.run(["rekey", "--data-dir", sandbox.dataDir, "--encryption-key-file", old, "--new-key-file", new])
        #expect(rekey.termination == .exited(0), "\(rekey.summary)")
        expectRefusal(try sandbox.kvsh(["--encryption-key-file", old], script: "GET k0\n"), mentioning: ["another key"])
        let read = try sandbox.kvsh(["--encryption-key-file", new], script: (0..<300).map { "GET k\($0)\n" }.joined())
        #expect(read.stdoutLines == (0..<300).map { "v\($0)" }, "\(read.summary)")
    }

    @Test("online rekey: KVSH.REKEY on a serving server, then :rekey in the shell; writes go on, nothing is lost, the old key opens nothing")
    func onlineRekey() throws {
        let sandbox = try Sandbox()
        let old = try makeKeyFile(sandbox, "old.key"), new = try makeKeyFile(sandbox, "new.key"), newer = try makeKeyFile(sandbox, "newer.key")
        let server = try ServerProcess(sandbox, dataDir: sandbox.dataDir, options: ["--encryption-key-file", old, "--enable-path-commands", "local"])
        let client = try RedisConnection(port: server.port)
        for index in 0..<200 { #expect(try client.call("SET", "k\(index)", "v\(index)") == .simpleString("OK")) }
        let reply = try client.call("KVSH.REKEY", new, timeout: .seconds(30))
        guard case .bulkString(let text) = reply else { Issue.record("KVSH.REKEY replied \(reply)"); return }
        #expect(String(decoding: text, as: UTF8.self).hasPrefix("re-encrypted 200 keys with \(new) "), "\(String(decoding: text, as: UTF8.self))")
        for index in 200..<300 { #expect(try client.call("SET", "k\(index)", "v\(index)") == .simpleString("OK")) }
        #expect(try client.call("KVSH.REKEY", sandbox.path("missing.key")) != .simpleString("OK"))
        #expect(try server.stop() == .exited(0))
        expectRefusal(try sandbox.kvsh(["--encryption-key-file", old], script: "GET k0\n"), mentioning: ["another key"])

        let shell = try sandbox.kvsh(["--encryption-key-file", new], script: ":rekey \(newer)\nSET after yes\n")
        #expect(shell.termination == .exited(0) && shell.stdout.text.contains("re-encrypted 300 keys with \(newer) "), "\(shell.summary)")
        expectRefusal(try sandbox.kvsh(["--encryption-key-file", new], script: "GET k0\n"), mentioning: ["another key"])
        let read = try sandbox.kvsh(["--encryption-key-file", newer], script: (0..<300).map { "GET k\($0)\n" }.joined() + "GET after\n")
        #expect(read.stdoutLines == (0..<300).map { "v\($0)" } + ["yes"], "\(read.summary)")
    }
}
