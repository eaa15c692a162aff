"""Starting, waiting for and stopping redis-server and kvsh serve."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

from .config import BenchError, REDIS_START_TIMEOUT, SERVER_START_TIMEOUT, SERVER_STOP_TIMEOUT
from .processes import reap, spawn, stop_child
from .resp import RedisError, RespConnection, free_port, parse_info


class RedisServer:
    """A private redis-server (AOF on, everysec unless told) in ``directory`` on a free port.

    Use as a context manager: the normal path ends it with shutdown(); leaving
    the block any other way (an error) terminates the process.
    """

    def __init__(self, directory: Path, appendfsync: str = "everysec",
                 extra_args: list[str] | None = None):
        self.port = free_port()
        self.log = directory / "redis.log"
        self.proc = spawn(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(directory), "--logfile", str(self.log),
             "--daemonize", "no", "--appendonly", "yes",
             "--appendfsync", appendfsync, "--save", "",
             "--aof-use-rdb-preamble", "yes", *(extra_args or [])],
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
                 threads: int | None = None, extra_args: list[str] | None = None):
        self.port = free_port()
        self.log = log
        argv = [kvsh, "serve", "--data-dir", str(data_dir), "--port", str(self.port),
                "--sync", sync]
        if threads is not None:
            argv += ["--threads", str(threads)]
        argv += extra_args or []
        with open(log, "wb") as errors:
            self.proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=errors)

    def __enter__(self) -> "KvshServer":
        return self

    def __exit__(self, *exc_info) -> None:
        stop_child(self.proc)

    def call(self, *args: str):
        conn = RespConnection(self.port)
        try:
            return conn.call(*args)
        finally:
            conn.close()

    def info(self, section: str) -> dict[str, str]:
        return parse_info(self.call("INFO", section))

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
