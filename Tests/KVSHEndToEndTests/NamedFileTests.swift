// Named files that kvsh reads (`--file`, `:source`, `:rebuild PATH`, KVSH.REBUILD PATH): regular files only, an
// import in bounded memory, and a server that stops within its grace period while maintenance runs.
//
// Every server here starts through `ServerProcess` (ClientTests.swift), the one place to add flags to.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A Go StorageEngine JSON-lines log of `count` SETs, written to `path`.
private func writeGoLog(_ path: String, count: Int, valueSize: Int = 100) throws {
    let value = String(repeating: "v", count: valueSize)
    var text = ""
    text.reserveCapacity(count * (valueSize + 50))
    for i in 0..<count { text += "{\"operation\":\"SET\",\"key\":\"imported:\(i)\",\"value\":\"\(value)\"}\n" }
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

@Suite("Named files", .timeLimit(.minutes(10)))
struct NamedFileTests {
    @Test("kvsh --file FIFO fails at once with exit status 2 (a usage error, found before the store opens) and a clear error")
    func fileOptionRefusesFIFO() throws {
        let sandbox = try Sandbox()
        let fifo = sandbox.path("pipe")
        #expect(mkfifo(fifo, 0o600) == 0)
        let result = try sandbox.kvsh(["--file", fifo])
        #expect(result.termination == .exited(2), "\(result.summary)")
        #expect(!exists(sandbox.dataDir), "\(result.summary)")
        #expect(result.stderrText == "kvsh: '\(fifo)' is not a regular file (it is a FIFO); kvsh reads scripts and logs from regular files only\n",
                "\(result.summary)")
    }

    @Test("a script on standard input (a pipe) still runs")
    func scriptOnAPipeRuns() throws {
        let sandbox = try Sandbox()
        let result = try sandbox.kvsh(script: "SET a 1\nGET a\n")
        #expect(result.termination == .exited(0) && result.stdoutLines == ["OK", "1"], "\(result.summary)")
    }

    /// With its data segment limited to 512 MiB, kvsh must still refuse a 1 GiB sparse file at line 1: the import
    /// reads in bounded memory instead of loading the file.
    @Test(":rebuild of a 1 GiB sparse file is refused at line 1 within a 512 MiB memory limit")
    func sparseFileWithinMemoryLimit() throws {
        let sandbox = try Sandbox()
        let sparse = sandbox.path("sparse.log")
        let fd = open(sparse, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        #expect(fd >= 0)
        #expect(ftruncate(fd, 1 << 30) == 0)
        close(fd)
        let kvsh = try KVSHBinary.path()
        let process = try PipedProcess(executable: "/bin/sh",
                                       arguments: ["-c", "ulimit -d 524288 && exec \"$0\" --data-dir \"$1\"", kvsh, sandbox.dataDir],
                                       environment: sandbox.environment(), directory: sandbox.root)
        process.send(":rebuild \(sparse)\nEXISTS x\n")
        process.closeInput()
        let ended = try process.finish(timeout: .seconds(60))
        let stderr = process.stderr.text
        #expect(ended == .exited(1), "\(ended); stderr \"\(escaped(process.stderr))\"")
        #expect(stderr.contains("\(sparse): line 1: ") && stderr.contains("nothing was imported"), "\(stderr)")
        #expect(process.stdout.lines == ["0"], "\(escaped(process.stdout))")
    }

    @Test("KVSH.REBUILD of a FIFO gets an error at once; KVSH.COMPACT on another connection still works")
    func serverRefusesFIFO() throws {
        let sandbox = try Sandbox()
        let fifo = sandbox.path("pipe")
        #expect(mkfifo(fifo, 0o600) == 0)
        let server = try ServerProcess(sandbox, dataDir: sandbox.dataDir, options: ["--enable-path-commands", "local"])
        defer {
            let writer = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)  // lets a stuck open go, should it block
            if writer >= 0 { close(writer) }
        }
        let client = try RedisConnection(port: server.port)
        let reply = try client.call("KVSH.REBUILD", fifo)
        #expect(reply == .error("ERR '\(fifo)' is not a regular file (it is a FIFO); kvsh reads scripts and logs from regular files only"),
                "\(reply)")
        let other = try RedisConnection(port: server.port)
        #expect(try other.call("SET", "k", "v") == .simple("OK"))
        guard case .bulkString(let text) = try other.call("KVSH.COMPACT", timeout: .seconds(20)) else {
            Issue.record("KVSH.COMPACT did not reply with its report")
            return
        }
        #expect(text.text.hasPrefix("compacted"), "\(text.text)")
        #expect(try server.stop() == .exited(0))
    }

    /// SIGTERM while a KVSH.REBUILD runs (of a FIFO, which blocked forever before kvsh refused FIFOs, or of a large
    /// file, which takes a while): the server exits, and every acknowledged write is there after a restart.
    @Test("SIGTERM while KVSH.REBUILD runs: the server exits and keeps every acknowledged write",
          arguments: ["fifo", "large file"])
    func sigtermDuringImport(source: String) throws {
        let sandbox = try Sandbox()
        let path = sandbox.path(source == "fifo" ? "pipe" : "big.log")
        if source == "fifo" {
            #expect(mkfifo(path, 0o600) == 0)
        } else {
            try writeGoLog(path, count: 400_000)
        }
        defer {
            let writer = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            if writer >= 0 { close(writer) }
        }
        let server = try ServerProcess(sandbox, dataDir: sandbox.dataDir, options: ["--enable-path-commands", "local"])
        let writer = try RedisConnection(port: server.port)
        for i in 0..<50 { #expect(try writer.call("SET", "acknowledged:\(i)", String(i)) == .simple("OK")) }
        let importer = try RedisConnection(port: server.port)
        try importer.send(RedisConnection.encode(["KVSH.REBUILD", path]))
        // The import is on its way (or already refused); PING on the writer's connection is answered meanwhile.
        #expect(try writer.call("PING") == .simple("PONG"))

        server.process.signal(SIGTERM)
        let ended = try server.process.finish(timeout: .seconds(30))  // a failure bound, not a timing assertion
        #expect(ended == .exited(0), "\(ended); stderr \"\(escaped(server.process.stderr))\"")
        #expect(!server.process.stderr.text.lowercased().contains("fatal error"), "\(escaped(server.process.stderr))")

        let script = (0..<50).map { "GET acknowledged:\($0)\n" }.joined()
        let reopened = try sandbox.kvsh(script: script)
        #expect(reopened.termination == .exited(0), "\(reopened.summary)")
        #expect(reopened.stdoutLines == (0..<50).map(String.init), "acknowledged writes missing: \(reopened.summary)")
    }
}
