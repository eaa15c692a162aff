#!/usr/bin/env python3
r"""Failover time and acknowledged writes lost: kill -9 of the primary under a writing client, kvsh on etcd beside
Redis Sentinel, the two alternating round by round in the same run.

kvsh: three `kvsh serve --cluster` nodes with `--failover-ttl TTL --sync-replicas 1` and one etcd member (started
once; every round is a cluster of its own name). Redis: three redis-server 7.0 (one primary, two replicas,
appendonly everysec) and three sentinels (`down-after-milliseconds` = TTL, quorum 2). In both, one client writes
unique keys in a loop, finding the primary through the Sentinel API (kvsh's nodes answer it), and counts a write as
acknowledged when kvsh replies OK (a replica has it on disk) or, for Redis, when `WAIT 1 0` after the SET says a
replica has it. Once both replicas are attached and the client has written for a second, the primary is killed
with SIGKILL; the clock runs from the kill to the first acknowledged write on another node. Afterwards every
acknowledged key is looked up on the new primary.

Usage:
    python3 Benchmarks/failover.py --kvsh .build/release/kvsh [--rounds 20] [--ttl 2] [--markdown OUT.md]

Standard library only; needs etcd and redis-server on PATH (.ci/install-deps installs them).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kvshbench.config import BenchError
from kvshbench.resp import RedisError as ReplyError, RespConnection as Connection, free_port


def call(port: int, *args: str, timeout: float = 2.0):
    connection = Connection(port, timeout)
    try:
        return connection.call(*args)
    finally:
        connection.close()


def info(port: int, section: str) -> dict[str, str]:
    text = call(port, "INFO", section) or ""
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, ConnectionError, ReplyError, BenchError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def primary_from_sentinels(ports: list[int], name: str) -> int | None:
    for port in ports:
        try:
            address = call(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name, timeout=1.0)
        except (OSError, ConnectionError, ReplyError, BenchError):
            continue
        if address:
            return int(address[1])
    return None


@dataclass
class Writer:
    """One client writing unique keys through the Sentinel API, recording each acknowledged write's node and time."""
    sentinels: list[int]
    name: str
    wait_for_replica: bool
    acknowledged: list[tuple[str, int, float]] = field(default_factory=list)
    stopping: bool = False
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        if self.thread:
            self.thread.join(30)

    def _run(self) -> None:
        connection, port, index = None, None, 0
        while not self.stopping:
            if connection is None:
                port = primary_from_sentinels(self.sentinels, self.name)
                try:
                    connection = Connection(port, timeout=2.0) if port else None
                except OSError:
                    connection = None
                if connection is None:
                    time.sleep(0.005)
                    continue
            key = f"k{index}"
            index += 1
            try:
                connection.call("SET", key, key)
                if self.wait_for_replica and connection.call("WAIT", "1", "0") < 1:
                    continue
                self.acknowledged.append((key, port, time.monotonic()))
            except (OSError, ConnectionError, ReplyError, BenchError):
                with contextlib.suppress(OSError):
                    connection.close()
                connection = None  # READONLY, NOREPLICAS, a dead node: ask the sentinels again


@dataclass
class Round:
    seconds: float
    acknowledged: int
    lost: int


class Cluster:
    """The processes of one round, killed and removed at the end."""

    def __init__(self, root: Path):
        self.root = root
        self.processes: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], log: str) -> subprocess.Popen:
        with open(self.root / log, "wb") as output:
            process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def measure(cluster_ports: list[int], sentinels: list[int], name: str, primary_port: int, process_of: dict[int, subprocess.Popen],
            wait_for_replica: bool) -> Round:
    writer = Writer(sentinels, name, wait_for_replica)
    writer.start()
    wait_until(lambda: len(writer.acknowledged) > 0, 30, "a first acknowledged write")
    time.sleep(1.0)  # writes in flight before the kill: load, not synchronisation
    killed_at = time.monotonic()
    os.kill(process_of[primary_port].pid, signal.SIGKILL)
    process_of[primary_port].wait()
    wait_until(lambda: any(p != primary_port and t > killed_at for _, p, t in writer.acknowledged), 120,
               "a write acknowledged by a new primary")
    first = min(t for _, p, t in writer.acknowledged if p != primary_port and t > killed_at)
    time.sleep(0.3)  # a little more traffic on the new primary
    writer.stop()
    new_primary = primary_from_sentinels(sentinels, name)
    keys = [key for key, _, _ in writer.acknowledged]
    lost = 0
    connection = Connection(new_primary, timeout=10)
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        values = connection.call("MGET", *chunk)
        lost += sum(1 for value in values if value is None)
    connection.close()
    return Round(first - killed_at, len(keys), lost)


