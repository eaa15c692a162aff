import KVTestSupport
import Testing
@testable import KVCommands
import RESP

@Suite("Maintenance commands, here and on a server")
struct MaintenanceCommandTests {
    private func words(_ text: String...) -> [[UInt8]] { text.map { Array($0.utf8) } }

    @Test("what a client sends is what the server reads back")
    func serverArgumentsRoundTrip() throws {
        let commands: [MaintenanceCommand] = [.stats, .compact, .check, .rebuild(path: nil), .rebuild(path: "/a b/log"),
                                              .backup(path: nil, replace: false), .backup(path: "/x.kvbak", replace: false),
                                              .backup(path: "/x.kvbak", replace: true)]
        for command in commands {
            #expect(try MaintenanceCommand(serverArguments: command.serverArguments) == command)
        }
        #expect(try MaintenanceCommand(serverArguments: words("kvsh.backup", "/x", "force")) == .backup(path: "/x", replace: true))
        #expect(try MaintenanceCommand(serverArguments: words("PING")) == nil)
    }

    @Test("bad KVSH.* arguments get Redis's arity and syntax errors")
    func badArguments() {
        #expect(throws: CommandError.self) { _ = try MaintenanceCommand(serverArguments: self.words("KVSH.STATS", "x")) }
        #expect(throws: CommandError.self) { _ = try MaintenanceCommand(serverArguments: self.words("KVSH.BACKUP", "/x", "NOW")) }
        #expect(throws: CommandError.self) { _ = try MaintenanceCommand(serverArguments: self.words("KVSH.REBUILD", "a", "b")) }
        do {
            _ = try MaintenanceCommand(serverArguments: words("KVSH.CHECK", "x"))
        } catch let error as CommandError {
            #expect(error.redisMessage == "ERR wrong number of arguments for 'kvsh.check' command")
            #expect(error.code == "ERR")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    /// `:check` on a server used to be judged by searching the report's text for "first problem": the verdict is a
    /// field of the reply now, in RESP3 (a map) and in RESP2 (the map flattened, the boolean as an integer).
    @Test("KVSH.CHECK's verdict travels as a field, in RESP3 and RESP2")
    func checkVerdict() throws {
        for clean in [true, false] {
            let outcome = MaintenanceCommand.Outcome(text: "check of dir\nfirst problem: none of your business\n", succeeded: clean)
            let reply = MaintenanceCommand.check.reply(outcome)
            #expect(try MaintenanceCommand.check.outcome(fromReply: reply) == outcome)
            guard case .map(let pairs) = reply else {
                Issue.record("not a map: \(reply)")
                continue
            }
            let resp2 = RESPValue.array(pairs.flatMap { [$0.0, $0.1 == .boolean(clean) ? .integer(clean ? 1 : 0) : $0.1] })
            #expect(try MaintenanceCommand.check.outcome(fromReply: resp2) == outcome)
        }
        #expect(throws: CommandError.self) { _ = try MaintenanceCommand.check.outcome(fromReply: .bulk("check of dir")) }
        #expect(throws: CommandError.self) { _ = try MaintenanceCommand.stats.outcome(fromReply: .error("ERR no")) }
        #expect(try MaintenanceCommand.stats.outcome(fromReply: .bulk("keys: 1\n")) == MaintenanceCommand.Outcome(text: "keys: 1\n"))
    }
}
