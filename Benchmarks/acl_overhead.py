#!/usr/bin/env python3
r"""What ACL checks cost on the hot path: redis-benchmark SET and GET of `app:` keys, -P 1 and -P 16, against one
`kvsh serve` per round, as the default user (no password: may run anything) and as a user restricted to `~app:*`
(`+@all`, a password), in the same run, the two alternating round by round. Goal (issue 13): the restricted user
within 3% of the default one.

Usage:
    python3 Benchmarks/acl_overhead.py --kvsh .build/release/kvsh [--rounds 5] [--requests 200000] [--pipelines 1,16]

Both users run the same commands (`SET app:__rand_int__ v`, `GET app:__rand_int__`, -r 100000) on the same server,
so only the user differs. Prints, per test, the median requests/s of each user (min-max beside it) and
restricted/default, then the server's CPU time per request (user + system), which a noisy machine disturbs less
than throughput. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

from kvshbench.replication import proc_cpu
from kvshbench.resp import RespConnection, free_port

USER, PASSWORD = "app", "app-secret"


def wait_until_serving(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            RespConnection(port, timeout=5).call("PING")
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"kvsh serve did not answer on port {port}")


def benchmark(port: int, restricted: bool, pipeline: int, requests: int, command: list[str]) -> float:
    credentials = ["--user", USER, "-a", PASSWORD] if restricted else []
    result = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), *credentials, "-n", str(requests),
                             "-c", "50", "-P", str(pipeline), "-r", "100000", "--csv", *command],
                            capture_output=True, text=True, check=True)
    rows = [row for row in csv.reader(io.StringIO(result.stdout)) if len(row) > 1 and row[0] != "test"]
    return float(rows[0][1])


def run_round(kvsh: str, pipeline: int, requests: int, order: tuple[bool, bool]) -> dict[tuple[bool, str], tuple[float, float]]:
    """One server, both users in `order`: requests/s and server CPU µs per request, by (restricted, test)."""
    port = free_port()
    figures: dict[tuple[bool, str], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="kvsh-acl-bench-") as data:
        acl = os.path.join(data, "users.acl")
        with open(acl, "w") as file:  # the default user as Redis makes it, and the restricted one
            file.write(f"user default on nopass ~* &* +@all\nuser {USER} on >{PASSWORD} ~app:* resetchannels +@all\n")
        server = subprocess.Popen([kvsh, "serve", "--port", str(port), "--sync", "everysec", "--aclfile", acl,
                                   "--data-dir", os.path.join(data, "store")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_serving(port, time.monotonic() + 30)
            # The password's one PBKDF2 (then remembered) before the clock starts: it is a login's cost, not a request's.
            RespConnection(port, timeout=30).call("AUTH", USER, PASSWORD)
            for restricted in order:
                for test, command in (("SET", ["SET", "app:__rand_int__", "v"]), ("GET", ["GET", "app:__rand_int__"])):
                    before = proc_cpu(server.pid)
                    rate = benchmark(port, restricted, pipeline, requests, command)
                    figures[(restricted, test)] = (rate, (proc_cpu(server.pid) - before) * 1e6 / requests)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kvsh", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--pipelines", default="1,16", help="redis-benchmark -P values (default: %(default)s)")
    options = parser.parse_args(argv)
    kvsh = os.path.abspath(options.kvsh)
    print(f"{'test':<10} {'~app:* user (req/s)':>26} {'default user (req/s)':>26} {'ratio':>7} {'CPU µs/req restricted/default':>32}")
    for pipeline in (int(value) for value in options.pipelines.split(",")):
        rates: dict[tuple[bool, str], list[float]] = {}
        cpu: dict[tuple[bool, str], list[float]] = {}
        for round_number in range(options.rounds):
            order = (True, False) if round_number % 2 == 0 else (False, True)  # who goes first alternates
            for key, (rate, micros) in run_round(kvsh, pipeline, options.requests, order).items():
                rates.setdefault(key, []).append(rate)
                cpu.setdefault(key, []).append(micros)
        for test in ("SET", "GET"):
            restricted, default = rates[(True, test)], rates[(False, test)]
            label = test + (f" -P {pipeline}" if pipeline > 1 else "")

            def cell(values: list[float]) -> str:
                return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"
            ratio = statistics.median(restricted) / statistics.median(default)
            cpu_cell = f"{statistics.median(cpu[(True, test)]):.2f} / {statistics.median(cpu[(False, test)]):.2f}"
            print(f"{label:<10} {cell(restricted):>26} {cell(default):>26} {ratio:>7.3f} {cpu_cell:>32}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
