// Encryption at rest: every file kind round-trips sealed, nothing written shows in the files, damage is found with
// file and offset, a torn tail is cut, keys are checked before anything is decrypted, and rekey replaces the key.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Testing
@testable import KVStore

private func encryptedOptions(_ key: EncryptionKey?, others: [EncryptionKey] = [], fileSystem: any FileSystem = POSIXFileSystem()) -> KVStore.Options {
    var options = KVStore.Options(syncPolicy: .always, compactionRatio: 0, fileSystem: fileSystem)
    options.keyring = Keyring(current: key, others: others)
    return options
}

private func open(_ directory: String, _ key: EncryptionKey?, others: [EncryptionKey] = []) throws -> KVStore {
    try KVStore(directory: directory, options: encryptedOptions(key, others: others))
}

/// Whether `needle` occurs anywhere in `haystack`.
private func occurs(_ needle: [UInt8], in haystack: [UInt8]) -> Bool {
    guard needle.count <= haystack.count else { return false }
    return (0...(haystack.count - needle.count)).contains { start in haystack[start..<(start + needle.count)].elementsEqual(needle) }
}

/// Every regular file under `directory`, recursively.
private func filesUnder(_ directory: String) -> [String] {
    listDirectory(directory).flatMap { name -> [String] in
        let path = directory + "/" + name
        return isDirectoryPath(path) ? filesUnder(path) : [path]
    }
}

/// The offsets of the records after the header of an encrypted log, from their framing.
private func recordOffsets(_ file: [UInt8]) -> [Int] {
    var offsets: [Int] = []
    var offset = LogFormat.encryptedHeaderSize
    while offset + LogFormat.recordHeaderSize <= file.count {
        offsets.append(offset)
        let length = file[(offset + 4)..<(offset + 8)].reversed().reduce(0) { $0 << 8 | Int($1) }
        offset += LogFormat.recordHeaderSize + length
    }
    return offsets
}

/// The store's log files, in order.
private func logs(_ directory: String) throws -> [String] {
    try DataDirectory.logFiles(in: directory, fileSystem: POSIXFileSystem()).map(\.path)
}

@Suite("Encryption at rest")
struct EncryptionTests {
    @Test("logs, images and backups round-trip sealed; check passes with the key")
    func roundTrip() throws {
        try withTempDir { root in
            let key = EncryptionKey.random()
            let directory = root + "/s"
            var model: [[UInt8]: [UInt8]] = [:]
            do {
                let store = try open(directory, key)
                for number in 0..<500 {
                    try store.set(bytes("k\(number)"), bytes("v\(number)"))
                    model[bytes("k\(number)")] = bytes("v\(number)")
                }
                try store.delete([bytes("k1"), bytes("k2")])
                model[bytes("k1")] = nil
                model[bytes("k2")] = nil
                _ = try store.multiSet([(bytes("m1"), bytes("x")), (bytes("m2"), bytes("y"))])
                model[bytes("m1")] = bytes("x")
                model[bytes("m2")] = bytes("y")
                try store.commit()
                _ = try store.checkpoint()
                try store.set(bytes("after"), bytes("image"))
                model[bytes("after")] = bytes("image")
                try store.commit()
                _ = try store.backup(to: root + "/backup.kvbak")
                #expect(try store.check().isClean)
                try store.close()
            }
            // Every file of the store and the backup is sealed: version 2, the key's id in the header.
            for path in filesUnder(directory) + [root + "/backup.kvbak"] where !path.hasSuffix("/LOCK") {
                let file = try readFile(path)
                let header = file.withUnsafeBytes { LogReader.decodeHeader($0, magic: Array(file.prefix(8))) }
                guard case .success(let decoded) = header else {
                    Issue.record("\(path): header does not decode: \(header)")
                    continue
                }
                #expect(decoded.sealing?.keyID == key.id, "\(path) is not sealed with the key")
            }
            let reopened = try open(directory, key)
            expectContents(reopened, equal: model)
            try reopened.close()
            #expect(try StoreChecker.check(directory: directory, keyring: Keyring(current: key)).isClean)

            let restored = root + "/restored"
            _ = try KVStore.restore(backup: root + "/backup.kvbak", into: restored, force: false, keyring: Keyring(current: key))
            let fromBackup = try open(restored, key)
            defer { try? fromBackup.close() }
            expectContents(fromBackup, equal: model)
        }
    }

