"""The command line of Benchmarks/bench.py: options, validation and the main flow."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path

from .config import (
    BenchError, DATA_PARTS, PARTS, PART_SYSTEMS, RANGE_LIMIT, SERVER_REQUESTS, SYNC_REQUESTS,
    SYSTEMS,
)
from .dataset import prepare_data
from .processes import kill_leftovers
from .report import (
    build_replication_tables, build_server_tables, build_tables, environment, load_average, render,
)
from .suite import Bench


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=sys.modules[__package__].__doc__.split("\n\n")[0])
    parser.add_argument("--kvsh", help="path to the kvsh binary (e.g. .build/release/kvsh)")
    parser.add_argument("--lines", type=int, default=1_000_000, help="number of SET lines")
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement")
    parser.add_argument("--work", type=Path, default=Path(__file__).resolve().parent.parent / "work",
                        help="scratch directory (default: Benchmarks/work)")
    parser.add_argument("--markdown", type=Path, help="also write a Markdown section here")
    parser.add_argument("--only", default=",".join(SYSTEMS),
                        help="comma-separated subset of: " + ",".join(SYSTEMS))
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="comma-separated subset of: " + ",".join(PARTS)
                        + " (without load, the stores of an earlier run are reused)")
    parser.add_argument("--server-requests", type=int, default=SERVER_REQUESTS,
                        help="redis-benchmark -n for the server and replication parts "
                        "(default: %(default)s)")
    parser.add_argument("--sync-requests", type=int, default=SYNC_REQUESTS,
                        help="SETs per run of the replication part's synchronous-write client "
                        "(default: %(default)s)")
    args = parser.parse_args(argv)
    args.systems = [s for s in SYSTEMS if s in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(SYSTEMS)
    if unknown or not args.systems:
        parser.error(f"--only takes a subset of {','.join(SYSTEMS)}")
    wanted_parts = args.parts.split(",")
    args.parts = [p for p in PARTS if p in wanted_parts]
    if set(wanted_parts) - set(PARTS) or not args.parts:
        parser.error(f"--parts takes a subset of {','.join(PARTS)}")
    if not any(s in PART_SYSTEMS[p] for p in args.parts for s in args.systems):
        parser.error("nothing to measure: " + "; ".join(
            f"{p} runs for {','.join(PART_SYSTEMS[p])}" for p in args.parts))
    if args.server_requests < 1:
        parser.error("--server-requests must be ≥ 1")
    if args.sync_requests < 1:
        parser.error("--sync-requests must be ≥ 1")
    if args.lines < 1 or args.lines > 10_000_000 or args.runs < 1:
        parser.error("--lines must be in 1..10,000,000 (7-digit keys) and --runs ≥ 1")
    if "range" in args.parts and args.lines < RANGE_LIMIT:
        parser.error(f"--parts range needs --lines ≥ {RANGE_LIMIT} (LIMIT {RANGE_LIMIT})")
    if "kvsh" in args.systems:
        if not args.kvsh:
            parser.error("--kvsh is required unless --only excludes kvsh")
        if not os.access(args.kvsh, os.X_OK):
            parser.error(f"{args.kvsh} is not an executable file")
    needed = {"redis": ["redis-server", "redis-cli"], "sqlite": ["sqlite3"]}
    tools = [tool for system in args.systems for tool in needed.get(system, [])]
    if "server" in args.parts or "replication" in args.parts:
        tools.append("redis-benchmark")  # drives both servers
    for tool in tools:
        if not shutil.which(tool):
            parser.error(f"{tool} not found on PATH")
    args.work = args.work.resolve()
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = shlex.join(["python3", *sys.argv])
    # Turn SIGTERM/SIGHUP into an exception so the finally below still runs.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    try:
        args.work.mkdir(parents=True, exist_ok=True)
        facts = environment(args, command)
        print(f"load average at start: {dict(facts)['load average at start']}", file=sys.stderr)
        data = (prepare_data(args.work, args.lines)
                if any(p in DATA_PARTS for p in args.parts) else None)
        results = Bench(args, data).run(args.systems, args.parts)
        facts.insert(len(facts) - 1, ("load average at end", load_average()))
        tables = build_tables(results, args.lines, args.runs, args.parts)
        if "server" in args.parts:
            tables += build_server_tables(results, args.runs, args.server_requests)
        if "replication" in args.parts:
            tables += build_replication_tables(results, args.runs, args.lines,
                                               args.server_requests, args.sync_requests)
        print(render(facts, tables, markdown=False))
        if args.markdown:
            args.markdown.write_text(render(facts, tables, markdown=True))
            print(f"markdown written to {args.markdown}", file=sys.stderr)
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        kill_leftovers()
    return 0
