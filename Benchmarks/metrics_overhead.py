#!/usr/bin/env python3
r"""What per-command statistics cost: redis-benchmark SET/GET, -P 1 and -P 16, against `kvsh serve` with
statistics on (the default, plus the metrics endpoint, scraped once a second meanwhile) and off
(`--no-command-stats`, no endpoint), in the same run, the two alternating round by round.

Usage:
    python3 Benchmarks/metrics_overhead.py --kvsh .build/release/kvsh [--rounds 5] [--requests 200000]

Prints, per test, the median requests/s of each setting (min-max beside it) and on/off. Standard library only.
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


def run_round(kvsh: str, stats_on: bool, pipeline: int, requests: int) -> dict[str, float]:
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
            result = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
                                     "-n", str(requests), "-c", "50", "-P", str(pipeline), "--csv"],
                                    capture_output=True, text=True, check=True)
        finally:
            stop_scraping.set()
            server.terminate()
            server.wait(timeout=30)
    rows = list(csv.reader(io.StringIO(result.stdout)))
    return {row[0]: float(row[1]) for row in rows[1:] if len(row) > 1}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kvsh", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200_000)
    options = parser.parse_args(argv)
    kvsh = os.path.abspath(options.kvsh)
    print(f"{'test':<10} {'stats on (req/s)':>26} {'stats off (req/s)':>26} {'on/off':>7}")
    for pipeline in (1, 16):
        figures: dict[tuple[bool, str], list[float]] = {}
        for round_number in range(options.rounds):
            order = (True, False) if round_number % 2 == 0 else (False, True)  # who goes first alternates
            for stats_on in order:
                for test, rps in run_round(kvsh, stats_on, pipeline, options.requests).items():
                    figures.setdefault((stats_on, test), []).append(rps)
        for test in ("SET", "GET"):
            on, off = figures.get((True, test), [0]), figures.get((False, test), [0])
            label = test + (f" -P {pipeline}" if pipeline > 1 else "")

            def cell(values: list[float]) -> str:
                return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"
            ratio = statistics.median(on) / statistics.median(off) if statistics.median(off) else 0
            print(f"{label:<10} {cell(on):>26} {cell(off):>26} {ratio:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
