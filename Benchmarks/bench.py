#!/usr/bin/env python3
r"""Side-by-side benchmark of kvsh against redis-server and sqlite3.

Measures, on N lines of ``SET key:NNNNNNN <100-byte value>``, in parts that
``--parts`` selects:

1. ``load``: bulk-load throughput (lines/s, fresh empty store per run),
2. ``startup``: open a store holding the N keys and answer one GET,
3. ``compact``: the same startup for kvsh after ``:compact`` (one image and an
   empty log), against redis started from its rewritten (RDB-preamble) AOF,
4. ``range``: latency of ``RANGE start + LIMIT 100`` (kvsh, on N and N/10
   keys) and of the equivalent ``SELECT ... LIMIT 100`` (sqlite3),
5. ``memory``: the memory-per-key and on-disk-size table (its RSS figures come
   from the timed runs of the other parts),
6. ``server``: ``kvsh serve`` against redis-server under ``redis-benchmark -c 50``
   (SET and GET, without pipelining and with ``-P 16``): kvsh ``--sync everysec``
   vs redis ``appendfsync everysec``, and ``--sync always`` vs ``appendfsync
   always`` (SET); an extra everysec SET/GET row with a two-threaded client
   (``redis-benchmark --threads 2``), where the client no longer sets the pace;
   plus one run of kvsh with ``--threads 1`` and ``--threads 2``. A fresh
   server on a fresh data dir for every redis-benchmark invocation. Beside
   ops/s and p99, every invocation records the server's and the client's CPU
   time per request and how often the server's threads went to sleep.

Timings are wall-clock; every figure is the median over ``--runs`` runs, and
the systems are interleaved within each round so that noise on a shared
machine hits them alike. Without ``load``, the stores left in the work
directory by an earlier run with the same ``--lines`` are reused (or loaded
once, untimed). The ``server`` part needs neither the data set nor the stores.
Standard library only.

Usage:
    python3 Benchmarks/bench.py --kvsh .build/release/kvsh \
        [--lines 1000000] [--runs 5] [--work DIR] [--markdown OUT.md] \
        [--only kvsh,redis,sqlite] [--parts load,startup,compact,range,memory,server] \
        [--server-requests 1000000]
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime
import hashlib
import json
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

SYSTEMS = ("kvsh", "redis", "sqlite")
PARTS = ("load", "startup", "compact", "range", "memory", "server")
PART_SYSTEMS = {"load": SYSTEMS, "startup": SYSTEMS, "compact": ("kvsh", "redis"),
                "range": ("kvsh", "sqlite"), "memory": SYSTEMS,
                "server": ("kvsh", "redis")}  # who takes part in what
STORE_PARTS = ("load", "startup", "compact", "range", "memory")  # need data set + stores
VALUE_BYTES = 100
DATA_FORMAT_VERSION = 1  # bump when the generated data changes shape

# Goals from the kvsh design brief.
GOAL_LOAD_VS_REDIS = 2.0
GOAL_LOAD_VS_SQLITE = 5.0
GOAL_STARTUP_VS_REDIS = 3.0
GOAL_COMPACTED_STARTUP_VS_REDIS = 4.0  # kvsh after :compact vs redis rewritten AOF

# Range queries: RANGE_QUERIES random start keys (seeded), RANGE_LIMIT pairs each.
RANGE_QUERIES = 1000
RANGE_LIMIT = 100
RANGE_SEED = 20240601
RANGE_CLOSE = 1.5  # N vs N/10 keys: per-query latencies within this factor are "close"
KVSH_COMPACTED_LOG_MAX = 4096  # bytes; the log :compact starts holds only its header

# Server part: redis-benchmark against `kvsh serve` and redis-server.
SERVER_REQUESTS = 1_000_000  # redis-benchmark -n (--server-requests)
SERVER_CLIENTS = 50  # redis-benchmark -c
SERVER_PIPELINE = 16  # redis-benchmark -P of the pipelined rows
SERVER_THREADS = (1, 2)  # kvsh serve --threads, tried once on the everysec rows
SERVER_START_TIMEOUT = 30.0  # seconds until a fresh server must answer PING
SERVER_STOP_TIMEOUT = 60.0  # seconds until a stopped server must have exited
BENCH_KEY = "key:__rand_int__"  # redis-benchmark's key without -r: one key
BENCH_VALUE_BYTES = 3  # redis-benchmark's default payload size (-d 3; random letters in 7.0)
BENCH_CSV_HEADER = ["test", "rps", "avg_latency_ms", "min_latency_ms", "p50_latency_ms",
                    "p95_latency_ms", "p99_latency_ms", "max_latency_ms"]  # redis-benchmark 7.0

REDIS_AOF_DIR = "appendonlydir"  # redis 7 default `appenddirname`
REDIS_START_TIMEOUT = 600.0  # seconds; generous for 1M keys on a noisy box

# Child processes still alive; killed by kill_leftovers() whatever happens.
_live_children: set[subprocess.Popen] = set()


class BenchError(RuntimeError):
    """A measurement could not be taken or its result failed validation."""


# --------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------


@dataclass
class ChildResult:
    """Outcome of one timed child process."""

    seconds: float
    returncode: int
    maxrss_bytes: int
    stdout: bytes = b""
    stderr: bytes = b""
    cpu_seconds: float = 0.0  # user + system time of the child


def spawn(argv: list[str], **popen_kwargs) -> subprocess.Popen:
    """Start a child and register it so it is killed if the script aborts."""
    proc = subprocess.Popen(argv, **popen_kwargs)
    _live_children.add(proc)
    return proc


def reap(proc: subprocess.Popen, timeout: float | None = None) -> tuple[int, int, float]:
    """Wait for ``proc`` with wait4; return (returncode, ru_maxrss in bytes, user + system seconds).

    With a timeout, polls and raises BenchError when it expires (the child is
    left registered, so kill_leftovers() still ends it).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, 0 if deadline is None else os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"{proc.args[0]} (pid {proc.pid}) did not exit in {timeout} s")
        time.sleep(0.005)
    proc.returncode = os.waitstatus_to_exitcode(status)
    _live_children.discard(proc)
    return proc.returncode, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime  # Linux reports KiB


def run_timed(argv: list[str], stdin_path: Path | None = None,
              capture: bool = False, stdout_path: Path | None = None) -> ChildResult:
    """Run ``argv`` to completion and measure its wall time and peak RSS.

    stdin comes from ``stdin_path`` (or /dev/null). stdout goes to
    ``stdout_path``, to a pipe when ``capture`` is set, else to /dev/null.
    stderr goes to a temporary file, so that the child is reaped with wait4
    (Popen.communicate would reap it and lose the rusage). The clock covers
    fork/exec to exit.
    """
    with open(stdin_path or os.devnull, "rb") as stdin, \
            open(stdout_path or os.devnull, "wb") as sink, \
            tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = spawn(argv, stdin=stdin, stderr=errors,
                     stdout=subprocess.PIPE if capture else sink)
        out = b""
        if capture:
            with proc.stdout:
                out = proc.stdout.read()
        returncode, maxrss, cpu = reap(proc)
        seconds = time.perf_counter() - start
        errors.seek(0)
        return ChildResult(seconds, returncode, maxrss, out, errors.read(), cpu)


def harness_peak_rss() -> int:
    """This script's own peak RSS in bytes: the lowest peak RSS a child can report.

    Children start as vfork/posix_spawn + exec of this process, and Linux
    carries the old address space's high-water mark over exec into the
    child's ru_maxrss, so no child reads lower than this.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stop_child(proc: subprocess.Popen) -> None:
    """Terminate ``proc`` if it still runs (SIGKILL after 10 s) and forget it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _live_children.discard(proc)


def kill_leftovers() -> None:
    """Stop every child this script started that is still alive."""
    for proc in list(_live_children):
        stop_child(proc)


def command_output(argv: list[str]) -> str | None:
    """First line of a quick informational command, or None if it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0] if done.returncode == 0 and lines else None


def fresh_dir(path: Path) -> Path:
    """Remove ``path`` if present and recreate it empty."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def copy_fresh(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of ``src`` and flush it, so every run starts alike."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    os.sync()


def tree_size(path: Path, pattern: str = "*") -> int:
    """Total size in bytes of the regular files under ``path`` matching ``pattern``."""
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())


# --------------------------------------------------------------------------
# Data set
# --------------------------------------------------------------------------


def key_for(index: int) -> str:
    """``key:NNNNNNN``, the 7-digit zero-padded index."""
    return f"key:{index:07d}"


