"""6. Server: redis-benchmark against kvsh serve and redis-server."""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import (
    BENCH_CSV_HEADER, BENCH_KEY, BENCH_VALUE_BYTES, BenchError, PART_SYSTEMS, SERVER_CLIENTS,
    SERVER_PIPELINE, SERVER_THREADS,
)
from .processes import fresh_dir, run_timed
from .resp import RespConnection
from .servers import KvshServer, RedisServer, wait_for_ping


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


class ServerPart:
    """6. Server: redis-benchmark against kvsh serve and redis-server.

    A mixin of Bench (suite.py): its methods use the settings and results of BenchCore (measure.py)."""

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
