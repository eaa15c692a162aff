#!/usr/bin/env python3
"""Two kvsh builds on one redis-benchmark workload, taking turns, to tell a regression from a noisy machine.

    python3 Benchmarks/compare_builds.py OLD_KVSH NEW_KVSH [--sync always] [--rounds 4] -- -t set -n 50000 -c 50

Each round starts `kvsh serve` on a fresh data directory and a free loopback port for each build (who goes first
alternates by round), runs redis-benchmark with the given arguments (plus --csv), stops the server with SIGTERM and
prints the requests per second; the medians per build come last.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port, process, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"kvsh serve on port {port} did not start")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--sync", default="always")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("workload", nargs=argparse.REMAINDER, help="redis-benchmark arguments, after --")
    options = parser.parse_args()
    workload = [a for a in options.workload if a != "--"] or ["-t", "set", "-n", "50000", "-c", "50"]
    builds = {"old": options.old, "new": options.new}
    results = {name: [] for name in builds}
    for round_number in range(options.rounds):
        order = list(builds) if round_number % 2 == 0 else list(reversed(list(builds)))
        for name in order:
            directory = tempfile.mkdtemp(prefix="kvsh-compare-")
            port = free_port()
            server = subprocess.Popen([builds[name], "serve", "--data-dir", os.path.join(directory, "data"),
                                       "--port", str(port), "--sync", options.sync], stderr=subprocess.DEVNULL)
            try:
                wait_for(port, server)
                output = subprocess.run(["redis-benchmark", "-p", str(port)] + workload + ["--csv"],
                                        capture_output=True, text=True, check=True, timeout=600).stdout
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)
                shutil.rmtree(directory, ignore_errors=True)
            rows = [line for line in output.splitlines()[1:] if line]
            rates = [float(line.split(",")[1].strip('"')) for line in rows]
            results[name].append(rates)
            print(round_number + 1, name, rates, flush=True)
    for name, runs in results.items():
        print(name, "median", [statistics.median(column) for column in zip(*runs)])


if __name__ == "__main__":
    main()