def value_for(index: int) -> str:
    """100 printable bytes from [A-Za-z0-9_-], deterministic in ``index``."""
    raw = hashlib.shake_128(b"kvsh-bench:%d" % index).digest(VALUE_BYTES * 3 // 4)
    return base64.urlsafe_b64encode(raw).decode("ascii")


@dataclass
class DataSet:
    """The generated input files; identical rows for all three systems."""

    lines: int
    txt: Path  # SET commands, for kvsh and redis-cli --pipe
    sql: Path  # the same rows as one SQL transaction, for sqlite3

    @property
    def middle_key(self) -> str:
        return key_for(self.lines // 2)

    @property
    def middle_value(self) -> str:
        return value_for(self.lines // 2)


def prepare_data(work: Path, lines: int) -> DataSet:
    """Write data.txt and data.sql for ``lines`` rows, reusing them when cached."""
    data = DataSet(lines, work / "data.txt", work / "data.sql")
    stamp = work / "data.json"
    wanted = {"lines": lines, "format": DATA_FORMAT_VERSION}
    if stamp.exists() and data.txt.exists() and data.sql.exists():
        if json.loads(stamp.read_text()) == wanted:
            return data
    stamp.unlink(missing_ok=True)
    print(f"generating {lines:,} lines in {work} ...", file=sys.stderr)
    tmp_txt, tmp_sql = data.txt.with_suffix(".txt.tmp"), data.sql.with_suffix(".sql.tmp")
    with open(tmp_txt, "w") as txt, open(tmp_sql, "w") as sql:
        sql.write("CREATE TABLE kv(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;\n"
                  "BEGIN;\n")
        for i in range(lines):
            key, value = key_for(i), value_for(i)
            txt.write(f"SET {key} {value}\n")
            sql.write(f"INSERT INTO kv VALUES('{key}','{value}');\n")
        sql.write("COMMIT;\n")
    tmp_txt.replace(data.txt)
    tmp_sql.replace(data.sql)
    stamp.write_text(json.dumps(wanted))
    return data


# --------------------------------------------------------------------------
# Minimal redis client and server control
# --------------------------------------------------------------------------


class RedisError(Exception):
    """An error reply (``-ERR ...``) from redis."""


class RespConnection:
    """A blocking RESP2 connection, enough for the few commands used here."""

    def __init__(self, port: int, timeout: float = 60.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def call(self, *args: str):
        """Send one command and return its decoded reply; raise RedisError on -ERR."""
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._read_reply()

    def _read_reply(self):
        line = self.reader.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            raise RedisError(body.decode())
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            return None if size < 0 else self.reader.read(size + 2)[:-2].decode()
        if kind == b"*":
            return [self._read_reply() for _ in range(int(body))]
        raise BenchError(f"unexpected RESP reply {line!r}")


def free_port() -> int:
    """A currently unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_info(text: str) -> dict[str, str]:
    """INFO output as a flat dict."""
    return dict(line.split(":", 1) for line in text.splitlines()
                if line and not line.startswith("#"))


class RedisServer:
    """A private redis-server (AOF on, everysec unless told) in ``directory`` on a free port.

    Use as a context manager: the normal path ends it with shutdown(); leaving
    the block any other way (an error) terminates the process.
    """

    def __init__(self, directory: Path, appendfsync: str = "everysec"):
        self.port = free_port()
        self.log = directory / "redis.log"
        self.proc = spawn(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(directory), "--logfile", str(self.log),
             "--daemonize", "no", "--appendonly", "yes",
             "--appendfsync", appendfsync, "--save", "",
             "--aof-use-rdb-preamble", "yes"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def __enter__(self) -> "RedisServer":
        return self

    def __exit__(self, *exc_info) -> None:
        stop_child(self.proc)

    def connect(self, deadline: float) -> RespConnection:
        """Busy-poll (1 ms) until the server accepts a TCP connection."""
        while True:
            try:
                return RespConnection(self.port)
            except ConnectionRefusedError:
                if self.proc.poll() is not None:
                    raise BenchError(f"redis-server exited early; log:\n{self.log_tail()}")
                if time.perf_counter() > deadline:
                    raise BenchError("redis-server did not start listening in time")
                time.sleep(0.001)

    def call_when_loaded(self, *args: str, timeout: float = REDIS_START_TIMEOUT):
        """Connect and run one command, retrying every 1 ms while redis answers -LOADING."""
        deadline = time.perf_counter() + timeout
        conn = self.connect(deadline)
        try:
            while True:
                try:
                    return conn.call(*args)
                except RedisError as err:
                    if not str(err).startswith("LOADING") or time.perf_counter() > deadline:
                        raise
                    time.sleep(0.001)
        finally:
            conn.close()

    def call(self, *args: str):
        conn = RespConnection(self.port)
        try:
            return conn.call(*args)
        finally:
            conn.close()

    def info(self, section: str) -> dict[str, str]:
        return parse_info(self.call("INFO", section))

    def wait_for_aof_rewrite(self, timeout: float = 600.0) -> None:
        """Wait until no AOF rewrite runs or is scheduled, and AOF writes succeeded.

        redis rewrites the AOF on its own once it exceeds auto-aof-rewrite-min-size
        (64 MB, i.e. around 550k of these lines); shutting down mid-rewrite would
        leave a different file layout from run to run.
        """
        deadline = time.monotonic() + timeout
        while True:
            info = self.info("persistence")
            if info["aof_rewrite_in_progress"] == "0" and info["aof_rewrite_scheduled"] == "0":
                break
            if time.monotonic() > deadline:
                raise BenchError("redis AOF rewrite did not finish in time")
            time.sleep(0.05)
        for status in ("aof_last_write_status", "aof_last_bgrewrite_status"):
            if info[status] != "ok":
                raise BenchError(f"redis {status} is {info[status]}")

    def shutdown(self) -> int:
        """SHUTDOWN NOSAVE (redis still flushes and fsyncs the AOF); return peak RSS."""
        try:
            self.call("SHUTDOWN", "NOSAVE")
        except ConnectionError:
            pass  # a successful SHUTDOWN closes the connection without a reply
        returncode, maxrss, _ = reap(self.proc, timeout=120)
        if returncode != 0:
            raise BenchError(f"redis-server exited with {returncode}; log:\n{self.log_tail()}")
        if "Calling fsync() on the AOF file" not in self.log.read_text():
            raise BenchError("redis-server did not report fsyncing the AOF at shutdown")
        return maxrss

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


_AOF_LOADED = re.compile(r"DB loaded from append only file: ([0-9.]+) seconds")


def redis_aof_load_seconds(log: Path) -> float:
    """The server's own AOF load time from its log.

    Redis 7 (multi-part AOF) logs one line per part, e.g.
    ``DB loaded from base file appendonly.aof.1.base.rdb: 0.000 seconds`` and
    ``DB loaded from incr file appendonly.aof.1.incr.aof: 0.123 seconds``, then the
    total as ``DB loaded from append only file: 0.123 seconds`` (the wording
    older versions use for their single file); the total is what we take.
    """
    match = _AOF_LOADED.search(log.read_text())
    if not match:
        raise BenchError(f"no AOF load time in {log}")
    return float(match.group(1))


class KvshServer:
    """A private `kvsh serve` on ``data_dir`` (created fresh by the caller) on a free port.

    stderr (its swift-log output) goes to ``log``. Use as a context manager:
    the normal path ends it with shutdown() (SIGTERM, exit 0 expected);
    leaving the block any other way terminates the process.
    """

    def __init__(self, kvsh: str, data_dir: Path, log: Path, sync: str,
                 threads: int | None = None):
        self.port = free_port()
        self.log = log
        argv = [kvsh, "serve", "--data-dir", str(data_dir), "--port", str(self.port),
                "--sync", sync]
        if threads is not None:
            argv += ["--threads", str(threads)]
        with open(log, "wb") as errors:
            self.proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=errors)

    def __enter__(self) -> "KvshServer":
        return self

    def __exit__(self, *exc_info) -> None:
        stop_child(self.proc)

    def shutdown(self) -> int:
        """SIGTERM; it must exit 0 (after fsyncing) in time. Returns peak RSS."""
        self.proc.send_signal(signal.SIGTERM)
        returncode, maxrss, _ = reap(self.proc, timeout=SERVER_STOP_TIMEOUT)
        if returncode != 0:
            raise BenchError(f"kvsh serve exited with {returncode} after SIGTERM; log:\n"
                             f"{self.log_tail()}")
        return maxrss

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_for_ping(server: "KvshServer | RedisServer", what: str,
                  timeout: float = SERVER_START_TIMEOUT) -> None:
    """Poll (10 ms) until ``server`` accepts a connection and answers PING with PONG."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = RespConnection(server.port, timeout=5)
            try:
                reply = conn.call("PING")
            finally:
                conn.close()
            if reply == "PONG":
                return
            raise BenchError(f"{what} answered PING with {reply!r}")
        except RedisError as err:
            if not str(err).startswith("LOADING"):
                raise BenchError(f"{what} answered PING with -{err}") from None
        except OSError:  # refused, reset, closed, timed out: not up yet
            pass
        if server.proc.poll() is not None:
            raise BenchError(f"{what} exited with {server.proc.returncode} before answering "
                             f"PING; log:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not answer PING within {timeout:g} s")
        time.sleep(0.01)


@dataclass(frozen=True)
class ServerWorkload:
    """One redis-benchmark invocation: which tests, with which pipelining, at which sync."""

    sync: str  # kvsh --sync and redis --appendfsync: "everysec" or "always"
    tests: tuple[str, ...]  # redis-benchmark -t, lower case
    pipeline: int = 1  # redis-benchmark -P; 1 = no pipelining
    client_threads: int = 1  # redis-benchmark --threads; 1 = its default single thread

    def row(self, test: str) -> str:
        """The row label of ``test`` ("SET", "GET -P 16", "SET, client --threads 2", ...)."""
        return (test.upper() + (f" -P {self.pipeline}" if self.pipeline > 1 else "")
                + (f", client --threads {self.client_threads}" if self.client_threads > 1 else ""))

    @property
    def has_goal(self) -> bool:
        """Whether the issue sets a goal for this workload (the rest are extra rows)."""
        return self.client_threads == 1 and (self.sync == "everysec" or self.pipeline == 1)


SERVER_WORKLOADS = (ServerWorkload("everysec", ("set", "get")),
                    ServerWorkload("everysec", ("set", "get"), SERVER_PIPELINE),
                    ServerWorkload("everysec", ("set", "get"), client_threads=2),
                    ServerWorkload("always", ("set",)),
                    ServerWorkload("always", ("set",), SERVER_PIPELINE))

# The workloads of the one-off kvsh --threads comparison: everysec, single-threaded client.
SERVER_THREADS_WORKLOADS = tuple(w for w in SERVER_WORKLOADS if w.sync == "everysec" and w.client_threads == 1)


def redis_benchmark_argv(port: int, workload: ServerWorkload, requests: int) -> list[str]:
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port),
            "-t", ",".join(workload.tests), "-n", str(requests), "-c", str(SERVER_CLIENTS),
            "--csv"]
    if workload.pipeline > 1:
        argv += ["-P", str(workload.pipeline)]
    if workload.client_threads > 1:
        argv += ["--threads", str(workload.client_threads)]
    return argv


def process_counters(pid: int) -> tuple[float, int]:
    """(user + system CPU seconds, voluntary context switches) of a running process, all threads.

    A voluntary switch is a thread going to sleep (for a server's event loop: waiting in epoll_wait with
    nothing to do), which a client then pays to wake.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    sleeps = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    sleeps += int(line.split()[1])
        except OSError:  # a thread that ended meanwhile
            pass
    return cpu, sleeps


def parse_benchmark_csv(text: str, tests: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """redis-benchmark --csv output as {"SET": {"rps": ..., "p99_latency_ms": ...}, ...}.

    The header must be the one redis-benchmark 7.0 prints, and there must be
    exactly one row per test asked for.
    """
    rows = list(csv.reader(line for line in text.splitlines() if line.strip()))
    if not rows or rows[0] != BENCH_CSV_HEADER:
        raise BenchError(f"redis-benchmark CSV header is {rows[0] if rows else None}, "
                         f"expected {BENCH_CSV_HEADER}")
    parsed = {}
    for row in rows[1:]:
        if len(row) != len(BENCH_CSV_HEADER):
            raise BenchError(f"redis-benchmark CSV row {row} has {len(row)} fields")
        try:
            parsed[row[0]] = {k: float(v) for k, v in zip(BENCH_CSV_HEADER[1:], row[1:])}
        except ValueError:
            raise BenchError(f"redis-benchmark CSV row {row} is not numeric") from None
    wanted = [t.upper() for t in tests]
    if sorted(parsed) != sorted(wanted) or len(rows) - 1 != len(wanted):
        raise BenchError(f"redis-benchmark printed rows for {list(parsed)}, expected {wanted}")
    return parsed


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


@dataclass
class Samples:
    """Repeated observations of one metric."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.values), max(self.values)


@dataclass
class Results:
    """Everything measured, keyed by ``system`` / ``metric``."""

    samples: dict[str, Samples] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    rss_floor: int = 0  # harness_peak_rss() once the last peak RSS was taken
    notes: dict[str, list[str]] = field(default_factory=dict)  # table ("load", ...) -> notes

    def add(self, name: str, value: float) -> None:
        self.samples.setdefault(name, Samples()).add(value)

    def note(self, table: str, text: str) -> None:
        """Attach ``text`` once to the table named ``table``."""
        notes = self.notes.setdefault(table, [])
        if text not in notes:
            notes.append(text)

    def get(self, name: str) -> Samples | None:
        return self.samples.get(name)


@dataclass
class RangeScripts:
    """The range-query scripts over a store holding key_for(0) .. key_for(keys - 1)."""

    keys: int
    starts: list[int]  # index of each query's start key
    kvsh: Path  # RANGE key:XXXXXXX + LIMIT 100, one per line
    sql: Path  # SELECT key, value FROM kv WHERE key >= ... ORDER BY key LIMIT 100;
    empty: Path  # no commands at all: startup and exit


class Bench:
    """Runs the measurements for the selected systems in one work directory."""

    def __init__(self, args: argparse.Namespace, data: DataSet | None):
        self.kvsh = str(Path(args.kvsh).resolve()) if args.kvsh else None
        self.runs = args.runs
        self.work = args.work
        self.data = data  # None when only the server part runs
        self.n = args.lines
        self.server_requests = args.server_requests
        self.results = Results()
        self.kvsh_compacted_ready = False  # set by prepare_kvsh_compacted()

    # --- paths of the stores left by the last load run -------------------

    @property
    def kvsh_store(self) -> Path:
        return self.work / "kvsh" / "load"

    @property
    def redis_store(self) -> Path:
        return self.work / "redis" / "load"

    @property
    def redis_rewritten_store(self) -> Path:
        return self.work / "redis" / "rewritten"

    @property
    def sqlite_db(self) -> Path:
        return self.work / "sqlite" / "db.sqlite"

    @property
    def kvsh_compacted_store(self) -> Path:
        """A copy of the loaded kvsh store after one ``:compact``."""
        return self.work / "kvsh" / "compacted"

    @property
    def kvsh_small_store(self) -> Path:
        """The first N/10 lines, loaded and compacted, for the range part."""
        return self.work / "kvsh" / "range-small"

    # --- stores kept between invocations (reused when --parts omits load) -

    def _stamp_path(self, system: str) -> Path:
        return self.work / system / "store.json"

    def _stamp_wanted(self) -> dict:
        return {"lines": self.n, "format": DATA_FORMAT_VERSION}

    def forget_store(self, system: str) -> None:
        """Mark ``system``'s stores as not reusable (a load is about to replace them)."""
        self._stamp_path(system).unlink(missing_ok=True)

    def stamp_store(self, system: str) -> None:
        """Mark ``system``'s stores as complete for this data set."""
        self._stamp_path(system).write_text(json.dumps(self._stamp_wanted()))

    def store_reusable(self, system: str) -> bool:
        """Whether an earlier run left complete stores for this data set.

        For kvsh the store must also open with this binary and hold N keys
        (the log format may have changed since).
        """
        stamp = self._stamp_path(system)
        if not stamp.exists() or json.loads(stamp.read_text()) != self._stamp_wanted():
            return False
        if system == "kvsh":
            done = run_timed([self.kvsh, "--data-dir", str(self.kvsh_store), "DBSIZE"],
                             capture=True)
            return done.returncode == 0 and done.stdout.strip() == str(self.n).encode()
        return True

    def ensure_stores(self, systems: list[str]) -> None:
        """Without the load part: reuse the stores of an earlier run, else load once, untimed."""
        loaders = {"kvsh": [self.validate_kvsh_load],
                   "redis": [self.untimed(self.load_redis), self.rewrite_redis_store],
                   "sqlite": [self.untimed(self.load_sqlite)]}
        for system in systems:
            if self.store_reusable(system):
                print(f"[prepare] {system}: reusing the loaded store in {self.work / system}",
                      file=sys.stderr)
                continue
            print(f"[prepare] {system}: no reusable store; loading once, untimed",
                  file=sys.stderr)
            self.forget_store(system)
            for step in loaders[system]:
                step()
            self.stamp_store(system)

    def untimed(self, step: Callable[[], None]) -> Callable[[], None]:
        """``step`` with whatever it measures thrown away."""
        def run() -> None:
            kept, self.results = self.results, Results()
            try:
                step()
            finally:
                self.results = kept
        return run

    # --- 1. bulk load -----------------------------------------------------

    def validate_kvsh_load(self) -> None:
        """Untimed first run: exit status 0 and exactly one reply line per command."""
        store = fresh_dir(self.kvsh_store)
        replies = self.work / "kvsh" / "replies.txt"
        done = run_timed([self.kvsh, "--data-dir", str(store), "--sync", "always"],
                         stdin_path=self.data.txt, stdout_path=replies)
        self._check_exit("kvsh load", done)
        with open(replies, "rb") as f:
            count = sum(1 for _ in f)
        if count != self.n:
            raise BenchError(f"kvsh printed {count} reply lines for {self.n} commands")
        replies.unlink()

    def load_kvsh(self) -> None:
        store = fresh_dir(self.kvsh_store)
        os.sync()
        done = run_timed([self.kvsh, "--data-dir", str(store), "--sync", "always"],
                         stdin_path=self.data.txt)
        self._check_exit("kvsh load", done)
        self.results.add("kvsh.load_rate", self.n / done.seconds)
        self.results.add("kvsh.load_rss", done.maxrss_bytes)

    def load_redis(self) -> None:
        """Fresh server and dir; time `redis-cli --pipe`; leave the AOF on disk."""
        store = fresh_dir(self.redis_store)
        with RedisServer(store) as server:
            server.call_when_loaded("PING", timeout=30)
            os.sync()
            done = run_timed(["redis-cli", "-p", str(server.port), "--pipe"],
                             stdin_path=self.data.txt, capture=True)
            self._check_exit("redis-cli --pipe", done)
            summary = done.stdout.decode()
            if f"errors: 0, replies: {self.n}" not in summary:
                raise BenchError(f"redis-cli --pipe summary:\n{summary}")
            dbsize = server.call("DBSIZE")
            if dbsize != self.n:
                raise BenchError(f"redis DBSIZE {dbsize} after load, expected {self.n}")
            server.wait_for_aof_rewrite()
            memory = server.info("memory")
            server.shutdown()
        if "Starting automatic rewriting of AOF" in server.log.read_text():
            self.results.note("load", "redis ran its automatic AOF rewrite (default "
                              "auto-aof-rewrite-min-size 64mb: fork + RDB base file) during "
                              "the timed load.")
        self.results.add("redis.load_rate", self.n / done.seconds)
        self.results.add("redis.used_memory", int(memory["used_memory"]))
        self.results.add("redis.used_memory_rss", int(memory["used_memory_rss"]))

    def load_sqlite(self) -> None:
        db = self.sqlite_db
        fresh_dir(db.parent)
        os.sync()
        done = run_timed(["sqlite3", str(db)], stdin_path=self.data.sql)
        self._check_exit("sqlite3 load", done)
        rows = run_timed(["sqlite3", str(db), "SELECT count(*) FROM kv;"], capture=True)
        if rows.stdout.strip() != str(self.n).encode():
            raise BenchError(f"sqlite has {rows.stdout.strip()!r} rows, expected {self.n}")
        self.results.add("sqlite.load_rate", self.n / done.seconds)

    # --- 2. startup + one GET ----------------------------------------------

    def startup_kvsh(self) -> None:
        """Wall time of `kvsh --data-dir D GET <middle key>` on a copy of the loaded store."""
        store = self.work / "kvsh" / "startup"
        copy_fresh(self.kvsh_store, store)
        files = ", ".join(f"{p.name} {fmt_bytes(p.stat().st_size)}"
                          for p in sorted(store.iterdir()) if p.suffix in (".image", ".log"))
        self.results.note("startup", f"kvsh store as loaded: {files}")
        done = run_timed([self.kvsh, "--data-dir", str(store), "GET", self.data.middle_key],
                         capture=True)
        self._check_exit("kvsh GET", done)
        if self.data.middle_value not in done.stdout.decode(errors="replace"):
            raise BenchError(f"kvsh GET printed {done.stdout[:200]!r}, not the value")
        self.results.add("kvsh.startup", done.seconds)
        self.results.add("kvsh.startup_rss", done.maxrss_bytes)

    def rewrite_redis_store(self) -> None:
        """Untimed: BGREWRITEAOF a copy of the loaded store into one RDB-preamble base.

        This is the layout redis converges to with aof-use-rdb-preamble, and
        its fastest startup; the store as left by the load is usually a base
        RDB from redis's own automatic rewrite plus a long incr AOF to replay.
        """
        store = fresh_dir(self.redis_rewritten_store)
        copy_fresh(self.redis_store / REDIS_AOF_DIR, store / REDIS_AOF_DIR)
        with RedisServer(store) as server:
            server.call_when_loaded("PING")
            server.wait_for_aof_rewrite()  # it may start one by itself after loading
            server.call("BGREWRITEAOF")
            server.wait_for_aof_rewrite()
            server.shutdown()

    def startup_redis(self) -> None:
        """redis-server on the AOF as left by the load."""
        self._startup_redis_from(self.redis_store, "redis")

    def startup_redis_rewritten(self) -> None:
        """redis-server on the rewritten AOF (one RDB-preamble base file)."""
        self._startup_redis_from(self.redis_rewritten_store, "redis_rewritten")

    def _startup_redis_from(self, source: Path, name: str) -> None:
        """Time from exec of redis-server on a copy of ``source``'s AOF to the GET reply."""
        store = fresh_dir(self.work / "redis" / "startup")
        copy_fresh(source / REDIS_AOF_DIR, store / REDIS_AOF_DIR)
        start = time.perf_counter()
        with RedisServer(store) as server:
            value = server.call_when_loaded("GET", self.data.middle_key)
            seconds = time.perf_counter() - start
            if value != self.data.middle_value:
                raise BenchError(f"redis GET returned {value!r}")
            dbsize = server.call("DBSIZE")
            if dbsize != self.n:
                raise BenchError(f"redis loaded {dbsize} keys from {source}, expected {self.n}")
            maxrss = server.shutdown()
        self.results.add(f"{name}.startup", seconds)
        self.results.add(f"{name}.startup_log", redis_aof_load_seconds(server.log))
        self.results.add(f"{name}.startup_rss", maxrss)

    def startup_sqlite(self) -> None:
        """For reference: `sqlite3 db "SELECT value ... WHERE key=<middle>"`."""
        db = self.work / "sqlite" / "startup" / "db.sqlite"
        copy_fresh(self.sqlite_db.parent, db.parent)
        done = run_timed(["sqlite3", str(db),
                          f"SELECT value FROM kv WHERE key='{self.data.middle_key}';"],
                         capture=True)
        self._check_exit("sqlite3 SELECT", done)
        if done.stdout.decode().strip() != self.data.middle_value:
            raise BenchError(f"sqlite3 SELECT printed {done.stdout[:200]!r}")
        self.results.add("sqlite.startup", done.seconds)

    # --- 3. startup after :compact ------------------------------------------

    def compact_kvsh(self, store: Path) -> str:
        """Untimed: `kvsh --data-dir STORE :compact`; check it left one image and an empty log.

        Returns the line kvsh printed about the checkpoint.
        """
        done = run_timed([self.kvsh, "--data-dir", str(store), ":compact"], capture=True)
        self._check_exit("kvsh :compact", done)
        images = sorted(store.glob("*.image"))
        logs = sorted(store.glob("*.log"))
        leftovers = sorted(p.name for p in store.glob("*.tmp"))
        if len(images) != 1 or len(logs) != 1 or leftovers:
            raise BenchError(f"after :compact {store} holds {[p.name for p in images]}, "
                             f"{[p.name for p in logs]}, {leftovers}; expected one image "
                             "and one log")
        if logs[0].stat().st_size > KVSH_COMPACTED_LOG_MAX:
            raise BenchError(f"after :compact {logs[0]} holds {logs[0].stat().st_size} bytes, "
                             f"expected at most {KVSH_COMPACTED_LOG_MAX}")
        return done.stdout.decode(errors="replace").strip()

    def prepare_kvsh_compacted(self) -> None:
        """Untimed: copy the loaded kvsh store and run :compact on the copy once."""
        store = self.kvsh_compacted_store
        copy_fresh(self.kvsh_store, store)
        report = self.compact_kvsh(store)
        files = ", ".join(f"{p.name} {fmt_bytes(p.stat().st_size)}"
                          for p in sorted(store.iterdir()) if p.suffix in (".image", ".log"))
        self.results.note("startup", f"kvsh after :compact (run once, untimed): {files}; "
                          f"kvsh said: {report}")
        self.kvsh_compacted_ready = True

    def startup_kvsh_compacted(self) -> None:
        """Wall time of `kvsh --data-dir D GET <middle key>` on a copy of the compacted store."""
        store = self.work / "kvsh" / "startup"
        copy_fresh(self.kvsh_compacted_store, store)
        done = run_timed([self.kvsh, "--data-dir", str(store), "GET", self.data.middle_key],
                         capture=True)
        self._check_exit("kvsh GET after :compact", done)
        if self.data.middle_value not in done.stdout.decode(errors="replace"):
            raise BenchError(f"kvsh GET after :compact printed {done.stdout[:200]!r}, "
                             "not the value")
        self.results.add("kvsh_compacted.startup", done.seconds)
        self.results.add("kvsh_compacted.startup_rss", done.maxrss_bytes)

    # --- 4. range queries ---------------------------------------------------

    def prepare_kvsh_small(self) -> None:
        """Untimed: load the first N/10 lines of data.txt into a fresh store, then :compact it."""
        lines = self.n // 10
        head = self.work / "kvsh" / "range-small.txt"
        with open(self.data.txt, "rb") as src, open(head, "wb") as dst:
            for _ in range(lines):
                dst.write(src.readline())
        store = fresh_dir(self.kvsh_small_store)
        done = run_timed([self.kvsh, "--data-dir", str(store), "--sync", "none"], stdin_path=head)
        self._check_exit(f"kvsh load of {lines} lines", done)
        head.unlink()
        self.compact_kvsh(store)

    def write_range_scripts(self, keys: int) -> RangeScripts:
        """The query scripts over a store holding key_for(0) .. key_for(keys - 1).

        RANGE_QUERIES start keys drawn with a fixed seed among those that have
        at least RANGE_LIMIT keys from them on, so every query returns exactly
        RANGE_LIMIT pairs.
        """
        rng = random.Random(RANGE_SEED)
        starts = [rng.randrange(keys - RANGE_LIMIT + 1) for _ in range(RANGE_QUERIES)]
        directory = self.work / "range"
        directory.mkdir(exist_ok=True)
        scripts = RangeScripts(keys, starts, directory / f"range-{keys}.kv",
                               directory / f"range-{keys}.sql", directory / "empty.txt")
        scripts.kvsh.write_text("".join(f"RANGE {key_for(i)} + LIMIT {RANGE_LIMIT}\n"
                                        for i in starts))
        scripts.sql.write_text("".join(f"SELECT key, value FROM kv WHERE key >= '{key_for(i)}' "
                                       f"ORDER BY key LIMIT {RANGE_LIMIT};\n" for i in starts))
        scripts.empty.write_text("")
        return scripts

    def validate_range(self, what: str, argv: list[str], script: Path,
                       scripts: RangeScripts, row: Callable[[int], str]) -> None:
        """Untimed: run ``script`` once; its output must be the expected rows, ``row(i)`` each."""
        done = run_timed(argv, stdin_path=script, capture=True)
        self._check_exit(what, done)
        expected = "".join(f"{row(j)}\n" for i in scripts.starts
                           for j in range(i, i + RANGE_LIMIT)).encode()
        lines, expected_lines = done.stdout.count(b"\n"), expected.count(b"\n")
        if lines != expected_lines:
            raise BenchError(f"{what} printed {lines:,} lines, expected {expected_lines:,}")
        if done.stdout != expected:
            pairs = zip(done.stdout.split(b"\n"), expected.split(b"\n"))
            number, got, want = next((k, g, w) for k, (g, w) in enumerate(pairs, 1) if g != w)
            raise BenchError(f"{what}: output line {number} is {got[:120]!r}, "
                             f"expected {want[:120]!r}")

    def prepare_range(self, systems: list[str]) -> None:
        """Untimed: write the scripts, build the N/10 store, check each output once."""
        self.range_scripts = self.write_range_scripts(self.n)
        self.range_small_scripts = None
        if "kvsh" in systems:
            def kvsh_row(i: int) -> str:
                return f"{key_for(i)}\n{value_for(i)}"  # raw: a key line, then a value line

            self.validate_range("kvsh RANGE script",
                                self._kvsh_range_argv(self.kvsh_compacted_store),
                                self.range_scripts.kvsh, self.range_scripts, kvsh_row)
            if self.n // 10 >= RANGE_LIMIT:
                self.prepare_kvsh_small()
                self.range_small_scripts = self.write_range_scripts(self.n // 10)
                self.validate_range("kvsh RANGE script (N/10 keys)",
                                    self._kvsh_range_argv(self.kvsh_small_store),
                                    self.range_small_scripts.kvsh, self.range_small_scripts,
                                    kvsh_row)
            else:
                self.results.note("range", f"no N/10 run: {self.n // 10} keys are fewer than "
                                  f"LIMIT {RANGE_LIMIT}")
        if "sqlite" in systems:
            self.validate_range("sqlite3 SELECT script", ["sqlite3", str(self.sqlite_db)],
                                self.range_scripts.sql, self.range_scripts,
                                lambda i: f"{key_for(i)}|{value_for(i)}")

    def _kvsh_range_argv(self, store: Path) -> list[str]:
        return [self.kvsh, "--data-dir", str(store), "--format", "raw"]

    def _time_range(self, name: str, argv: list[str], script: Path, empty: Path) -> None:
        """One round: the empty script (startup), then the query script, output to /dev/null.

        Records both wall times and this round's (script − empty) / RANGE_QUERIES.
        """
        timings = []
        for path in (empty, script):
            done = run_timed(argv, stdin_path=path)
            self._check_exit(f"{name} range script {path.name}", done)
            timings.append(done.seconds)
        self.results.add(f"{name}.range_empty", timings[0])
        self.results.add(f"{name}.range_script", timings[1])
        self.results.add(f"{name}.range_query", (timings[1] - timings[0]) / RANGE_QUERIES)

    def range_kvsh(self) -> None:
        """`kvsh --data-dir D --format raw < script` on the compacted N-key and N/10-key stores."""
        self._time_range("kvsh", self._kvsh_range_argv(self.kvsh_compacted_store),
                         self.range_scripts.kvsh, self.range_scripts.empty)
        if self.range_small_scripts:
            self._time_range("kvsh_small", self._kvsh_range_argv(self.kvsh_small_store),
                             self.range_small_scripts.kvsh, self.range_small_scripts.empty)

    def range_sqlite(self) -> None:
        """`sqlite3 db < script` (the same start keys as kvsh's N-key script)."""
        self._time_range("sqlite", ["sqlite3", str(self.sqlite_db)],
                         self.range_scripts.sql, self.range_scripts.empty)

    # --- 5. sizes ----------------------------------------------------------

    def record_sizes(self, systems: list[str]) -> None:
        sizes = self.results.sizes
        sizes["input data.txt"] = self.data.txt.stat().st_size
        if "kvsh" in systems:
            sizes["kvsh *.log files"] = tree_size(self.kvsh_store, "*.log")
            if tree_size(self.kvsh_store, "*.image"):  # a background compaction ran during load
                sizes["kvsh *.image files, as loaded"] = tree_size(self.kvsh_store, "*.image")
            sizes["kvsh data dir (all files)"] = tree_size(self.kvsh_store)
            if self.kvsh_compacted_ready:
                store = self.kvsh_compacted_store
                sizes["kvsh *.image after :compact"] = tree_size(store, "*.image")
                sizes["kvsh data dir after :compact (all files)"] = tree_size(store)
        if "redis" in systems:
            for label, store in (("as loaded", self.redis_store),
                                 ("rewritten", self.redis_rewritten_store)):
                aof_dir = store / REDIS_AOF_DIR
                sizes[f"redis appendonlydir, {label}"] = tree_size(aof_dir)
                files = ", ".join(f"{p.name} {fmt_bytes(p.stat().st_size)}"
                                  for p in sorted(aof_dir.iterdir()) if p.suffix != ".manifest")
                self.results.note("startup", f"redis AOF {label}: {files}")
        if "sqlite" in systems:
            sizes["sqlite db file"] = self.sqlite_db.stat().st_size

    # --- 6. server: redis-benchmark against kvsh serve and redis-server ------

    def server_round(self, system: str, workload: ServerWorkload,
                     threads: int | None = None) -> None:
        """One redis-benchmark invocation against a fresh server on a fresh data dir.

        Records rps and p99 per test as ``NAME.server.SYNC.ROW.rps`` / ``.p99``,
        NAME being the system, or ``kvsh_tN`` for an explicit ``--threads N``.
        """
        name = system if threads is None else f"kvsh_t{threads}"
        what = f"{name} ({workload.sync})"
        base = fresh_dir(self.work / "server" / name)
        os.sync()  # the previous run's dirty pages are not flushed on this run's time
        if system == "kvsh":
            server = KvshServer(self.kvsh, fresh_dir(base / "data"), base / "kvsh.log",
                                workload.sync, threads)
        else:
            server = RedisServer(base, appendfsync=workload.sync)
        with server:
            wait_for_ping(server, what)
            cpu_before, sleeps_before = process_counters(server.proc.pid)
            done = run_timed(redis_benchmark_argv(server.port, workload, self.server_requests),
                             capture=True)
            cpu_after, sleeps_after = process_counters(server.proc.pid)
            self._check_exit(f"redis-benchmark against {what}", done)
            stderr = done.stderr.decode(errors="replace").strip()
            if "error" in stderr.lower():
                raise BenchError(f"redis-benchmark against {what} reported: {stderr[-2000:]}")
            if stderr:
                self.results.note("server", f"redis-benchmark said on stderr: {stderr[:300]}")
            parsed = parse_benchmark_csv(done.stdout.decode(errors="replace"), workload.tests)
            self._check_server_after_set(server.port, what)
            server.shutdown()
        self._note_server_housekeeping(system, base, what)
        for test, figures in parsed.items():
            key = f"{name}.server.{workload.sync}.{workload.row(test.lower())}"
            self.results.add(f"{key}.rps", figures["rps"])
            self.results.add(f"{key}.p99", figures["p99_latency_ms"])
            # How busy the client was: near 100% of a core per thread, it, not the server, sets the pace.
            self.results.add(f"{key}.client_cpu", done.cpu_seconds / done.seconds)
            # Costs per request over the whole invocation (SET and GET together when it runs both).
            requests = self.server_requests * len(workload.tests)
            self.results.add(f"{key}.server_us", (cpu_after - cpu_before) / requests * 1e6)
            self.results.add(f"{key}.client_us", done.cpu_seconds / requests * 1e6)
            self.results.add(f"{key}.server_sleeps", (sleeps_after - sleeps_before) / requests * 1000)

    def _check_server_after_set(self, port: int, what: str) -> None:
        """After redis-benchmark's SET: DBSIZE ≥ 1 and its key holds a payload of its size."""
        conn = RespConnection(port)
        try:
            dbsize = conn.call("DBSIZE")
            value = conn.call("GET", BENCH_KEY)
        finally:
            conn.close()
        if not isinstance(dbsize, int) or dbsize < 1:
            raise BenchError(f"{what}: DBSIZE is {dbsize!r} after redis-benchmark's SET")
        if value is None or len(value) != BENCH_VALUE_BYTES:
            raise BenchError(f"{what}: GET {BENCH_KEY} is {value!r}, expected "
                             f"{BENCH_VALUE_BYTES} bytes")

    def _note_server_housekeeping(self, system: str, base: Path, what: str) -> None:
        """Note background work that ran during a timed run (AOF rewrite, compaction)."""
        if system == "redis":
            if "Starting automatic rewriting of AOF" in (base / "redis.log").read_text():
                self.results.note("server", f"redis ran an automatic AOF rewrite during a run "
                                  f"({what}).")
        elif any((base / "data").glob("*.image")):
            self.results.note("server", f"kvsh wrote a checkpoint image (background compaction) "
                              f"during a run ({what}).")

    def run_server(self, systems: list[str]) -> None:
        """``self.runs`` rounds; in each, the systems take turns on every workload.

        Who goes first alternates from round to round. Then, once, kvsh with
        each of SERVER_THREADS on the everysec workloads.
        """
        active = [s for s in systems if s in PART_SYSTEMS["server"]]
        for round_no in range(1, self.runs + 1):
            order = active if round_no % 2 else active[::-1]
            for workload in SERVER_WORKLOADS:
                for system in order:
                    print(f"[server {round_no}/{self.runs}] {system} {workload.sync} "
                          f"-t {','.join(workload.tests)} -P {workload.pipeline}"
                          + (f" --threads {workload.client_threads}" if workload.client_threads > 1 else ""),
                          file=sys.stderr)
                    self.server_round(system, workload)
        if "kvsh" in active:
            for workload in SERVER_THREADS_WORKLOADS:
                for threads in SERVER_THREADS:
                    print(f"[server threads] kvsh --threads {threads} {workload.sync} "
                          f"-P {workload.pipeline}", file=sys.stderr)
                    self.server_round("kvsh", workload, threads)

    # --- driver ------------------------------------------------------------

    def run(self, systems: list[str], parts: list[str]) -> Results:
        """Interleave the systems within each round: load, startup (+ compact), range,
        then server phases."""
        if any(p in STORE_PARTS for p in parts):
            self.run_stores(systems, parts)
        if "server" in parts:
            self.run_server(systems)
        return self.results

    def run_stores(self, systems: list[str], parts: list[str]) -> None:
        """The parts on the generated data set: load, startup (+ compact), range, memory."""
        if "load" in parts:
            for system in systems:
                self.forget_store(system)
            if "kvsh" in systems:
                self.validate_kvsh_load()
            self._rounds("load", systems, {"kvsh": [self.load_kvsh], "redis": [self.load_redis],
                                           "sqlite": [self.load_sqlite]})
            if "redis" in systems:
                self.rewrite_redis_store()
            for system in systems:
                self.stamp_store(system)
        else:
            self.ensure_stores([s for s in systems
                                if any(s in PART_SYSTEMS[p] for p in parts if p in STORE_PARTS)])
        if "kvsh" in systems and ("compact" in parts or "range" in parts):
            self.prepare_kvsh_compacted()
        startup = "startup" in parts
        compact = "compact" in parts
        self._rounds("startup", systems, {
            "kvsh": [step for step, on in ((self.startup_kvsh, startup),
                                           (self.startup_kvsh_compacted, compact)) if on],
            "redis": [step for step, on in ((self.startup_redis, startup),
                                            (self.startup_redis_rewritten, startup or compact))
                      if on],
            "sqlite": [self.startup_sqlite] if startup else []})
        self.results.rss_floor = harness_peak_rss()  # no peak RSS is taken after this
        if "range" in parts and ("kvsh" in systems or "sqlite" in systems):
            self.prepare_range(systems)
            self._rounds("range", systems, {"kvsh": [self.range_kvsh],
                                            "sqlite": [self.range_sqlite]})
        if "memory" in parts:
            self.record_sizes(systems)

    def _rounds(self, phase: str, systems: list[str],
                steps: dict[str, list[Callable[[], None]]]) -> None:
        """Run ``steps[system]`` for every system, ``self.runs`` rounds in a row.

        Systems without steps in this phase are skipped.
        """
        active = [s for s in systems if steps.get(s)]
        if not active:
            return
        for round_no in range(1, self.runs + 1):
            for system in active:
                print(f"[{phase} {round_no}/{self.runs}] {system}", file=sys.stderr)
                for step in steps[system]:
                    step()

    @staticmethod
    def _check_exit(what: str, done: ChildResult) -> None:
        if done.returncode != 0:
            raise BenchError(f"{what} exited with {done.returncode}: "
                             f"{done.stderr.decode(errors='replace')[-2000:]}")


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        widths = [max(len(r[i]) for r in [self.headers, *self.rows])
                  for i in range(len(self.headers))]

        def fmt(row: list[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths)))

        out = [self.title, "-" * len(self.title), fmt(self.headers),
               "  ".join("-" * w for w in widths)]
        out += [fmt(r) for r in self.rows]
        out += [f"  * {n}" for n in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"#### {self.title}", "",
               "| " + " | ".join(self.headers) + " |",
               "|" + "|".join(["---"] + ["---:"] * (len(self.headers) - 1)) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out)


def fmt_rate(s: Samples) -> tuple[str, str]:
    lo, hi = s.spread
    return f"{s.median:,.0f}", f"{lo:,.0f} – {hi:,.0f}"


def fmt_seconds(s: Samples) -> tuple[str, str]:
    lo, hi = s.spread
    return f"{s.median * 1000:,.1f} ms", f"{lo * 1000:,.1f} – {hi * 1000:,.1f} ms"


def fmt_bytes(value: float) -> str:
    if value < 2**10:
        return f"{value:,.0f} B"
    if value < 2**20:
        return f"{value / 2**10:,.1f} KiB"
    return f"{value / 2**20:,.1f} MiB"


def goal_row(label: str, ratio: float, goal: float) -> list[str]:
    return [label, f"{ratio:.2f}×", f"≥ {goal:g}×", "met" if ratio >= goal else "NOT met"]


def close_row(label: str, ratio: float, factor: float) -> list[str]:
    """A ratio expected near 1: "close" when within ``factor`` either way."""
    close = 1 / factor <= ratio <= factor
    return [label, f"{ratio:.2f}×", f"≈ 1× (within {factor:g}×)",
            "close" if close else "NOT close"]


def info_row(label: str, ratio: float) -> list[str]:
    return [label, f"{ratio:.2f}×", "—", "—"]


def range_per_query(results: Results, name: str) -> float | None:
    """(median script time − median empty-script time) / RANGE_QUERIES, in seconds."""
    script, empty = results.get(f"{name}.range_script"), results.get(f"{name}.range_empty")
    if not script or not empty:
        return None
    return (script.median - empty.median) / RANGE_QUERIES


def build_range_table(results: Results, n: int, runs: int) -> tuple[Table | None, list]:
    """The range-query table and its ratio rows."""
    get = results.get
    stores = {"kvsh": f"kvsh, {n:,} keys (after :compact)",
              "kvsh_small": f"kvsh, {n // 10:,} keys (after :compact)",
              "sqlite": f"sqlite3, {n:,} keys"}
    rows = []
    for name, label in stores.items():
        per_query = range_per_query(results, name)
        if per_query is None:
            continue
        lo, hi = get(f"{name}.range_query").spread
        rows.append([label, fmt_seconds(get(f"{name}.range_script"))[0],
                     fmt_seconds(get(f"{name}.range_empty"))[0],
                     f"{per_query * 1e6:,.1f}", f"{lo * 1e6:,.1f} – {hi * 1e6:,.1f}"])
    if not rows:
        return None, []
    table = Table(
        f"Range queries: {RANGE_QUERIES:,} × {RANGE_LIMIT} pairs from random existing keys, "
        f"one process (median of {runs} runs)",
        ["store", "script (median)", "empty script (median)", "µs/query", "min – max µs/query"],
        rows,
        [f"kvsh: `RANGE key:XXXXXXX + LIMIT {RANGE_LIMIT}` per line, piped into "
         "`kvsh --data-dir D --format raw > /dev/null`; sqlite3: `SELECT key, value FROM kv "
         f"WHERE key >= 'key:XXXXXXX' ORDER BY key LIMIT {RANGE_LIMIT};` per line, piped into "
         "one `sqlite3 db > /dev/null`. Same start keys (seed "
         f"{RANGE_SEED}) for kvsh and sqlite3 on {n:,} keys.",
         "µs/query = (median script time − median empty-script time, i.e. startup) / "
         f"{RANGE_QUERIES:,}; min – max from each round's script minus that round's empty "
         "script.",
         f"Checked once before timing: kvsh printed exactly {RANGE_QUERIES:,} × {RANGE_LIMIT} "
         f"× 2 lines (raw: key, value, ...), sqlite3 {RANGE_QUERIES:,} × {RANGE_LIMIT} "
         "`key|value` lines, all of them the expected pairs.",
         *results.notes.get("range", [])])
    ratios = []
    kvsh, small, sqlite = (range_per_query(results, name) for name in stores)
    if kvsh and small:
        ratios.append(close_row(f"range µs/query kvsh {n:,} / {n // 10:,} keys (O(log n + k))",
                                kvsh / small, RANGE_CLOSE))
    if kvsh and sqlite:
        ratios.append(info_row("range µs/query sqlite/kvsh", sqlite / kvsh))
    return table, ratios


def build_tables(results: Results, n: int, runs: int, parts: list[str]) -> list[Table]:
    get = results.get
    tables = []

    rows = [[system, *fmt_rate(get(f"{system}.load_rate"))]
            for system in SYSTEMS if get(f"{system}.load_rate")]
    if rows:
        tables.append(Table(
            f"Bulk load, {n:,} SET lines (median of {runs} runs, fresh store each run)",
            ["system", "lines/s (median)", "min – max"], rows,
            ["kvsh: --sync always; redis: AOF appendfsync everysec via redis-cli --pipe "
             "(server already running); sqlite3: one transaction, default pragmas.",
             *results.notes.get("load", [])]))

    ratios = []
    kvsh_load = get("kvsh.load_rate")
    for other, goal in (("redis", GOAL_LOAD_VS_REDIS), ("sqlite", GOAL_LOAD_VS_SQLITE)):
        if kvsh_load and get(f"{other}.load_rate"):
            ratios.append(goal_row(f"load kvsh/{other}",
                                   kvsh_load.median / get(f"{other}.load_rate").median, goal))
    for redis, label in (("redis", "AOF as loaded"), ("redis_rewritten", "rewritten AOF")):
        if get("kvsh.startup") and get(f"{redis}.startup"):
            ratios.append(goal_row(f"startup redis/kvsh ({label})",
                                   get(f"{redis}.startup").median / get("kvsh.startup").median,
                                   GOAL_STARTUP_VS_REDIS))
    if get("kvsh_compacted.startup") and get("redis_rewritten.startup"):
        ratios.append(goal_row("startup redis (rewritten AOF) / kvsh (after :compact)",
                               get("redis_rewritten.startup").median
                               / get("kvsh_compacted.startup").median,
                               GOAL_COMPACTED_STARTUP_VS_REDIS))

    rows = []
    labels = {"kvsh.startup": "kvsh (exec → value printed → exit)",
              "kvsh_compacted.startup": "kvsh after :compact (exec → value printed → exit)",
              "redis.startup": "redis, AOF as loaded (exec → GET answered)",
              "redis.startup_log": "redis, AOF as loaded: load time from its log",
              "redis_rewritten.startup": "redis, rewritten AOF (exec → GET answered)",
              "redis_rewritten.startup_log": "redis, rewritten AOF: load time from its log",
              "sqlite.startup": "sqlite3 (exec → SELECT printed → exit), reference"}
    for name, label in labels.items():
        if get(name):
            rows.append([label, *fmt_seconds(get(name))])
    if rows:
        tables.append(Table(
            f"Startup with {n:,} keys + one GET (median of {runs} runs, warm page cache)",
            ["what", "wall time (median)", "min – max"], rows, results.notes.get("startup", [])))

    range_table, range_ratios = build_range_table(results, n, runs)
    if range_table:
        tables.append(range_table)
    ratios += range_ratios

    if ratios:
        tables.append(Table("Ratios (of medians) against goals",
                            ["ratio", "value", "goal", "status"], ratios))

    if "memory" not in parts:
        return tables
    rows = []
    memory = {"kvsh.startup_rss": "kvsh peak RSS, GET process",
              "kvsh_compacted.startup_rss": "kvsh peak RSS, GET process after :compact",
              "kvsh.load_rss": "kvsh peak RSS, bulk load process",
              "redis.used_memory": "redis used_memory after load",
              "redis.used_memory_rss": "redis used_memory_rss after load",
              "redis.startup_rss": "redis-server peak RSS, started from AOF as loaded",
              "redis_rewritten.startup_rss": "redis-server peak RSS, started from rewritten AOF"}
    floored = False
    for name, label in memory.items():
        if get(name):
            value = get(name).median
            # wait4's peak RSS (not redis INFO) cannot read below the harness's own peak.
            at_floor = name.endswith("_rss") and not name.startswith("redis.used") \
                and value <= results.rss_floor * 1.02
            floored |= at_floor
            rows.append([label, ("≤ " if at_floor else "") + fmt_bytes(value),
                         f"{value / n:,.1f}"])
    for label, value in results.sizes.items():
        rows.append([f"disk: {label}", fmt_bytes(value), f"{value / n:,.1f}"])
    notes = []
    if floored:
        notes.append("≤: at the floor of the measurement. Peak RSS comes from wait4, and Linux "
                     "carries the parent's high-water mark over vfork + exec, so no child reads "
                     f"below this harness's own peak RSS ({fmt_bytes(results.rss_floor)}); the "
                     "real figure is lower.")
    tables.append(Table(f"Memory and disk with {n:,} keys (medians)",
                        ["what", "size", "bytes/key"], rows, notes))
    return tables


def fmt_ms(value: float) -> str:
    return f"{value:,.3f}"


def server_goal(rps_ratio: float, p99_ratio: float | None) -> str:
    """Status against the server goals: kvsh ops/s ≥ redis, and (if given) p99 ≤ redis."""
    parts = ["ops/s " + ("met" if rps_ratio >= 1 else "NOT met")]
    if p99_ratio is not None:
        parts.append("p99 " + ("met" if p99_ratio <= 1 else "NOT met"))
    return ", ".join(parts)


def build_server_tables(results: Results, runs: int, requests: int) -> list[Table]:
    """The server tables: everysec and always side by side, spreads, kvsh threads."""
    get = results.get
    tables = []
    common = (f"`redis-benchmark -t set,get -n {requests:,} -c {SERVER_CLIENTS} --csv` "
              f"(SET only for always), `-P {SERVER_PIPELINE}` on the pipelined rows; one key "
              f"({BENCH_KEY}, {BENCH_VALUE_BYTES}-byte value), as redis-benchmark does without "
              "-r; `--threads 2` on the client-threads rows. A fresh server "
              "on a fresh data dir for every invocation; the systems take turns on each "
              "workload, who goes first alternating by round. redis-benchmark runs on the same "
              "machine (loopback) and shares its cores with the server.")
    checks = ("Checked after every run: redis-benchmark exit 0, CSV header and rows as expected, "
              f"DBSIZE ≥ 1 and GET {BENCH_KEY} gives {BENCH_VALUE_BYTES} bytes; kvsh exits 0 "
              "on SIGTERM, "
              "redis on SHUTDOWN NOSAVE (after fsyncing its AOF).")
    spreads = []
    for sync, title, kvsh_flags, redis_flags in (
            ("everysec", "everysec", "kvsh serve --sync everysec",
             "redis-server --appendonly yes --appendfsync everysec --save \"\""),
            ("always", "always (every acknowledged write on disk)", "kvsh serve --sync always",
             "redis-server --appendonly yes --appendfsync always --save \"\"")):
        rows = []
        for workload in (w for w in SERVER_WORKLOADS if w.sync == sync):
            for test in workload.tests:
                row = workload.row(test)
                kvsh = (get(f"kvsh.server.{sync}.{row}.rps"), get(f"kvsh.server.{sync}.{row}.p99"))
                redis = (get(f"redis.server.{sync}.{row}.rps"),
                         get(f"redis.server.{sync}.{row}.p99"))
                if not kvsh[0] and not redis[0]:
                    continue
                cells = [row]
                cells += [f"{s.median:,.0f}" if s else "—" for s in (kvsh[0], redis[0])]
                rps_ratio = kvsh[0].median / redis[0].median if kvsh[0] and redis[0] else None
                cells.append(f"{rps_ratio:.2f}×" if rps_ratio else "—")
                cells += [fmt_ms(s.median) if s else "—" for s in (kvsh[1], redis[1])]
                p99_ratio = kvsh[1].median / redis[1].median if kvsh[1] and redis[1] else None
                cells.append(f"{p99_ratio:.2f}×" if p99_ratio else "—")
                if rps_ratio is None:
                    cells.append("—")
                elif not workload.has_goal:
                    cells.append("(extra row, no goal)")
                else:
                    cells.append(server_goal(rps_ratio, p99_ratio if sync == "everysec" else None))
                rows.append(cells)
                for system, (rps, p99) in (("kvsh", kvsh), ("redis", redis)):
                    if rps:
                        def median(metric: str, form: str) -> str:
                            samples = get(f"{system}.server.{sync}.{row}.{metric}")
                            return format(samples.median, form) if samples else "—"
                        spreads.append([f"{sync} {row}", system,
                                        "{:,.0f} – {:,.0f}".format(*rps.spread),
                                        "{} – {}".format(*map(fmt_ms, p99.spread)),
                                        median("client_cpu", ".0%"), median("client_us", ".2f"),
                                        median("server_us", ".2f"), median("server_sleeps", ".1f")])
        if not rows:
            continue
        goal = ("goal: kvsh ≥ redis in ops/s on the four rows without `--threads`, p99 no worse"
                if sync == "everysec" else "goal: kvsh ≥ redis in ops/s on SET")
        tables.append(Table(
            f"Server, sync {title}: redis-benchmark -c {SERVER_CLIENTS} -n {requests:,} "
            f"(median of {runs} runs)",
            ["test", "kvsh ops/s", "redis ops/s", "ops/s kvsh/redis", "kvsh p99 ms",
             "redis p99 ms", "p99 kvsh/redis", "status"], rows,
            [f"`{kvsh_flags}` (default --threads) vs `{redis_flags}`; {goal}.",
             *([common, checks] if sync == "everysec" else [])]))
    if spreads:
        tables.append(Table(f"Server: spread over the {runs} runs, and what each request cost",
                            ["test", "system", "ops/s min – max", "p99 ms min – max", "client CPU",
                             "client µs/req", "server µs/req", "server sleeps /1k req"],
                            spreads,
                            ["Medians over the runs; one invocation runs SET and GET, so both rows show the same "
                             "per-invocation figures. client CPU: redis-benchmark's user + system time over its "
                             "wall time; near 100% per thread the client is saturated and sets the pace for "
                             "either server. client µs/req and server µs/req: user + system CPU time per request "
                             "(the server's from /proc/PID/stat, all threads; 10 ms clock ticks). server sleeps: "
                             "voluntary context switches of the server's threads per 1,000 requests, mostly an "
                             "event loop finding nothing to do and blocking in epoll_wait; each one a client "
                             "then pays for when its next write has to wake the server."]))

    rows = []
    for workload in SERVER_THREADS_WORKLOADS:
        for test in workload.tests:
            row = workload.row(test)
            samples = [(get(f"kvsh_t{t}.server.everysec.{row}.rps"),
                        get(f"kvsh_t{t}.server.everysec.{row}.p99")) for t in SERVER_THREADS]
            if not all(rps for rps, _ in samples):
                continue
            cells = [row]
            cells += [f"{rps.median:,.0f}" for rps, _ in samples]
            cells.append(f"{samples[1][0].median / samples[0][0].median:.2f}×")
            cells += [fmt_ms(p99.median) for _, p99 in samples]
            redis = get(f"redis.server.everysec.{row}.rps")
            cells.append(f"{redis.median:,.0f}" if redis else "—")
            rows.append(cells)
    if rows:
        t1, t2 = SERVER_THREADS
        cores = os.cpu_count() or 1
        tables.append(Table(
            "kvsh event-loop threads: sync everysec, one run each",
            ["test", f"--threads {t1} ops/s", f"--threads {t2} ops/s", f"{t2}/{t1}",
             f"--threads {t1} p99 ms", f"--threads {t2} p99 ms", "redis ops/s (median above)"],
            rows,
            [f"Default --threads is max(1, cores − 1) = {max(1, cores - 1)} on this machine "
             f"({cores} cores, shared with redis-benchmark). A single run per setting, taken "
             "after the rounds above: indicative only."]))
    if tables:
        tables[-1].notes += results.notes.get("server", [])
    return tables


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min)"


def environment(args: argparse.Namespace, command: str) -> list[tuple[str, str]]:
    """Facts about the machine and tools, to print above the results."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    df = subprocess.run(["df", "-hT", str(args.work)], capture_output=True, text=True)
    df_line = " ".join(df.stdout.strip().splitlines()[-1].split()) if df.returncode == 0 else "?"
    facts = [
        ("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
        ("nproc", command_output(["nproc"]) or str(os.cpu_count())),
        ("cpu", cpu),
        ("kernel", " ".join(platform.uname()[i] for i in (0, 2, 4))),
        ("python", platform.python_version()),
        ("redis-server", command_output(["redis-server", "--version"]) or "?"),
        ("sqlite3", command_output(["sqlite3", "--version"]) or "?"),
    ]
    if "server" in args.parts:
        facts.append(("redis-benchmark", command_output(["redis-benchmark", "--version"]) or "?"))
    if args.kvsh:
        version = command_output([args.kvsh, "--version"])
        if version:
            facts.append(("kvsh", version))
    facts += [("disk (df -hT work dir)", df_line), ("load average at start", load_average()),
              ("command", command)]
    return facts


def render(facts: list[tuple[str, str]], tables: list[Table], markdown: bool) -> str:
    if not markdown:
        width = max(len(k) for k, _ in facts)
        head = "\n".join(f"{k.ljust(width)}  {v}" for k, v in facts)
        return head + "\n\n" + "\n\n".join(t.text() for t in tables) + "\n"
    command = dict(facts)["command"]
    env_rows = "\n".join(f"| {k} | {v.replace('|', '/')} |" for k, v in facts if k != "command")
    return (f"### kvsh vs redis vs sqlite ({dict(facts)['date']})\n\n"
            f"```sh\n{command}\n```\n\n"
            f"| environment | |\n|---|---|\n{env_rows}\n\n"
            + "\n\n".join(t.markdown() for t in tables) + "\n")


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kvsh", help="path to the kvsh binary (e.g. .build/release/kvsh)")
    parser.add_argument("--lines", type=int, default=1_000_000, help="number of SET lines")
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement")
    parser.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "work",
                        help="scratch directory (default: Benchmarks/work)")
    parser.add_argument("--markdown", type=Path, help="also write a Markdown section here")
    parser.add_argument("--only", default=",".join(SYSTEMS),
                        help="comma-separated subset of: " + ",".join(SYSTEMS))
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="comma-separated subset of: " + ",".join(PARTS)
                        + " (without load, the stores of an earlier run are reused)")
    parser.add_argument("--server-requests", type=int, default=SERVER_REQUESTS,
                        help="redis-benchmark -n for the server part (default: %(default)s)")
    args = parser.parse_args(argv)
    args.systems = [s for s in SYSTEMS if s in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(SYSTEMS)
    if unknown or not args.systems:
        parser.error(f"--only takes a subset of {','.join(SYSTEMS)}")
    wanted_parts = args.parts.split(",")
    args.parts = [p for p in PARTS if p in wanted_parts]
    if set(wanted_parts) - set(PARTS) or not args.parts:
        parser.error(f"--parts takes a subset of {','.join(PARTS)}")
    if not any(s in PART_SYSTEMS[p] for p in args.parts for s in args.systems):
        parser.error("nothing to measure: " + "; ".join(
            f"{p} runs for {','.join(PART_SYSTEMS[p])}" for p in args.parts))
    if args.server_requests < 1:
        parser.error("--server-requests must be ≥ 1")
    if args.lines < 1 or args.lines > 10_000_000 or args.runs < 1:
        parser.error("--lines must be in 1..10,000,000 (7-digit keys) and --runs ≥ 1")
    if "range" in args.parts and args.lines < RANGE_LIMIT:
        parser.error(f"--parts range needs --lines ≥ {RANGE_LIMIT} (LIMIT {RANGE_LIMIT})")
    if "kvsh" in args.systems:
        if not args.kvsh:
            parser.error("--kvsh is required unless --only excludes kvsh")
        if not os.access(args.kvsh, os.X_OK):
            parser.error(f"{args.kvsh} is not an executable file")
    needed = {"redis": ["redis-server", "redis-cli"], "sqlite": ["sqlite3"]}
    tools = [tool for system in args.systems for tool in needed.get(system, [])]
    if "server" in args.parts:
        tools.append("redis-benchmark")  # drives both servers
    for tool in tools:
        if not shutil.which(tool):
            parser.error(f"{tool} not found on PATH")
    args.work = args.work.resolve()
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = shlex.join(["python3", *sys.argv])
    # Turn SIGTERM/SIGHUP into an exception so the finally below still runs.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    try:
        args.work.mkdir(parents=True, exist_ok=True)
        facts = environment(args, command)
        print(f"load average at start: {dict(facts)['load average at start']}", file=sys.stderr)
        data = (prepare_data(args.work, args.lines)
                if any(p in STORE_PARTS for p in args.parts) else None)
        results = Bench(args, data).run(args.systems, args.parts)
        facts.insert(len(facts) - 1, ("load average at end", load_average()))
        tables = build_tables(results, args.lines, args.runs, args.parts)
        if "server" in args.parts:
            tables += build_server_tables(results, args.runs, args.server_requests)
        print(render(facts, tables, markdown=False))
        if args.markdown:
            args.markdown.write_text(render(facts, tables, markdown=True))
            print(f"markdown written to {args.markdown}", file=sys.stderr)
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        kill_leftovers()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
