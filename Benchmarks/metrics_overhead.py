#!/usr/bin/env python3
r"""What per-command statistics cost: redis-benchmark SET/GET, -P 1 and -P 16, against `kvsh serve` with
statistics on (the default, plus the metrics endpoint, scraped once a second meanwhile) and off
(`--no-command-stats`, no endpoint), in the same run, the two alternating round by round.

Usage:
    python3 Benchmarks/metrics_overhead.py --kvsh .build/release/kvsh [--rounds 5] [--requests 200000] [--pipelines 1,16]

Prints, per test, the median requests/s of each setting (min-max beside it) and on/off, then the server's CPU time
per request (user + system, both tests of an invocation together), which a noisy machine disturbs less than
throughput. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"kvsh serve did not listen on port {port}")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_round(kvsh: str, stats_on: bool, pipeline: int, requests: int) -> tuple[dict[str, float], float]:
    port = free_port()
    argv = [kvsh, "serve", "--port", str(port), "--sync", "everysec"]
    metrics_port = None
    if stats_on:
        metrics_port = free_port()
        argv += ["--metrics-port", str(metrics_port)]
    else:
        argv += ["--no-command-stats"]
    with tempfile.TemporaryDirectory(prefix="kvsh-metrics-bench-") as data:
        server = subprocess.Popen(argv + ["--data-dir", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop_scraping = threading.Event()
        try:
            wait_for_port(port, time.monotonic() + 30)

            def scrape() -> None:  # as Prometheus would, once a second
                while not stop_scraping.wait(1.0):
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
                    except OSError:
                        pass
            scraper = threading.Thread(target=scrape, daemon=True)
            if metrics_port:
                scraper.start()
            cpu_before = cpu_seconds(server.pid)
            result = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
                                     "-n", str(requests), "-c", "50", "-P", str(pipeline), "--csv"],
                                    capture_output=True, text=True, check=True)
            cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            stop_scraping.set()
            server.terminate()
            server.wait(timeout=30)
    rows = list(csv.reader(io.StringIO(result.stdout)))
    return {row[0]: float(row[1]) for row in rows[1:] if len(row) > 1}, cpu * 1e6 / (2 * requests)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kvsh", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--pipelines", default="1,16", help="redis-benchmark -P values (default: %(default)s)")
    options = parser.parse_args(argv)
    kvsh = os.path.abspath(options.kvsh)
    print(f"{'test':<10} {'stats on (req/s)':>26} {'stats off (req/s)':>26} {'on/off':>7}")
    cpu_lines = []
    for pipeline in (int(value) for value in options.pipelines.split(",")):
        figures: dict[tuple[bool, str], list[float]] = {}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for round_number in range(options.rounds):
            order = (True, False) if round_number % 2 == 0 else (False, True)  # who goes first alternates
            for stats_on in order:
                rates, micros = run_round(kvsh, stats_on, pipeline, options.requests)
                cpu[stats_on].append(micros)
                for test, rps in rates.items():
                    figures.setdefault((stats_on, test), []).append(rps)
        for test in ("SET", "GET"):
            on, off = figures.get((True, test), [0]), figures.get((False, test), [0])
            label = test + (f" -P {pipeline}" if pipeline > 1 else "")

            def cell(values: list[float]) -> str:
                return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"
            ratio = statistics.median(on) / statistics.median(off) if statistics.median(off) else 0
            print(f"{label:<10} {cell(on):>26} {cell(off):>26} {ratio:>7.3f}")
        on_cpu, off_cpu = statistics.median(cpu[True]), statistics.median(cpu[False])
        cpu_lines.append(f"server CPU per request, -P {pipeline}: on {on_cpu:.3f} us, off {off_cpu:.3f} us "
                         f"({(on_cpu / off_cpu - 1) * 100 if off_cpu else 0:+.1f}%)")
    print("\n".join(cpu_lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