    @Test("no key or value written, and not the key, shows in any file of an encrypted store or its backup")
    func nothingInClear() throws {
        try withTempDir { root in
            let key = EncryptionKey.random()
            let directory = root + "/s"
            let store = try open(directory, key)
            var secrets: [[UInt8]] = []
            for number in 0..<200 {
                let (name, value) = (bytes("secret-key-\(number)"), bytes("secret-value-\(number)-" + String(repeating: "z", count: number % 40)))
                try store.set(name, value)
                secrets += [name, value]
            }
            try store.commit()
            _ = try store.checkpoint()
            try store.set(bytes("late-secret-key"), bytes("late-secret-value"))
            _ = try store.multiSet([(bytes("multi-secret-key"), bytes("multi-secret-value"))])
            try store.delete([bytes("secret-key-3")])
            secrets += [bytes("late-secret-key"), bytes("late-secret-value"), bytes("multi-secret-key"), bytes("multi-secret-value")]
            try store.commit()
            _ = try store.backup(to: root + "/backup.kvbak")
            try store.close()
            let keyBytes = key.key.withUnsafeBytes { Array($0) }
            let files = filesUnder(directory) + [root + "/backup.kvbak"]
            #expect(files.count >= 4)
            for path in files {
                let file = try readFile(path)
                #expect(!occurs(Array("secret".utf8), in: file), "\(path) shows a written key or value in clear")
                #expect(!occurs(keyBytes, in: file), "\(path) holds the key")
            }
        }
    }

