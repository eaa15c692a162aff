#!/usr/bin/env python3
r"""redis-benchmark --tls SET/GET, -P 1 and -P 16, against `kvsh serve` and redis-server, both over TLS with client
certificates (each side's default, tls-auth-clients yes), in the same run, the two alternating round by round.

Usage:
    python3 Benchmarks/tls_bench.py --kvsh .build/release/kvsh [--rounds 5] [--requests 200000] [--pipelines 1,16]
        [--markdown FILE]

Certificates (a CA, a server certificate for 127.0.0.1, a client certificate; EC P-256) are made with openssl in a
temporary directory. Both servers keep nothing on disk that matters: kvsh with `--sync everysec`, redis-server with
`--save "" --appendonly no` (Redis's default persistence would fork during the run). Prints, per test, the median
requests/s of each server (min-max beside it) and kvsh/redis. Standard library only.
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
import time


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
    raise SystemExit(f"nothing listens on port {port}")


def make_certificates(directory: str) -> dict[str, str]:
    def openssl(*arguments: str) -> None:
        subprocess.run(["openssl", *arguments], check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    path = {name: os.path.join(directory, name) for name in
            ("ca.crt", "ca.key", "server.crt", "server.key", "server.csr", "client.crt", "client.key", "client.csr", "san.ext")}
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=bench CA", "-keyout", path["ca.key"], "-out", path["ca.crt"])
    with open(path["san.ext"], "w") as ext:
        ext.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, serial in (("server", "1"), ("client", "2")):
        openssl("req", *ec, "-subj", f"/CN={name}", "-keyout", path[f"{name}.key"], "-out", path[f"{name}.csr"])
        openssl("x509", "-req", "-in", path[f"{name}.csr"], "-CA", path["ca.crt"], "-CAkey", path["ca.key"],
                "-set_serial", serial, "-days", "2", "-extfile", path["san.ext"], "-out", path[f"{name}.crt"])
    return path


def run_round(server: str, kvsh: str, certificates: dict[str, str], pipeline: int, requests: int) -> dict[str, float]:
    port, tls_port = free_port(), free_port()
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", certificates["server.crt"],
           "--tls-key-file", certificates["server.key"], "--tls-ca-cert-file", certificates["ca.crt"]]
    with tempfile.TemporaryDirectory(prefix="kvsh-tls-bench-") as data:
        if server == "kvsh":
            argv = [kvsh, "serve", "--port", str(port), "--sync", "everysec", "--data-dir", data] + tls
        else:
            argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", data] + tls
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(tls_port, time.monotonic() + 30)
            result = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(tls_port), "--tls",
                                     "--cacert", certificates["ca.crt"], "--cert", certificates["client.crt"],
                                     "--key", certificates["client.key"], "-t", "set,get", "-n", str(requests),
                                     "-c", "50", "-P", str(pipeline), "--csv"],
                                    capture_output=True, text=True, check=True)
        finally:
            process.terminate()
            process.wait(timeout=30)
    rows = list(csv.reader(io.StringIO(result.stdout)))
    return {row[0]: float(row[1]) for row in rows[1:] if len(row) > 1}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kvsh", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--pipelines", default="1,16", help="redis-benchmark -P values (default: %(default)s)")
    parser.add_argument("--markdown", help="also write the table here")
    options = parser.parse_args(argv)
    kvsh = os.path.abspath(options.kvsh)
    lines = ["| test | kvsh (req/s, median, min-max) | redis-server (req/s, median, min-max) | kvsh/redis |",
             "|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="kvsh-tls-certs-") as directory:
        certificates = make_certificates(directory)
        for pipeline in (int(value) for value in options.pipelines.split(",")):
            figures: dict[tuple[str, str], list[float]] = {}
            for round_number in range(options.rounds):
                order = ("kvsh", "redis") if round_number % 2 == 0 else ("redis", "kvsh")  # who goes first alternates
                for server in order:
                    for test, rps in run_round(server, kvsh, certificates, pipeline, options.requests).items():
                        figures.setdefault((server, test), []).append(rps)
            for test in ("SET", "GET"):
                ours, theirs = figures.get(("kvsh", test), [0]), figures.get(("redis", test), [0])

                def cell(values: list[float]) -> str:
                    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"
                ratio = statistics.median(ours) / statistics.median(theirs) if statistics.median(theirs) else 0
                label = test + (f" -P {pipeline}" if pipeline > 1 else "")
                lines.append(f"| {label} | {cell(ours)} | {cell(theirs)} | {ratio:.2f} |")
                print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    if options.markdown:
        with open(options.markdown, "w") as out:
            out.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
