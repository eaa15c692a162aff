"""7. Replication (issue 11): kvsh primary -> kvsh replica beside redis -> redis.

Three measurements, the systems taking turns within each round:

- full sync: a primary holding the N keys of the data set (started once per system, untimed), a fresh
  replica process on a fresh data dir per run; the clock runs from sending ``REPLICAOF`` to the
  replica reporting ``master_link_status:up`` with ``DBSIZE`` = N (INFO polled every 2 ms). The CPU
  time of both processes over that window comes from /proc/PID/stat (redis's primary: with its reaped
  fork child, after the background save has ended);
- ``redis-benchmark -t set -c 50 -P 1`` and ``-P 16`` against a primary with one replica attached,
  everysec on both; a thread samples the primary's INFO replication (master_repl_offset and slave0's
  acknowledged offset) and the replica's own applied offset every 10 ms, for the lag figures;
- synchronous replication: kvsh ``--sync-replicas 1`` beside redis with ``WAIT 1 0`` after every SET,
  driven by one small client (``sync_client``, threads over plain sockets) for both.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import (
    BenchError, PART_SYSTEMS, REDIS_REPL_ARGS, REPL_BENCH_PIPELINES, REPL_POLL_INTERVAL,
    REPL_QUIET_SECONDS, REPL_SAMPLE_INTERVAL, REPL_SYNC_TIMEOUT, SYNC_CLIENTS, SYNC_STALL_SECONDS,
    VALUE_BYTES,
)
from .dataset import value_for
from .processes import fresh_dir, run_timed
from .resp import RedisError, RespConnection, parse_info
from .server import ServerWorkload, parse_benchmark_csv, redis_benchmark_argv
from .servers import KvshServer, RedisServer, wait_for_ping


# The synchronous-replication configurations: (name, system, primary sync, replica sync).
# kvsh's primary runs --sync-replicas 1; redis's client sends WAIT 1 0 after every SET.
SYNC_CONFIGS = (("kvsh", "kvsh", "everysec", "always"),
                ("redis", "redis", "everysec", "always"),
                ("kvsh_re", "kvsh", "everysec", "everysec"),
                ("redis_re", "redis", "everysec", "everysec"))


def proc_cpu(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of a running process (all threads; with ``children``, its reaped children too)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))]


def slave0_offset(info: dict[str, str]) -> int | None:
    """slave0's acknowledged offset from a primary's INFO replication, None while it is not online."""
    line = info.get("slave0")
    if not line:
        return None
    fields = dict(part.split("=", 1) for part in line.split(","))
    return int(fields["offset"]) if fields.get("state") == "online" else None


@dataclass
class LagSample:
    at: float  # perf_counter
    master: int  # primary's master_repl_offset
    acked: int  # slave0's acknowledged offset (the primary's view)
    applied: int  # the replica's own slave_repl_offset (what it has processed)


@dataclass
class LagSampler:
    """Samples the primary's and the replica's INFO replication every REPL_SAMPLE_INTERVAL in a thread."""

    primary_port: int
    replica_port: int
    samples: list[LagSample] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error:
            raise BenchError(f"lag sampler failed: {self.error!r}")

    def _run(self) -> None:
        try:
            primary = RespConnection(self.primary_port, timeout=30)
            replica = RespConnection(self.replica_port, timeout=30)
            try:
                next_at = time.perf_counter()
                while not self._stop.is_set():
                    at = time.perf_counter()
                    p = parse_info(primary.call("INFO", "replication"))
                    r = parse_info(replica.call("INFO", "replication"))
                    acked = slave0_offset(p)
                    if acked is not None:
                        self.samples.append(LagSample(at, int(p["master_repl_offset"]), acked,
                                                      int(r["slave_repl_offset"])))
                    next_at += REPL_SAMPLE_INTERVAL
                    self._stop.wait(max(0.0, next_at - time.perf_counter()))
            finally:
                primary.close()
                replica.close()
        except BaseException as err:  # reported by stop()
            self.error = err

    def latest(self) -> LagSample | None:
        return self.samples[-1] if self.samples else None


def lag_figures(samples: list[LagSample], start: float, end: float) -> dict[str, float]:
    """p50/p99 of the offset lag in bytes and in ms, acknowledged and applied, over [start, end].

    ms: for each sample in the window, the time until a later sample saw the replica's offset reach
    that sample's master offset (samples after ``end`` count, so the tail of the load is covered).
    """
    window = [i for i, s in enumerate(samples) if start <= s.at <= end]
    if not window:
        raise BenchError("no lag samples during the load")
    figures = {}
    for kind in ("acked", "applied"):
        lag_bytes, lag_ms = [], []
        unreached = 0
        j = window[0]
        for i in window:
            sample = samples[i]
            lag_bytes.append(max(0, sample.master - getattr(sample, kind)))
            j = max(j, i)
            while j < len(samples) and getattr(samples[j], kind) < sample.master:
                j += 1
            if j == len(samples):
                # Never reached (a replica whose offset falls short of its primary's): no ms figure for it.
                unreached += 1
                continue
            lag_ms.append((samples[j].at - sample.at) * 1000)
        for q, label in ((0.50, "p50"), (0.99, "p99")):
            figures[f"{kind}_bytes_{label}"] = percentile(lag_bytes, q)
            figures[f"{kind}_ms_{label}"] = percentile(lag_ms, q) if lag_ms else float("nan")
        figures[f"{kind}_unreached"] = unreached
    figures["samples"] = len(window)
    return figures


@dataclass
class SyncRun:
    """What the synchronous-write client saw."""

    seconds: float  # from the start to the last acknowledged write
    latencies: list[float]  # of the acknowledged writes, in seconds
    client_cpu: float  # seconds
    stalled: int  # connections whose write was not acknowledged within SYNC_STALL_SECONDS


def sync_client(port: int, wait: bool, clients: int, requests: int,
                timeout: float = SYNC_STALL_SECONDS) -> SyncRun:
    """The synchronous-write client: ``clients`` connections, each a thread running its share of
    ``requests`` SETs of distinct keys (``sync:C:I``, 100-byte values), one at a time.

    With ``wait``, every SET is followed by ``WAIT 1 0``, sent in the same write (one round trip);
    the write counts as acknowledged when both replies are in: ``+OK`` and ``:1``. Without, only
    ``+OK``. Any other reply fails the run. A connection whose write is not acknowledged within
    ``timeout`` seconds stops there and counts as stalled (the run is then reported as such, with
    what was acknowledged before).
    """
    value = value_for(0).encode()
    assert len(value) == VALUE_BYTES
    expected = b"+OK\r\n:1\r\n" if wait else b"+OK\r\n"
    tail = b"*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$1\r\n0\r\n" if wait else b""
    shares = [requests // clients + (1 if c < requests % clients else 0) for c in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    finished = [0.0] * clients
    errors: list[str] = []
    stalled: list[int] = []
    barrier = threading.Barrier(clients + 1, timeout=timeout)

    def worker(c: int) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as err:
            errors.append(f"connect: {err}")
            barrier.abort()
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            mine = latencies[c]
            clock = time.perf_counter
            barrier.wait()
            for i in range(shares[c]):
                key = b"sync:%d:%d" % (c, i)
                request = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (
                    len(key), key, len(value), value, tail)
                started = clock()
                sock.sendall(request)
                reply = sock.recv(256)
                while len(reply) < len(expected) and reply:
                    more = sock.recv(256)
                    if not more:
                        break
                    reply += more
                finished[c] = clock()
                mine.append(finished[c] - started)
                if reply != expected:
                    errors.append(f"connection {c} request {i}: reply {reply[:200]!r}")
                    return
        except socket.timeout:
            stalled.append(c)
        except (OSError, threading.BrokenBarrierError) as err:
            errors.append(f"connection {c}: {err!r}")
        finally:
            sock.close()

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(clients)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    cpu_before = time.process_time()
    started = time.perf_counter()
    bound = time.monotonic() + requests * timeout  # each request at most `timeout`; in practice far less
    for thread in threads:
        thread.join(max(0.0, bound - time.monotonic()))
    cpu = time.process_time() - cpu_before
    if any(thread.is_alive() for thread in threads):
        raise BenchError("the synchronous-write client did not finish in time")
    if errors:
        raise BenchError(f"synchronous-write client: {errors[0]} ({len(errors)} errors)")
    flat = [x for mine in latencies for x in mine]
    if not stalled and len(flat) != requests:
        raise BenchError(f"synchronous-write client: {len(flat)} replies for {requests} requests")
    seconds = max(finished) - started
    return SyncRun(seconds, flat, cpu, len(stalled))


class ReplicationPart:
    """7. Replication: full sync, SET with a replica attached, synchronous replication.

    A mixin of Bench (suite.py): its methods use the settings and results of BenchCore (measure.py)."""

    # --- servers -------------------------------------------------------------

    def _repl_server(self, system: str, base: Path, sync: str,
                     kvsh_args: list[str] | None = None) -> KvshServer | RedisServer:
        """A fresh server of ``system`` on a fresh dir ``base`` (kvsh: ``--sync``; redis: appendfsync)."""
        fresh_dir(base)
        if system == "kvsh":
            return KvshServer(self.kvsh, fresh_dir(base / "data"), base / "kvsh.log", sync,
                              extra_args=kvsh_args)
        return RedisServer(base, appendfsync=sync, extra_args=REDIS_REPL_ARGS)

    @staticmethod
    @contextlib.contextmanager
    def _after_ping(server: KvshServer | RedisServer, what: str):
        """A context that first waits for ``server`` to answer PING (so the next server starts after it listens)."""
        wait_for_ping(server, what)
        yield server

    @staticmethod
    def _stop(server: KvshServer | RedisServer) -> None:
        """Shut down cleanly (redis: after any AOF rewrite, which a replica starts after a full sync)."""
        if isinstance(server, RedisServer):
            server.wait_for_aof_rewrite()
        server.shutdown()

    @staticmethod
    def _attach(replica: KvshServer | RedisServer, primary: KvshServer | RedisServer,
                what: str) -> None:
        """REPLICAOF, then poll until the primary lists the replica online and the replica's link is up."""
        conn = RespConnection(replica.port)
        try:
            reply = conn.call("REPLICAOF", "127.0.0.1", str(primary.port))
            if reply != "OK":
                raise BenchError(f"{what}: REPLICAOF answered {reply!r}")
            deadline = time.monotonic() + REPL_SYNC_TIMEOUT
            while True:
                r = parse_info(conn.call("INFO", "replication"))
                p = parse_info(primary.call("INFO", "replication"))
                if r.get("master_link_status") == "up" and slave0_offset(p) is not None:
                    return
                if time.monotonic() > deadline:
                    raise BenchError(f"{what}: the replica did not come online; log:\n"
                                     f"{replica.log_tail()}")
                time.sleep(0.01)
        finally:
            conn.close()

    # --- 7a. full sync -------------------------------------------------------

    def _start_sync_primary(self, system: str) -> KvshServer | RedisServer:
        """Untimed: a primary holding the N keys of the data set.

        kvsh: the shell's bulk load (`--sync always`) and `:compact` (so no checkpoint starts during
        the runs), then `kvsh serve --sync everysec` on that store. redis: `redis-cli --pipe` of the
        same lines into `redis-server` (appendfsync everysec), then any automatic AOF rewrite finished.
        """
        base = fresh_dir(self.work / "replication" / f"{system}-primary")
        print(f"[replication] loading {self.n:,} keys into the {system} primary (untimed)",
              file=sys.stderr)
        if system == "kvsh":
            store = fresh_dir(base / "data")
            done = run_timed([self.kvsh, "--data-dir", str(store), "--sync", "always"],
                             stdin_path=self.data.txt)
            self._check_exit("kvsh load (replication primary)", done)
            self.compact_kvsh(store)
            server = KvshServer(self.kvsh, store, base / "kvsh.log", "everysec")
            wait_for_ping(server, "kvsh primary")
        else:
            server = RedisServer(base, appendfsync="everysec", extra_args=REDIS_REPL_ARGS)
            server.call_when_loaded("PING", timeout=30)
            done = run_timed(["redis-cli", "-p", str(server.port), "--pipe"],
                             stdin_path=self.data.txt, capture=True)
            self._check_exit("redis-cli --pipe (replication primary)", done)
            if f"errors: 0, replies: {self.n}" not in done.stdout.decode():
                raise BenchError(f"redis-cli --pipe summary:\n{done.stdout.decode()}")
            server.wait_for_aof_rewrite()
        dbsize = server.call("DBSIZE")
        if dbsize != self.n:
            raise BenchError(f"{system} primary: DBSIZE {dbsize}, expected {self.n}")
        return server

    def _restart_sync_primary(self, system: str, old: KvshServer | RedisServer) -> KvshServer | RedisServer:
        """A primary that exited (stopped from outside: the machine is shared) started again on its store."""
        self.results.note("replication", f"the {system} primary of the full-sync runs exited (code "
                          f"{old.proc.returncode}, not stopped by this script) and was started again on "
                          "its store; the run it broke was repeated.")
        print(f"[replication] the {system} primary exited ({old.proc.returncode}); starting it again",
              file=sys.stderr)
        old.__exit__(None, None, None)
        base = self.work / "replication" / f"{system}-primary"
        if system == "kvsh":
            server = KvshServer(self.kvsh, base / "data", base / "kvsh.restarted.log", "everysec")
            wait_for_ping(server, "kvsh primary (restarted)")
        else:
            server = RedisServer(base, appendfsync="everysec", extra_args=REDIS_REPL_ARGS)
            server.call_when_loaded("PING")
        dbsize = server.call("DBSIZE")
        if dbsize != self.n:
            raise BenchError(f"{system} primary (restarted): DBSIZE {dbsize}, expected {self.n}")
        return server

    def full_sync_round(self, system: str, primary: KvshServer | RedisServer) -> None:
        """One fresh replica of ``primary``; time REPLICAOF → link up with DBSIZE = N."""
        what = f"{system} replica (full sync)"
        base = self.work / "replication" / f"{system}-replica"
        os.sync()
        with self._repl_server(system, base, "everysec") as replica:
            wait_for_ping(replica, what)
            conn = RespConnection(replica.port)
            try:
                primary_cpu = proc_cpu(primary.proc.pid, children=True)
                replica_cpu = proc_cpu(replica.proc.pid)
                deadline = time.monotonic() + REPL_SYNC_TIMEOUT
                started = time.perf_counter()
                reply = conn.call("REPLICAOF", "127.0.0.1", str(primary.port))
                if reply != "OK":
                    raise BenchError(f"{what}: REPLICAOF answered {reply!r}")
                while True:
                    info = parse_info(conn.call("INFO", "replication"))
                    if info.get("master_link_status") == "up":
                        try:
                            if conn.call("DBSIZE") == self.n:
                                break
                        except RedisError as err:
                            if not str(err).startswith("LOADING"):
                                raise
                    if primary.proc.poll() is not None:
                        raise BenchError(f"{what}: the {system} primary exited with "
                                         f"{primary.proc.returncode}; log:\n{primary.log_tail()}")
                    if time.monotonic() > deadline or replica.proc.poll() is not None:
                        raise BenchError(f"{what}: not in sync after {REPL_SYNC_TIMEOUT:g} s; "
                                         f"log:\n{replica.log_tail()}")
                    time.sleep(REPL_POLL_INTERVAL)
                seconds = time.perf_counter() - started
                replica_cpu = proc_cpu(replica.proc.pid) - replica_cpu
                if system == "redis":  # the fork child's CPU counts once it is reaped
                    while primary.info("persistence")["rdb_bgsave_in_progress"] != "0":
                        if time.monotonic() > deadline:
                            raise BenchError("redis primary: the background save did not end")
                        time.sleep(0.01)
                primary_cpu = proc_cpu(primary.proc.pid, children=True) - primary_cpu
                value = conn.call("GET", self.data.middle_key)
                if value != self.data.middle_value:
                    raise BenchError(f"{what}: GET {self.data.middle_key} gave {value!r}")
            finally:
                conn.close()
            self._stop(replica)
        self.results.add(f"{system}.repl.full_sync", seconds)
        self.results.add(f"{system}.repl.full_sync_primary_cpu", primary_cpu)
        self.results.add(f"{system}.repl.full_sync_replica_cpu", replica_cpu)
        print(f"    {seconds:.3f} s (primary CPU {primary_cpu:.2f} s, replica CPU "
              f"{replica_cpu:.2f} s)", file=sys.stderr)

    # --- 7b. redis-benchmark SET with one replica attached ----------------------

    def replicated_set_round(self, system: str, pipeline: int) -> None:
        what = f"{system} SET -P {pipeline} with a replica"
        work = self.work / "replication"
        os.sync()
        # One after the other: a server picks its port before it listens, so two starting at once could pick the same.
        with self._repl_server(system, work / f"{system}-bench-primary", "everysec") as primary, \
                self._after_ping(primary, f"{system} primary"), \
                self._repl_server(system, work / f"{system}-bench-replica", "everysec") as replica:
            wait_for_ping(replica, f"{system} replica")
            self._attach(replica, primary, what)
            workload = ServerWorkload("everysec", ("set",), pipeline)
            sampler = LagSampler(primary.port, replica.port)
            sampler.start()
            try:
                cpu_before = (proc_cpu(primary.proc.pid), proc_cpu(replica.proc.pid))
                started = time.perf_counter()
                done = run_timed(redis_benchmark_argv(primary.port, workload,
                                                      self.server_requests), capture=True)
                ended = time.perf_counter()
                cpu_after = (proc_cpu(primary.proc.pid), proc_cpu(replica.proc.pid))
                final = int(primary.info("replication")["master_repl_offset"])
                final_value = primary.call("GET", "key:__rand_int__")
                deadline = time.monotonic() + REPL_SYNC_TIMEOUT
                still_since, still_offset = time.monotonic(), None
                while True:  # until the acknowledged offset reaches the end of the load
                    last = sampler.latest()
                    if last and last.at > ended and last.acked >= final and last.applied >= final:
                        break
                    # Or: the replica holds the primary's last value and its offsets have not moved for
                    # REPL_QUIET_SECONDS: it has everything, yet counts fewer stream bytes than its primary.
                    if last and (last.acked, last.applied) != still_offset:
                        still_since, still_offset = time.monotonic(), (last.acked, last.applied)
                    elif (last and time.monotonic() - still_since > REPL_QUIET_SECONDS
                          and replica.call("GET", "key:__rand_int__") == final_value):
                        break
                    if time.monotonic() > deadline or sampler.error:
                        raise BenchError(f"{what}: the replica did not catch up (sampler: "
                                         f"{sampler.error!r})")
                    time.sleep(REPL_SAMPLE_INTERVAL)
            finally:
                sampler.stop()
            shortfall = final - sampler.latest().applied
            if shortfall > 0:
                self.results.note("replication", f"{what}: with all the data applied, the replica's "
                                  f"offset stayed {shortfall:,} bytes short of the primary's "
                                  f"master_repl_offset {final:,} (acked {sampler.latest().acked:,}).")
            self._check_exit(f"redis-benchmark ({what})", done)
            parsed = parse_benchmark_csv(done.stdout.decode(errors="replace"), workload.tests)
            lag = lag_figures(sampler.samples, started, ended)
            for server in (primary, replica):
                dbsize = server.call("DBSIZE")
                value = server.call("GET", "key:__rand_int__")
                if dbsize != 1 or value is None or len(value) != 3:
                    raise BenchError(f"{what}: DBSIZE {dbsize!r}, GET {value!r} on port "
                                     f"{server.port}")
            self._stop(replica)
            self._stop(primary)
        key = f"{system}.repl.set.P{pipeline}"
        self.results.add(f"{key}.rps", parsed["SET"]["rps"])
        self.results.add(f"{key}.p99", parsed["SET"]["p99_latency_ms"])
        for name, value in lag.items():
            self.results.add(f"{key}.{name}", value)
        self.results.add(f"{key}.shortfall", max(0, shortfall))
        # CPU per request over the load (user + system, all threads; 10 ms ticks): who is busy.
        self.results.add(f"{key}.primary_us", (cpu_after[0] - cpu_before[0]) / self.server_requests * 1e6)
        self.results.add(f"{key}.replica_us", (cpu_after[1] - cpu_before[1]) / self.server_requests * 1e6)
        self.results.add(f"{key}.client_us", done.cpu_seconds / self.server_requests * 1e6)
        print(f"    {parsed['SET']['rps']:,.0f} ops/s, lag acked p50/p99 "
              f"{lag['acked_bytes_p50']:,.0f}/{lag['acked_bytes_p99']:,.0f} B "
              f"{lag['acked_ms_p50']:.1f}/{lag['acked_ms_p99']:.1f} ms, applied "
              f"{lag['applied_bytes_p50']:,.0f}/{lag['applied_bytes_p99']:,.0f} B "
              f"{lag['applied_ms_p50']:.1f}/{lag['applied_ms_p99']:.1f} ms; CPU µs/req primary "
              f"{(cpu_after[0] - cpu_before[0]) / self.server_requests * 1e6:.2f}, replica "
              f"{(cpu_after[1] - cpu_before[1]) / self.server_requests * 1e6:.2f}, client "
              f"{done.cpu_seconds / self.server_requests * 1e6:.2f}", file=sys.stderr)

    # --- 7c. synchronous replication ---------------------------------------------

    def sync_writes_round(self, name: str, system: str, primary_sync: str,
                          replica_sync: str) -> None:
        what = f"{name} synchronous writes"
        work = self.work / "replication"
        os.sync()
        kvsh_args = ["--sync-replicas", "1"] if system == "kvsh" else None
        with self._repl_server(system, work / f"{system}-sync-primary", primary_sync,
                               kvsh_args) as primary, \
                self._after_ping(primary, f"{system} primary"), \
                self._repl_server(system, work / f"{system}-sync-replica", replica_sync) as replica:
            wait_for_ping(replica, f"{system} replica")
            self._attach(replica, primary, what)
            run = sync_client(primary.port, system == "redis", SYNC_CLIENTS, self.sync_requests)
            acknowledged = len(run.latencies)
            # Every acknowledged write is on the replica already: no waiting here.
            dbsize = replica.call("DBSIZE")
            if not isinstance(dbsize, int) or dbsize < acknowledged:
                raise BenchError(f"{what}: replica DBSIZE {dbsize!r} right after the run, "
                                 f"fewer than the {acknowledged} acknowledged writes")
            if run.stalled:
                p = primary.info("replication")
                r = replica.info("replication")
                self.results.note("replication", (
                    f"{what}: {run.stalled} of {SYNC_CLIENTS} connections got no reply within "
                    f"{SYNC_STALL_SECONDS:g} s ({acknowledged:,} of {self.sync_requests:,} writes "
                    f"acknowledged, replica DBSIZE {dbsize:,}); then the primary's master_repl_offset "
                    f"was {p['master_repl_offset']}, its {p.get('slave0', 'slave0: none')}, the "
                    f"replica's slave_repl_offset {r.get('slave_repl_offset')}."))
            self._stop(replica)
            self._stop(primary)
        key = f"{name}.repl.syncw"
        self.results.add(f"{key}.rps", acknowledged / run.seconds)
        self.results.add(f"{key}.p50", percentile(run.latencies, 0.50) * 1000)
        self.results.add(f"{key}.p99", percentile(run.latencies, 0.99) * 1000)
        self.results.add(f"{key}.client_cpu", run.client_cpu / run.seconds)
        self.results.add(f"{key}.stalled", run.stalled)
        print(f"    {acknowledged / run.seconds:,.0f} ops/s, p50 "
              f"{percentile(run.latencies, 0.5) * 1000:.2f} ms, p99 "
              f"{percentile(run.latencies, 0.99) * 1000:.2f} ms"
              + (f", {run.stalled} connections stalled" if run.stalled else ""), file=sys.stderr)

    # --- driver ----------------------------------------------------------------

    def _retry_once(self, round_fn, *args) -> None:
        """Run one invocation; if it fails, run it once more (on fresh servers) and note why.

        The machine is shared: the benchmark's servers have been seen stopped by a signal from outside it.
        A second failure ends the benchmark."""
        try:
            round_fn(*args)
        except (BenchError, OSError) as err:
            self.results.note("replication", f"{round_fn.__name__}{args} failed once and was repeated: "
                              f"{str(err).splitlines()[0][:200]}")
            print(f"    failed ({str(err).splitlines()[0][:200]}); repeating it", file=sys.stderr)
            round_fn(*args)

    def run_replication(self, systems: list[str]) -> None:
        """Full sync, then SET with a replica, then synchronous writes; ``self.runs`` rounds each,
        the systems taking turns and who goes first alternating by round."""
        active = [s for s in systems if s in PART_SYSTEMS["replication"]]
        primaries = {}
        try:
            for system in active:
                primaries[system] = self._start_sync_primary(system)
            for round_no in range(1, self.runs + 1):
                for system in (active if round_no % 2 else active[::-1]):
                    print(f"[replication full sync {round_no}/{self.runs}] {system}",
                          file=sys.stderr)
                    for attempt in (1, 2):
                        if primaries[system].proc.poll() is not None:
                            primaries[system] = self._restart_sync_primary(system, primaries[system])
                        try:
                            self.full_sync_round(system, primaries[system])
                            break
                        except (BenchError, OSError):  # OSError: its /proc entry or a connection gone
                            if attempt == 2 or primaries[system].proc.poll() is None:
                                raise
            for system in active:
                server = primaries.pop(system)
                if server.proc.poll() is None:
                    self._stop(server)
        finally:
            for server in primaries.values():
                server.__exit__(None, None, None)
        for round_no in range(1, self.runs + 1):
            order = active if round_no % 2 else active[::-1]
            for pipeline in REPL_BENCH_PIPELINES:
                for system in order:
                    print(f"[replication SET {round_no}/{self.runs}] {system} -P {pipeline}",
                          file=sys.stderr)
                    self._retry_once(self.replicated_set_round, system, pipeline)
            configs = [c for c in SYNC_CONFIGS if c[1] in active]
            for name, system, primary_sync, replica_sync in (configs if round_no % 2
                                                             else configs[::-1]):
                print(f"[replication sync writes {round_no}/{self.runs}] {name} (primary "
                      f"{primary_sync}, replica {replica_sync})", file=sys.stderr)
                self._retry_once(self.sync_writes_round, name, system, primary_sync, replica_sync)
