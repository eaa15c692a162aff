#!/usr/bin/env python3
r"""What encryption at rest costs: bulk load and startup of N keys, plain kvsh against kvsh with
--encryption-key-file, in the same run, the two alternating round by round.

Usage:
    python3 Benchmarks/encryption_overhead.py --kvsh .build/release/kvsh [--lines 1000000] [--rounds 5]

Load: `kvsh --data-dir D --sync always [--encryption-key-file K] < script` with the benchmark's lines
(`SET key:NNNNNNN <100-byte value>`), from an empty directory, wall time. Startup: `kvsh --data-dir D [...] GET
<middle key>` on the store the load left (log and images as written, background compactions included), wall time.
Prints the median of each (min-max beside it) and encrypted/plain, as a Markdown table. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def make_script(path: str, lines: int) -> str:
    value = "v" * 100
    with open(path, "w") as out:
        for number in range(lines):
            out.write(f"SET key:{number:07d} {value[:93]}{number:07d}\n")
    return f"key:{lines // 2:07d}"


def timed(argv: list[str], stdin_path: str | None = None) -> tuple[float, bytes]:
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        done = subprocess.run(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - start
    finally:
        if stdin_path:
            stdin.close()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[:500]!r}")
    return seconds, done.stdout


def one_round(kvsh: str, work: str, script: str, lines: int, middle: str, key: str | None) -> tuple[float, float]:
    data = os.path.join(work, "data-encrypted" if key else "data-plain")
    shutil.rmtree(data, ignore_errors=True)
    extra = ["--encryption-key-file", key] if key else []
    load, out = timed([kvsh, "--data-dir", data, "--sync", "always", *extra], script)
    replies = out.count(b"\n")
    if replies != lines:
        raise SystemExit(f"the load printed {replies} replies, not {lines}")
    startup, out = timed([kvsh, "--data-dir", data, *extra, "GET", middle])
    if not out.strip().endswith(middle.split(":")[1].encode()):
        raise SystemExit(f"GET {middle} printed {out[:200]!r}")
    return load, startup


def describe(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}–{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kvsh", default=".build/release/kvsh")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kvsh = os.path.abspath(args.kvsh)
    with tempfile.TemporaryDirectory(prefix="kvsh-encryption-bench-") as work:
        script = os.path.join(work, "load.txt")
        middle = make_script(script, args.lines)
        key = os.path.join(work, "bench.key")
        subprocess.run([kvsh, "keygen", key], check=True, stdout=subprocess.DEVNULL)
        results: dict[str, dict[str, list[float]]] = {"plain": {"load": [], "startup": []},
                                                       "encrypted": {"load": [], "startup": []}}
        for round_number in range(args.rounds):
            # Alternate which goes first, so neither always runs on a warmer (or busier) machine.
            order = [("plain", None), ("encrypted", key)]
            if round_number % 2:
                order.reverse()
            for name, key_file in order:
                load, startup = one_round(kvsh, work, script, args.lines, middle, key_file)
                results[name]["load"].append(load)
                results[name]["startup"].append(startup)
                print(f"round {round_number + 1} {name}: load {load:.3f} s, startup {startup:.3f} s", file=sys.stderr)
    print(f"{args.lines:,} keys, {args.rounds} rounds, medians (min–max):\n")
    print("| measure | plain | encrypted | encrypted / plain |")
    print("|---|---|---|---|")
    for measure, label in (("load", "bulk load (`--sync always`, piped)"), ("startup", "startup + one GET")):
        plain, encrypted = results["plain"][measure], results["encrypted"][measure]
        ratio = statistics.median(encrypted) / statistics.median(plain)
        print(f"| {label} | {describe(plain)} | {describe(encrypted)} | **{ratio:.2f}×** |")


if __name__ == "__main__":
    main()
