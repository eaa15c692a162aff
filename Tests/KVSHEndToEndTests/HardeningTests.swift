import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

private let isRoot = geteuid() == 0

/// Mounts `source` read-only at `target` (a bind mount) for as long as `body` runs.
private func withReadOnlyMount(_ source: String, at target: String, _ body: () throws -> Void) throws {
    guard mkdir(target, 0o700) == 0, mount(source, target, nil, UInt(MS_BIND), nil) == 0 else {
        throw HarnessError("bind mount: \(String(cString: strerror(errno)))")
    }
    defer { umount2(target, Int32(MNT_DETACH)) }
    guard mount(source, target, nil, UInt(MS_BIND | MS_REMOUNT | MS_RDONLY), nil) == 0 else {
        throw HarnessError("remount read-only: \(String(cString: strerror(errno)))")
    }
    try body()
}

@Suite("Hardening: paths, other users, files that cannot be written")
struct HardeningEndToEndTests {
    /// `:backup "DIR/000001.log\x00/x/y"` was checked as the whole string and written to `DIR/000001.log`: the live
    /// log became an image, later writes went to an unlinked file and the store no longer opened.
    @Test("a NUL byte in a :backup path is refused and the store keeps working and opening")
    func nulInBackupPath() throws {
        let sandbox = try Sandbox()
        let log = sandbox.dataDir + "/000001.log"
        let result = try sandbox.kvsh(script: "SET a 1\n:backup \"\(log)\\x00/x/y\"\nSET b 2\n")
        #expect(result.termination == .exited(1), "\(result.summary)")
        #expect(result.stderrLines == ["kvsh: line 2: ERR path '\(log)\\x00/x/y' contains a NUL byte, which no file name can hold"],
                "\(result.summary)")
        let reopened = try sandbox.kvsh(script: "GET a\nGET b\n")
        #expect(reopened.termination == .exited(0) && reopened.stdoutLines == ["1", "2"], "\(reopened.summary)")
    }

    /// Loopback does not separate the users of one machine: as `nobody`, KVSH.BACKUP wrote into a root-only
    /// directory and KVSH.REBUILD read a root-only file into the store, where GET showed it.
    @Test("by default no client may name a file, not even from loopback; --backup-dir takes backups without one",
          .enabled(if: isRoot, "needs root to run a client as another user"))
    func pathCommandsOffByDefault() throws {
        let sandbox = try Sandbox()
        let backups = sandbox.path("backups")
        let server = try ServerProcess(sandbox, options: ["--backup-dir", backups])
        defer { _ = try? server.stop() }
        let secret = try sandbox.write("secret.json", "{\"operation\":\"SET\",\"key\":\"stolen\",\"value\":\"root's secret\"}\n")
        let planted = sandbox.path("planted.kvbak")
        for attempt in [["KVSH.BACKUP", planted], ["KVSH.REBUILD", secret], ["KVSH.BACKUP", planted, "FORCE"]] {
            let asNobody = try sandbox.runAsNobody(["--connect", server.address] + attempt)
            #expect(asNobody.termination == .exited(1), "\(asNobody.summary)")
            #expect(asNobody.stderrText.contains("with a path is not allowed. If the enable-path-commands option is set to \"local\""),
                    "\(asNobody.summary)")
            let asRoot = try sandbox.run(["--connect", server.address] + attempt)
            #expect(asRoot.termination == .exited(1) && asRoot.stderrText.contains("is not allowed"), "\(asRoot.summary)")
        }
        #expect(!exists(planted))
        let get = try sandbox.run(["--connect", server.address, "GET", "stolen"])
        #expect(get.stdoutLines == [""] || get.stdout.isEmpty, "\(get.summary)")

        let backup = try sandbox.run(["--connect", server.address, "KVSH.BACKUP"])
        #expect(backup.termination == .exited(0) && backup.stdout.text.hasPrefix("backup written to \(backups)/kvsh-backup-"),
                "\(backup.summary)")
        let taken = try FileManager.default.contentsOfDirectory(atPath: backups)
        #expect(taken.count == 1 && taken.allSatisfy { permissions(backups + "/" + $0) == 0o600 }, "\(taken)")
        #expect(permissions(backups) == 0o700)
        let config = try sandbox.run(["--connect", server.address, "CONFIG", "GET", "enable-path-commands"])
        #expect(config.stdoutLines == ["enable-path-commands", "no"], "\(config.summary)")
    }

    @Test("--enable-path-commands local lets loopback clients name files; a bad value is a usage error")
    func pathCommandsLocal() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox, options: ["--enable-path-commands", "local"])
        defer { _ = try? server.stop() }
        let target = sandbox.path("copy.kvbak")
        let first = try sandbox.run(["--connect", server.address, "KVSH.BACKUP", target])
        #expect(first.termination == .exited(0) && exists(target), "\(first.summary)")
        let again = try sandbox.run(["--connect", server.address, "KVSH.BACKUP", target])
        #expect(again.termination == .exited(1) && again.stderrText.contains("already exists"), "\(again.summary)")
        let noDirectory = try sandbox.run(["--connect", server.address, "KVSH.BACKUP"])
        #expect(noDirectory.termination == .exited(1) && noDirectory.stderrText.contains("--backup-dir"), "\(noDirectory.summary)")

        let bad = try sandbox.run(["serve", "--data-dir", sandbox.path("other"), "--enable-path-commands", "maybe"])
        #expect(bad.termination == .exited(2), "\(bad.summary)")
    }

    @Test("a backup from the shell replaces an existing file only with --force")
    func shellBackupForce() throws {
        let sandbox = try Sandbox()
        let target = try sandbox.write("notes.txt", "mine\n")
        let refused = try sandbox.kvsh(script: "SET a 1\n:backup \(target)\n")
        #expect(refused.termination == .exited(1), "\(refused.summary)")
        #expect(refused.stderrLines == ["kvsh: line 2: ERR '\(target)' already exists; choose another name, or pass --force to replace it"],
                "\(refused.summary)")
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "mine\n")
        let forced = try sandbox.kvsh(script: ":backup \(target) --force\n")
        #expect(forced.termination == .exited(0) && forced.stdout.text.hasPrefix("backup written to \(target)"), "\(forced.summary)")
        let subcommand = try sandbox.run(["backup", "--data-dir", sandbox.dataDir, target])
        #expect(subcommand.termination == .exited(2) && subcommand.stderrText.contains("already exists"), "\(subcommand.summary)")
    }

    @Test("a store on a read-only file system: GET, kvsh check and kvsh backup work with a note; SET is refused",
          .enabled(if: isRoot, "needs root to mount"))
    func readOnlyStore() throws {
        let sandbox = try Sandbox()
        let setup = try sandbox.kvsh(script: "SET k v\n")
        #expect(setup.termination == .exited(0), "\(setup.summary)")
        let readOnly = sandbox.path("ro")
        try withReadOnlyMount(sandbox.dataDir, at: readOnly) {
            let get = try sandbox.run(["--data-dir", readOnly, "GET", "k"])
            #expect(get.termination == .exited(0) && get.stdoutLines == ["v"], "\(get.summary)")
            #expect(get.stderrText.contains("note: opened read-only") && get.stderrText.contains("Read-only file system"), "\(get.summary)")
            let set = try sandbox.run(["--data-dir", readOnly, "SET", "k", "w"])
            #expect(set.termination == .exited(1) && set.stderrText.contains("writes are refused"), "\(set.summary)")
            let check = try sandbox.run(["check", "--data-dir", readOnly])
            #expect(check.termination == .exited(0) && check.stderrText.contains("note: checking read-only"), "\(check.summary)")
            let backup = try sandbox.run(["backup", "--data-dir", readOnly, sandbox.path("out.kvbak")])
            #expect(backup.termination == .exited(0) && exists(sandbox.path("out.kvbak")), "\(backup.summary)")
        }
    }

    /// The server's last fsync (or an earlier failed write) at shutdown was swallowed and the exit status was 0.
    @Test("kvsh serve exits 1 when its store cannot be closed cleanly (a write failed on a full disk)",
          .enabled(if: isRoot, "needs root to mount a small file system"))
    func serveReportsFailedClose() throws {
        let sandbox = try Sandbox()
        let small = sandbox.path("small")
        guard mkdir(small, 0o700) == 0, mount("tmpfs", small, "tmpfs", 0, "size=512k,mode=0700") == 0 else {
            throw HarnessError("mount tmpfs: \(String(cString: strerror(errno)))")
        }
        defer { umount2(small, Int32(MNT_DETACH)) }
        let server = try ServerProcess(sandbox, dataDir: small, options: ["--sync", "everysec"])
        let value = String(repeating: "x", count: 200_000)
        let script = (1...4).map { "SET k\($0) \(value)\n" }.joined()
        let writes = try sandbox.run(["--connect", server.address], input: Array(script.utf8))
        #expect(writes.termination == .exited(1) && writes.stderrText.contains("No space left on device"), "\(writes.summary)")
        let ended = try server.stop()
        #expect(ended == .exited(1), "\(server.process.stderr.text)")
        #expect(server.process.stderr.text.contains("closing the store failed"), "\(server.process.stderr.text)")
    }
}
