// kvsh's command line as a whole: the subcommands registered on the root command (listed by --help, with their own
// help through `kvsh help SUBCOMMAND` and `kvsh SUBCOMMAND --help`), the store options they share with the shell,
// and their usage errors.

import Foundation
import Testing

@Suite("kvsh's command line and its subcommands", .timeLimit(.minutes(10)))
struct CommandLineTests {
    static let subcommands = ["serve", "backup", "restore", "check"]
    /// The store options the shell and kvsh serve share (one option group), with the defaults --help shows.
    static let sharedStoreOptions = ["--data-dir", "--sync", "--compact-min-size", "--compact-ratio",
                                     "--backup-dir", "--backup-every", "--backup-keep"]

    @Test("kvsh --help lists the subcommands serve, backup, restore and check", arguments: ["--help", "-?"])
    func helpListsSubcommands(flag: String) throws {
        let sandbox = try Sandbox()
        let result = try sandbox.run([flag])
        #expect(result.termination == .exited(0) && result.stderr.isEmpty, "kvsh \(flag): \(result.summary)")
        let lines = result.stdoutLines
        let section = try #require(lines.firstIndex(of: "SUBCOMMANDS:"), "no SUBCOMMANDS section: \(result.summary)")
        let listed = lines[(section + 1)...].compactMap { line -> String? in
            let words = line.split(separator: " ")
            return line.hasPrefix("  ") && !line.hasPrefix("   ") ? words.first.map(String.init) : nil
        }
        for name in Self.subcommands {
            #expect(listed.contains(name), "kvsh \(flag) does not list \(name): \(listed)")
        }
        #expect(result.stdout.text.contains("kvsh help <subcommand>"), "\(result.summary)")
        // The shell's own options are still there, with the compaction default as the engine has it.
        for option in Self.sharedStoreOptions + ["--connect", "--format", "--file"] {
            #expect(result.stdout.text.contains(option), "kvsh \(flag) does not show \(option)")
        }
        #expect(result.stdout.text.contains("(default: 64M)"), "the compaction minimum's default: \(result.summary)")
        #expect(!exists(sandbox.path("kvsh-data")), "kvsh \(flag) created ./kvsh-data")
    }

    @Test("kvsh help serve and kvsh serve --help show serve's options, the shared store options among them",
          arguments: [["help", "serve"], ["serve", "--help"], ["serve", "-h"]])
    func serveHelp(arguments: [String]) throws {
        let sandbox = try Sandbox()
        let result = try sandbox.run(arguments)
        let text = result.stdout.text
        #expect(result.termination == .exited(0) && result.stderr.isEmpty, "kvsh \(arguments): \(result.summary)")
        #expect(text.contains("USAGE: kvsh serve"), "kvsh \(arguments): \(result.summary)")
        for option in Self.sharedStoreOptions + ["--bind", "--port", "--maxclients", "--enable-path-commands"] {
            #expect(text.contains(option), "kvsh \(arguments) does not show \(option): \(result.summary)")
        }
        #expect(text.contains("(default: 64M)") && text.contains("default: always") && text.contains("default: 24)"),
                "the store options' defaults: \(result.summary)")
        #expect(!text.contains("SUBCOMMANDS:") && !text.contains("--connect"), "the shell's help, not serve's: \(result.summary)")
        #expect(!exists(sandbox.path("kvsh-data")), "kvsh \(arguments) created ./kvsh-data")
    }

    @Test("kvsh help SUBCOMMAND is that subcommand's help", arguments: subcommands)
    func helpForEach(name: String) throws {
        let sandbox = try Sandbox()
        let viaHelp = try sandbox.run(["help", name])
        let viaFlag = try sandbox.run([name, "--help"])
        #expect(viaHelp.termination == .exited(0) && viaHelp.stdout.text.contains("USAGE: kvsh \(name)"), "\(viaHelp.summary)")
        #expect(viaHelp.stdout == viaFlag.stdout && viaFlag.termination == .exited(0), "kvsh \(name) --help: \(viaFlag.summary)")
        #expect(viaHelp.stdout.text.contains("--data-dir"), "\(viaHelp.summary)")
    }

    @Test("kvsh help alone is kvsh --help")
    func helpAlone() throws {
        let sandbox = try Sandbox()
        let help = try sandbox.run(["help"])
        let flag = try sandbox.run(["--help"])
        #expect(help.termination == .exited(0) && help.stdout == flag.stdout, "\(help.summary)")
    }

    @Test("usage errors in a subcommand exit 2 with one line pointing to its help", arguments: [
        ["serve", "--no-such-flag"],
        ["serve", "--port", "99999"],
        ["serve", "--sync", "sometimes"],
        ["serve", "--compact-min-size", "lots"],
        ["serve", "--backup-every", "1h"],
        ["serve", "--backup-keep", "0"],
        ["backup"],
        ["backup", "--no-such-flag", "out.kvbak"],
        ["restore"],
        ["check", "--salvage"],
        ["check", "--data-dir"],
    ])
    func subcommandUsageErrors(arguments: [String]) throws {
        let sandbox = try Sandbox()
        let result = try sandbox.run(arguments)
        expectRefusal(result)
        let line = result.stderrLines.first ?? ""
        #expect(line.hasSuffix("(see kvsh \(arguments[0]) --help)"), "the line should point to kvsh \(arguments[0]) --help: \(line)")
        #expect(!exists(sandbox.path("kvsh-data")), "a usage error created the data directory ./kvsh-data")
    }

    @Test("kvsh help with an unknown subcommand, or more than one, is a usage error",
          arguments: [["help", "nope"], ["help", "serve", "check"]])
    func helpUsageErrors(arguments: [String]) throws {
        let sandbox = try Sandbox()
        let result = try sandbox.run(arguments)
        expectRefusal(result)
        #expect(result.stderrLines.first?.hasSuffix("(see kvsh --help)") == true, "\(result.summary)")
    }

    @Test("a subcommand name after an option is a one-shot command, as before (no subcommand is found there)")
    func subcommandNameAfterOption() throws {
        let sandbox = try Sandbox()
        let result = try sandbox.run(["--data-dir", sandbox.dataDir, "check"])
        #expect(result.termination == .exited(1), "\(result.summary)")
        #expect(result.stderrText.contains("unknown command 'check'"), "\(result.summary)")
    }

    @Test("the shell and kvsh serve take the same store options and the same values",
          arguments: [["--sync", "everysec"], ["--compact-min-size", "1M"], ["--compact-ratio", "0"]])
    func sharedStoreOptionsWork(option: [String]) throws {
        let sandbox = try Sandbox()
        let shell = try sandbox.run(["--data-dir", sandbox.dataDir] + option + ["SET", "k", "v"])
        #expect(shell.termination == .exited(0) && shell.stdoutLines == ["OK"], "kvsh \(option): \(shell.summary)")
        // kvsh serve parses them too (it then fails on its port: the check is the parse, not the server).
        let serve = try sandbox.run(["serve", "--data-dir", sandbox.path("server-data"), "--port", "99999"] + option)
        #expect(serve.stderrLines.first?.contains("--port must be between") == true, "kvsh serve \(option): \(serve.summary)")
    }
}
