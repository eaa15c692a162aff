import ArgumentParser
import KVAccess
import KVServer

/// `kvsh serve`'s access-control flags, named as Redis's configuration directives.
struct AccessOptions: ParsableArguments {
    @Option(name: .customLong("requirepass"), help: ArgumentHelp(
        "Give the default user this password: clients must AUTH first. (Visible to other users of this machine in ps: "
            + "prefer --aclfile.)", valueName: "password"))
    var requirePass: String?

    @Option(name: .customLong("aclfile"), help: ArgumentHelp(
        "Load the users from this file (Redis's format: one 'user NAME rules...' per line); ACL SAVE writes it back, "
            + "passwords only as salted hashes. A bad line refuses to start.", valueName: "file"))
    var aclFile: String?

    @Option(name: .customLong("protected-mode"), help: ArgumentHelp(
        "While the default user has no password, refuse clients that are not on this machine (Redis's protected mode).",
        valueName: "yes|no"))
    var protectedMode: YesNo = .yes

    @Option(name: .customLong("audit-log"), help: ArgumentHelp(
        "Append every command to this file as a JSON line: time, connection, client address, user, command, key names and "
            + "result (never values or passwords).", valueName: "file"))
    var auditLog: String?

    enum YesNo: String, ExpressibleByArgument, CaseIterable {
        case yes, no
    }

    func validate() throws {
        if requirePass != nil && aclFile != nil {
            throw ValidationError("--requirepass and --aclfile exclude each other: set the default user's password in the ACL file "
                                  + "(user default on >PASSWORD ~* &* +@all)")
        }
        if let requirePass, requirePass.isEmpty { throw ValidationError("--requirepass cannot be empty") }
    }

    func makeAuditLog() throws -> AuditLog? {
        guard let auditLog else { return nil }
        do {
            return try AuditLog(path: auditLog)
        } catch {
            throw ServeError(message: "\(error)")
        }
    }

    /// The users, or an error naming the ACL file and its bad line.
    func makeAccessControl() throws -> AccessControl {
        do {
            return try KVServer.makeAccessControl(aclFile: aclFile, requirePass: requirePass)
        } catch {
            throw ServeError(message: "cannot start because of an ACL error: \(error) (fix the file, or start without --aclfile)")
        }
    }
}
