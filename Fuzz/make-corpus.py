#!/usr/bin/env python3
"""Regenerates the seed corpus in Fuzz/Corpus/<target>/ from real kvsh output.

    python3 Fuzz/make-corpus.py [path/to/kvsh]        (default: .build/debug/kvsh)

- LogReplay: the log files of data directories the shell wrote (sets, deletes, MSET, binary keys and values,
  after a compaction), whole and cut at a few places (torn tails).
- ImageRestore: backups of those stores (`kvsh backup`) and the images compaction left in a data directory.
- JSONImport: JSON lines as the Go StorageEngine wrote them (its format is fixed; kvsh only reads it).
- RequestDecoder: requests as clients send them: multibulk pipelines, inline commands, binary arguments.
- ReplyParser: the replies `kvsh serve` sent to those requests, over RESP2 and RESP3 (HELLO 3).
- Tokenizer: command lines with every quoting rule.

Deterministic apart from what kvsh writes (timestamps are not in its files), small (well under 1 MB).
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KVSH = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build/debug/kvsh"))
CORPUS = os.path.join(ROOT, "Fuzz", "Corpus")
# RDBReader's seeds (Fuzz/Corpus/RDBReader) are not regenerated here: they are files from RDBWriter, hand-made
# edge cases and two dump.rdb files saved by redis-server 7.0.15, committed as they are.
TARGETS = ["RequestDecoder", "ReplyParser", "Tokenizer", "JSONImport", "LogReplay", "ImageRestore"]


def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def shell(directory, script):
    """Runs `script` through the shell on the store in `directory`, as a pipe does."""
    subprocess.run([KVSH, "--data-dir", directory], input=script.encode(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def encode(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


SCRIPTS = {
    "sets": "SET a 1\nSET b 2\nSET c 3\n",
    "overwrite": "SET k v1\nSET k v2\nSET k v3\nGET k\n",
    "deletes": "SET a 1\nSET b 2\nDELETE a\nSET c 3\nDELETE b c\n",
    "mset": "MSET k1 v1 k2 v2 k3 v3\nMSET k1 x k4 y\n",
    "counters": "SET n 10\nINCR n\nINCRBY n 5\nDECR n\nDECRBY n 3\nAPPEND s abc\nAPPEND s def\n",
    "binary": 'SET "\\x00\\x01\\xff" "\\r\\n\\t\\x00"\nSET \'quoted key\' "line\\nbreak"\nSET empty ""\n',
    "setnx-getdel": "SETNX a 1\nSETNX a 2\nGETDEL a\nSETNX b 3\n",
    "many": "".join("SET key:%03d value-%d\n" % (i, i * i) for i in range(60)),
    "long-value": "SET big %s\nSET small x\n" % ("v" * 3000),
    "compacted": "".join("SET k%d %d\n" % (i % 7, i) for i in range(40)) + ":compact\nSET after 1\nDELETE k1\n",
    "empty": "",
}


def stores(work):
    """Data directories written by the shell, with their log files and images."""
    for name, script in SCRIPTS.items():
        directory = os.path.join(work, "store-" + name)
        shell(directory, script)
        for file in sorted(os.listdir(directory)):
            data = open(os.path.join(directory, file), "rb").read()
            if file.endswith(".log"):
                put("LogReplay", "%s-%s" % (name, file), data)
                if name in ("sets", "deletes", "binary", "many") and len(data) > 40:
                    for cut in (len(data) - 1, len(data) - 9, 29):
                        put("LogReplay", "%s-%s-cut%d" % (name, file, cut), data[:cut])
            elif file.endswith(".image"):
                put("ImageRestore", "%s-%s" % (name, file), data)
        backup = os.path.join(work, "backup-%s.kvbak" % name)
        subprocess.run([KVSH, "backup", "--data-dir", directory, backup], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        put("ImageRestore", "backup-%s" % name, open(backup, "rb").read())


def json_lines():
    def line(op, key, value=None):
        entry = {"operation": op, "key": key}
        if value is not None:
            entry["value"] = value
        return json.dumps(entry, separators=(",", ":")) + "\n"
    cases = {
        "sets": line("SET", "a", "1") + line("SET", "b", "2"),
        "set-delete": line("SET", "a", "1") + line("DELETE", "a") + line("SET", "b", "x"),
        "del-alias": line("SET", "k", "v") + line("DEL", "k"),
        "reads": line("GET", "a") + line("EXISTS", "b") + line("SET", "c", "3"),
        "lowercase": line("set", "a", "1") + line("delete", "a"),
        "unicode": line("SET", "clé", "välue ✓") + line("SET", "emoji", "🙂"),
        "escapes": line("SET", "tab\tkey", "quote\"back\\slash\nnewline") + line("SET", "<&>", "\u0001"),
        "blank-lines": "\n" + line("SET", "a", "1") + "\n\n" + line("SET", "b", "2"),
        "crlf": line("SET", "a", "1").replace("\n", "\r\n") + line("SET", "b", "2"),
        "no-final-newline": line("SET", "a", "1") + line("SET", "b", "2").rstrip("\n"),
        "extra-fields": '{"operation":"SET","key":"a","value":"1","timestamp":1700000000,"ttl":null}\n',
        "spaced": '{ "operation" : "SET", "key" : "a", "value" : "1" }\n',
        "empty-value": line("SET", "a", ""),
        "many": "".join(line("SET", "key%d" % i, "value%d" % i) for i in range(40)),
        "missing-value": line("SET", "a"),
        "unknown-op": line("PUT", "a", "1"),
        "not-json": "SET a 1\n",
        "empty": "",
    }
    for name, text in cases.items():
        put("JSONImport", name, text)


REQUESTS = {
    "ping": encode("PING"),
    "set-get": encode("SET", "key", "value") + encode("GET", "key"),
    "pipeline": b"".join(encode("SET", "k%d" % i, "v%d" % i) for i in range(10)) + encode("MGET", "k1", "k2", "k3"),
    "binary": encode("SET", b"\x00\r\n\xff", b"\r\n$3\r\n*1\r\n"),
    "empty-arg": encode("SET", "", "") + encode("GET", ""),
    "inline": b"SET a 1\r\nGET a\r\nPING\n",
    "inline-quoted": b'SET "a b" \'c d\'\r\nSET "\\x41\\n" x\r\n',
    "inline-blank": b"\r\n\r\n   \r\nPING\r\n",
    "mixed": encode("PING") + b"PING\r\n" + encode("ECHO", "hi"),
    "zero-arrays": b"*0\r\n*-1\r\n" + encode("PING"),
    "lf-only": b"*1\n$4\nPING\r\n",
    "hello3": encode("HELLO", "3") + encode("CLIENT", "SETNAME", "fuzz"),
    "scan": encode("SCAN", "0", "MATCH", "k*", "COUNT", "10") + encode("KEYS", "*"),
    "bad-length": b"*1\r\n$x\r\nPING\r\n",
    "bad-marker": b"*2\r\n$3\r\nGET\r\n+key\r\n",
    "missing-crlf": b"*1\r\n$4\r\nPINGxx",
    "unbalanced": b'SET "a b\r\n',
    "partial": encode("SET", "key", "value")[:-5],
    "big-count": b"*1048577\r\n",
    "negative-bulk": b"*1\r\n$-5\r\n",
    # An inline line with no end yet: searched from its start at every read before the fix (quadratic).
    "inline-no-newline": b"A" * 3000,
    "header-no-newline": b"*" + b"0" * 3000,
}


def requests():
    for name, data in REQUESTS.items():
        put("RequestDecoder", name, data)


def replies(work):
    """The replies of a running `kvsh serve` to the requests above, read until the server goes quiet."""
    directory = os.path.join(work, "served")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([KVSH, "serve", "--data-dir", directory, "--port", str(port), "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        sessions = {
            "resp2-basic": [encode("PING"), encode("SET", "a", "1"), encode("GET", "a"), encode("GET", "missing"),
                            encode("INCR", "n"), encode("MGET", "a", "missing", "n"), encode("NOSUCH")],
            "resp2-scan": [encode("MSET", "k1", "v1", "k2", "v2", "k3", "v3"), encode("SCAN", "0"), encode("KEYS", "*"),
                           encode("DBSIZE"), encode("EXISTS", "k1", "k2", "x")],
            "resp2-errors": [encode("SET", "a"), encode("INCR", "a"), encode("GET"), b"*1\r\n$x\r\n"],
            "resp3-hello": [encode("HELLO", "3"), encode("GET", "missing"), encode("SET", "b", b"\x00\xff\r\n")],
            "resp3-info": [encode("HELLO", "3"), encode("CLIENT", "INFO"), encode("COMMAND", "COUNT"),
                           encode("CONFIG", "GET", "maxclients")],
            "resp3-scan": [encode("HELLO", "3"), encode("SCAN", "0", "COUNT", "2"), encode("MGET", "k1", "zz")],
            "resp2-info": [encode("INFO", "server"), encode("CLIENT", "LIST")],
            "resp2-binary": [encode("SET", "bin", b"\r\n*1\r\n$-1\r\n"), encode("GET", "bin"), encode("STRLEN", "bin")],
        }
        for name, session in sessions.items():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                received = b""
                for request in session:
                    conn.sendall(request)
                    conn.settimeout(2)
                    try:  # one reply at least, then whatever else arrives while the server writes
                        received += conn.recv(65536)
                        conn.settimeout(0.2)
                        while True:
                            chunk = conn.recv(65536)
                            if not chunk:
                                break
                            received += chunk
                    except socket.timeout:
                        pass
                put("ReplyParser", name, received)
    finally:
        server.terminate()
        server.wait(timeout=30)
    # RESP3 types kvsh does not send but servers do: the parser must take them too.
    extra = {
        "resp3-types": b"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n#t\r\n~2\r\n,3.14\r\n(12345678901234567890\r\n_\r\n",
        "resp3-attribute": b"|1\r\n+ttl\r\n:3600\r\n$5\r\nhello\r\n>2\r\n+message\r\n$2\r\nhi\r\n",
        "resp3-verbatim": b"=15\r\ntxt:Some string\r\n!10\r\nERR broken\r\n",
        "nested": b"*3\r\n*2\r\n:1\r\n*1\r\n$-1\r\n*0\r\n*-1\r\n",
        "bad-boolean": b"#x\r\n",
        "bad-length": b"$-2\r\n",
        "partial": b"*2\r\n$3\r\nfoo\r\n$3\r\nba",
    }
    for name, data in extra.items():
        put("ReplyParser", name, data)


def tokenizer_lines():
    lines = [
        "SET a 1", "  GET   a  ", "SET \"a b\" 'c d'", 'SET "\\x41\\x42" "\\n\\r\\t\\a\\b\\"\\\\"', "SET 'it\\'s' x",
        'SET a"b c"d e', "SET \"unbalanced", "SET 'open", 'SET "a"b', "SET '' \"\"", "\t\x0b\x0cPING\r\n",
        'SET "\\xZZ" "\\x4"', "ECHO \xc3\xa9t\xc3\xa9", "SET k \"\\\"", "MSET k1 v1 k2 v2 k3 v3", "", "\"\"",
        "'a\\b'", 'a\\"b', 'SET "\\x00" \'\\\'\'',
    ]
    for number, line in enumerate(lines):
        put("Tokenizer", "line-%02d" % number, line.encode("latin-1") if "\xc3" in line else line)


def main():
    if not os.access(KVSH, os.X_OK):
        sys.exit("no kvsh at %s: build it first (swift build --product kvsh)" % KVSH)
    for target in TARGETS:
        shutil.rmtree(os.path.join(CORPUS, target), ignore_errors=True)
        os.makedirs(os.path.join(CORPUS, target))
    with tempfile.TemporaryDirectory(prefix="kvsh-corpus-") as work:
        os.chmod(work, 0o700)
        stores(work)
        json_lines()
        requests()
        replies(work)
        tokenizer_lines()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(CORPUS) for f in fs)
    for target in TARGETS:
        print("%-15s %3d files" % (target, len(os.listdir(os.path.join(CORPUS, target)))))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