    @Test("a flipped byte in the middle of an encrypted log is corruption, reported with file and offset",
          arguments: [false, true])
    func flippedByteInTheMiddle(fixCRC: Bool) throws {
        try withTempDir { root in
            let key = EncryptionKey.random()
            let directory = root + "/s"
            let store = try open(directory, key)
            for number in 0..<20 { try store.set(bytes("k\(number)"), bytes("value \(number)")) }
            try store.close()
            let path = try #require(try logs(directory).last)
            var file = try readFile(path)
            let offsets = recordOffsets(file)
            try #require(offsets.count == 20)
            let target = offsets[5]
            file[target + LogFormat.recordHeaderSize + 2] ^= 0x40  // inside the ciphertext
            if fixCRC {
                // As an attacker would: a good CRC over the changed bytes leaves only the AES-GCM tag to catch it.
                let end = offsets[6]
                let crc = file.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[(target + 4)..<end])) }
                withUnsafeBytes(of: crc.littleEndian) { file.replaceSubrange(target..<(target + 4), with: $0) }
            }
            try writeFile(path, file)
            let reason = fixCRC ? "record fails authentication (AES-GCM tag mismatch), yet a valid record follows at offset \(offsets[6])"
                                : "record checksum mismatch, yet a valid record follows at offset \(offsets[6])"
            #expect(throws: StoreError.corruption(file: path, offset: target, reason: reason)) { _ = try open(directory, key) }
            let report = try StoreChecker.check(directory: directory, keyring: Keyring(current: key))
            #expect(!report.isClean)
            #expect(report.files.flatMap(\.problems).contains { $0.kind == .corruption && $0.file == path && $0.offset == target })
        }
    }

    @Test("a flipped byte in an encrypted image is corruption at its block's offset")
    func flippedByteInImage() throws {
        try withTempDir { root in
            let key = EncryptionKey.random()
            let directory = root + "/s"
            let store = try open(directory, key)
            for number in 0..<100 { try store.set(bytes("k\(number)"), bytes("v\(number)")) }
            let report = try store.checkpoint()
            try store.close()
            var file = try readFile(report.imagePath)
            file[LogFormat.encryptedHeaderSize + LogFormat.recordHeaderSize + 10] ^= 1
            try writeFile(report.imagePath, file)
            #expect(throws: StoreError.corruption(file: report.imagePath, offset: LogFormat.encryptedHeaderSize,
                                                  reason: "record checksum mismatch")) { _ = try open(directory, key) }
        }
    }

    @Test("a torn tail of an encrypted log is cut, and writes go on in a new file", arguments: [3, 20])
    func tornTailIsCut(bytesOfLastRecord: Int) throws {
        try withTempDir { root in
            let key = EncryptionKey.random()
            let directory = root + "/s"
            let store = try open(directory, key)
            for number in 0..<10 { try store.set(bytes("k\(number)"), bytes("value \(number)")) }
            try store.close()
            let path = try #require(try logs(directory).last)
            let file = try readFile(path)
            let last = try #require(recordOffsets(file).last)
            try writeFile(path, Array(file[..<(last + bytesOfLastRecord)]))
            let reopened = try open(directory, key)
            let tail = try #require(reopened.openReport.tornTail)
            #expect(tail.file == path && tail.offset == last && tail.droppedBytes == bytesOfLastRecord)
            #expect(fileSize(path) == last)
            #expect(reopened.get(bytes("k8")) == bytes("value 8"))
            #expect(reopened.get(bytes("k9")) == nil)
            try reopened.set(bytes("k9"), bytes("again"))
            try reopened.close()
            // The cut file is never appended to again: its nonces (sequence numbers) would repeat under its key.
            #expect(fileSize(path) == last)
            let again = try open(directory, key)
            defer { try? again.close() }
            #expect(again.get(bytes("k9")) == bytes("again"))
            #expect(again.count == 10)
        }
    }

    @Test("every open for writing starts a log file with a fresh salt; one with no record is written again")
    func freshSaltPerOpen() throws {
        try withTempDir { root in
            let key = EncryptionKey.random()
            let directory = root + "/s"
            func salts() throws -> [[UInt8]] {
                try logs(directory).map { Array(try readFile($0)[32..<48]) }
            }
            try open(directory, key).close()
            let first = try salts()
            #expect(first.count == 1)
            try open(directory, key).close()  // nothing written: the same file, a new salt
            let second = try salts()
            #expect(second.count == 1 && second != first)
            let store = try open(directory, key)
            try store.set(bytes("a"), bytes("1"))
            try store.close()
            let store2 = try open(directory, key)
            try store2.set(bytes("b"), bytes("2"))
            try store2.close()
            let third = try salts()
            #expect(third.count == 2 && Set(third).count == 2)
            let reopened = try open(directory, key)
            defer { try? reopened.close() }
            #expect(reopened.get(bytes("a")) == bytes("1") && reopened.get(bytes("b")) == bytes("2"))
        }
    }

    @Test("a wrong key, a missing key, and a key for a plain store are clear errors naming the file")
    func keyMismatches() throws {
        try withTempDir { root in
            let key = EncryptionKey.random()
            let encrypted = root + "/encrypted"
            let store = try open(encrypted, key)
            try store.set(bytes("a"), bytes("1"))
            try store.close()
            let log = try #require(try logs(encrypted).last)

            #expect { _ = try open(encrypted, EncryptionKey.random()) } throws: { error in
                guard case StoreError.encryption(let file, let reason) = error else { return false }
                return file == log && reason.contains("another key") && reason.contains(key.idHex)
            }
            #expect { _ = try open(encrypted, nil) } throws: { error in
                guard case StoreError.encryption(let file, let reason) = error else { return false }
                return file == log && reason.contains("--encryption-key-file")
            }
            let plain = root + "/plain"
            let plainStore = try KVStore(directory: plain)
            try plainStore.set(bytes("a"), bytes("1"))
            try plainStore.close()
            #expect { _ = try open(plain, key) } throws: { error in
                guard case StoreError.encryption(_, let reason) = error else { return false }
                return reason.contains("is not encrypted")
            }
            // Nothing was changed by the refusals.
            let reopened = try open(encrypted, key)
            defer { try? reopened.close() }
            #expect(reopened.get(bytes("a")) == bytes("1"))
        }
    }

    @Test("importing an encrypted log: into a store with its key it reads, a plain log into an encrypted store too; otherwise the error says which store can")
    func importsSealedLogs() throws {
        try withTempDir { root in
            let key = EncryptionKey.random()
            let source = try open(root + "/source", key)
            try source.set(bytes("sealed"), bytes("1"))
            try source.close()
            let sealedLog = try #require(try logs(root + "/source").last)
            let plainSource = try KVStore(directory: root + "/plain-source")
            try plainSource.set(bytes("clear"), bytes("2"))
            try plainSource.close()
            let plainLog = try #require(try logs(root + "/plain-source").last)

            let sameKey = try open(root + "/same-key", key)
            _ = try LogImporter.importLog(at: sealedLog, into: sameKey)
            _ = try LogImporter.importLog(at: plainLog, into: sameKey)
            #expect(sameKey.get(bytes("sealed")) == bytes("1") && sameKey.get(bytes("clear")) == bytes("2"))
            try sameKey.close()

            let plain = try KVStore(directory: root + "/plain")
            defer { try? plain.close() }
            #expect { _ = try LogImporter.importLog(at: sealedLog, into: plain) } throws: { error in
                guard case StoreError.encryption(let file, let reason) = error else { return false }
                return file == sealedLog && reason.contains(key.idHex) && reason.contains("import it into a store opened with --encryption-key-file")
                    && !reason.contains("pass --encryption-key-file")
            }
            #expect(plain.count == 0)
        }
    }

    @Test("rekey: afterwards the old key opens nothing, the new one everything; nothing is lost", arguments: [false, true])
    func rekey(fromPlain: Bool) throws {
        try withTempDir { root in
            let old = fromPlain ? nil : EncryptionKey.random()
            let new = EncryptionKey.random()
            let directory = root + "/s"
            let store = try open(directory, old)
            for number in 0..<300 { try store.set(bytes("k\(number)"), bytes("v\(number)")) }
            _ = try store.checkpoint()
            for number in 300..<400 { try store.set(bytes("k\(number)"), bytes("v\(number)")) }
            try store.commit()
            let before = contents(store)
            _ = try store.rekey(to: new)
            try store.set(bytes("after"), bytes("rekey"))
            try store.close()

            #expect(throws: StoreError.self) { _ = try open(directory, old) }
            let reopened = try open(directory, new)
            var expected = before
            expected[bytes("after")] = bytes("rekey")
            expectContents(reopened, equal: expected)
            try reopened.close()
            for path in filesUnder(directory) where !path.hasSuffix("/LOCK") {
                let file = try readFile(path)
                #expect(Array(file[24..<32]) == new.id, "\(path) is not sealed with the new key")
            }
        }
    }

    @Test("key files: made with mode 0600 and never replaced; group or other access and a wrong size are refused")
    func keyFiles() throws {
        try withTempDir { root in
            let path = root + "/key"
            let key = try EncryptionKey.generate(at: path)
            var info = stat()
            try #require(stat(path, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o600)
            #expect(fileSize(path) == 32)
            #expect(try EncryptionKey.load(from: path).id == key.id)
            #expect(throws: StoreError.self) { try EncryptionKey.generate(at: path) }
            #expect(try EncryptionKey.load(from: path).id == key.id, "keygen replaced a key")

            chmod(path, 0o644)
            #expect { _ = try EncryptionKey.load(from: path) } throws: { error in
                guard case StoreError.encryptionKeyFile(_, let reason) = error else { return false }
                return reason.contains("other users") && reason.contains("644")
            }
            let short = root + "/short"
            try writeFile(short, [1, 2, 3])
            chmod(short, 0o600)
            #expect { _ = try EncryptionKey.load(from: short) } throws: { error in
                guard case StoreError.encryptionKeyFile(_, let reason) = error else { return false }
                return reason.contains("3 bytes")
            }
            #expect(throws: StoreError.self) { _ = try EncryptionKey.load(from: root + "/missing") }
        }
    }

    @Test("an encrypted header is 52 bytes: magic, version 2, flags 1, sequence, key id, salt, CRC")
    func headerLayout() {
        let key = EncryptionKey.random()
        let cipher = FileCipher.fresh(master: key, magic: LogFormat.magic)
        let header = LogFormat.fileHeader(firstSequence: 7, cipher: cipher)
        #expect(header.count == LogFormat.encryptedHeaderSize)
        #expect(Array(header[0..<8]) == LogFormat.magic)
        #expect(header[8..<16].elementsEqual([2, 0, 0, 0, 1, 0, 0, 0]))
        #expect(header[16..<24].elementsEqual([7, 0, 0, 0, 0, 0, 0, 0]))
        #expect(Array(header[24..<32]) == key.id && Array(header[32..<48]) == cipher.salt)
        let decoded = header.withUnsafeBytes { LogReader.decodeHeader($0, magic: LogFormat.magic) }
        guard case .success(let value) = decoded else { Issue.record("\(decoded)"); return }
        #expect(value.sequence == 7 && value.sealing == cipher.sealing && value.size == 52)
    }
}
