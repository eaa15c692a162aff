#!/usr/bin/env python3
r"""Side-by-side benchmark of kvsh against redis-server and sqlite3: the entry point.

The benchmark itself is the package kvshbench beside this file (its docstring
says what each part measures and how the modules divide the work).

Usage:
    python3 Benchmarks/bench.py --kvsh .build/release/kvsh \
        [--lines 1000000] [--runs 5] [--work DIR] [--markdown OUT.md] \
        [--only kvsh,redis,sqlite] \
        [--parts load,startup,compact,range,memory,server,replication] \
        [--server-requests 1000000] [--sync-requests 20000]

    # the replication benchmarks alone (issue 11; Docs/Benchmarks.md, Run H):
    python3 Benchmarks/bench.py --kvsh .build/release/kvsh --parts replication \
        --only kvsh,redis --runs 3 --server-requests 500000
"""

import sys

from kvshbench.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