def kvsh_round(kvsh: str, etcd_url: str, root: Path, index: int, ttl: float) -> Round:
    cluster = Cluster(root)
    try:
        ports = [free_port() for _ in range(3)]
        name = f"bench{index}"
        process_of = {}
        for node, port in enumerate(ports):
            process_of[port] = cluster.spawn([
                kvsh, "serve", "--data-dir", str(root / f"node{node}"), "--port", str(port), "--cluster", name,
                "--etcd", etcd_url, "--announce", f"127.0.0.1:{port}", "--failover-ttl", f"{ttl:g}s", "--sync-replicas", "1",
            ], f"node{node}.log")
        wait_until(lambda: primary_from_sentinels(ports, name) is not None, 60, "kvsh to elect a primary")
        primary = primary_from_sentinels(ports, name)
        wait_until(lambda: info(primary, "replication").get("connected_slaves") == "2", 60, "both kvsh replicas")
        return measure(ports, ports, name, primary, process_of, wait_for_replica=False)
    finally:
        cluster.close()


def redis_round(root: Path, ttl: float) -> Round:
    cluster = Cluster(root)
    try:
        ports = [free_port() for _ in range(3)]
        process_of = {}
        for node, port in enumerate(ports):
            directory = root / f"redis{node}"
            directory.mkdir()
            argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
                    "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no"]
            if node > 0:
                argv += ["--replicaof", "127.0.0.1", str(ports[0])]
            process_of[port] = cluster.spawn(argv, f"redis{node}.log")
        sentinels = [free_port() for _ in range(3)]
        for number, port in enumerate(sentinels):
            config = root / f"sentinel{number}.conf"
            config.write_text(f"port {port}\nbind 127.0.0.1\ndir {root}\n"
                              f"sentinel monitor m 127.0.0.1 {ports[0]} 2\n"
                              f"sentinel down-after-milliseconds m {int(ttl * 1000)}\n"
                              "sentinel failover-timeout m 10000\nsentinel parallel-syncs m 1\n")
            cluster.spawn(["redis-server", str(config), "--sentinel"], f"sentinel{number}.log")
        wait_until(lambda: info(ports[0], "replication").get("connected_slaves") == "2", 60, "both redis replicas")

        def sentinels_ready() -> bool:
            for port in sentinels:
                master = call(port, "SENTINEL", "MASTER", "m")
                fields = dict(zip(master[::2], master[1::2]))
                if fields.get("num-slaves") != "2" or fields.get("num-other-sentinels") != "2":
                    return False
            return True
        wait_until(sentinels_ready, 60, "the sentinels to know both replicas and each other")
        return measure(ports, sentinels, "m", ports[0], process_of, wait_for_replica=True)
    finally:
        cluster.close()


def summary(rounds: list[Round]) -> str:
    times = [r.seconds * 1000 for r in rounds]
    return (f"{statistics.median(times):,.0f} ms (min {min(times):,.0f}, max {max(times):,.0f}) | "
            f"{sum(r.acknowledged for r in rounds):,} | {sum(r.lost for r in rounds):,}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kvsh", required=True)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--ttl", type=float, default=2.0, help="kvsh's --failover-ttl and Sentinel's down-after, seconds")
    parser.add_argument("--markdown", help="also write the table to this file")
    options = parser.parse_args()
    for tool in ("etcd", "redis-server"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: run .ci/install-deps test")

    base = Path(tempfile.mkdtemp(prefix="kvsh-failover-bench-"))
    etcd_client, etcd_peer = free_port(), free_port()
    etcd = subprocess.Popen([
        "etcd", "--name", "e1", "--data-dir", str(base / "etcd"),
        "--listen-client-urls", f"http://127.0.0.1:{etcd_client}", "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
        "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
        "--initial-cluster", f"e1=http://127.0.0.1:{etcd_peer}",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict[str, list[Round]] = {"kvsh": [], "redis": []}
    try:
        wait_until(lambda: socket.create_connection(("127.0.0.1", etcd_client), timeout=1).close() is None, 30, "etcd")
        for index in range(options.rounds):
            for system in ("kvsh", "redis") if index % 2 == 0 else ("redis", "kvsh"):
                root = base / f"{system}{index}"
                root.mkdir()
                result = (kvsh_round(options.kvsh, f"http://127.0.0.1:{etcd_client}", root, index, options.ttl)
                          if system == "kvsh" else redis_round(root, options.ttl))
                results[system].append(result)
                print(f"round {index + 1} {system}: {result.seconds * 1000:.0f} ms, {result.acknowledged} acknowledged, "
                      f"{result.lost} lost", flush=True)
                shutil.rmtree(root, ignore_errors=True)
    finally:
        etcd.kill()
        etcd.wait()
        shutil.rmtree(base, ignore_errors=True)

    kvsh_median = statistics.median(r.seconds for r in results["kvsh"])
    redis_median = statistics.median(r.seconds for r in results["redis"])
    table = "\n".join([
        f"Failover: kill -9 of the primary -> first acknowledged write on the new one, {options.rounds} rounds each, "
        f"TTL = down-after = {options.ttl:g} s",
        "",
        "| system | failover time, median (min, max) | writes acknowledged | acknowledged writes lost |",
        "|---|---|---|---|",
        f"| kvsh, 3 nodes on etcd, `--sync-replicas 1` | {summary(results['kvsh'])} |",
        f"| redis 7.0, 3 sentinels, SET + `WAIT 1 0` | {summary(results['redis'])} |",
        "",
        f"kvsh / redis median: {kvsh_median / redis_median:.2f}",
    ])
    print()
    print(table)
    if options.markdown:
        Path(options.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
