"""Reporting: the tables (plain text or Markdown), their formatting, goals and the environment facts."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .config import (
    BENCH_KEY, BENCH_VALUE_BYTES, GOAL_COMPACTED_STARTUP_VS_REDIS, GOAL_FULL_SYNC_VS_REDIS,
    GOAL_LOAD_VS_REDIS, REDIS_REPL_ARGS, REPL_BENCH_PIPELINES, REPL_POLL_INTERVAL,
    REPL_SAMPLE_INTERVAL, SYNC_CLIENTS, SYNC_STALL_SECONDS,
    GOAL_LOAD_VS_SQLITE, GOAL_STARTUP_VS_REDIS, RANGE_CLOSE, RANGE_LIMIT, RANGE_QUERIES,
    RANGE_SEED, SERVER_CLIENTS, SERVER_PIPELINE, SERVER_THREADS, SYSTEMS,
)
from .measure import Results, Samples
from .processes import command_output
from .server import SERVER_THREADS_WORKLOADS, SERVER_WORKLOADS


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        widths = [max(len(r[i]) for r in [self.headers, *self.rows])
                  for i in range(len(self.headers))]

        def fmt(row: list[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths)))

        out = [self.title, "-" * len(self.title), fmt(self.headers),
               "  ".join("-" * w for w in widths)]
        out += [fmt(r) for r in self.rows]
        out += [f"  * {n}" for n in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [f"#### {self.title}", "",
               "| " + " | ".join(self.headers) + " |",
               "|" + "|".join(["---"] + ["---:"] * (len(self.headers) - 1)) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out)


def fmt_rate(s: Samples) -> tuple[str, str]:
    lo, hi = s.spread
    return f"{s.median:,.0f}", f"{lo:,.0f} – {hi:,.0f}"


def fmt_seconds(s: Samples) -> tuple[str, str]:
    lo, hi = s.spread
    return f"{s.median * 1000:,.1f} ms", f"{lo * 1000:,.1f} – {hi * 1000:,.1f} ms"


def fmt_bytes(value: float) -> str:
    if value < 2**10:
        return f"{value:,.0f} B"
    if value < 2**20:
        return f"{value / 2**10:,.1f} KiB"
    return f"{value / 2**20:,.1f} MiB"


def goal_row(label: str, ratio: float, goal: float) -> list[str]:
    return [label, f"{ratio:.2f}×", f"≥ {goal:g}×", "met" if ratio >= goal else "NOT met"]


def close_row(label: str, ratio: float, factor: float) -> list[str]:
    """A ratio expected near 1: "close" when within ``factor`` either way."""
    close = 1 / factor <= ratio <= factor
    return [label, f"{ratio:.2f}×", f"≈ 1× (within {factor:g}×)",
            "close" if close else "NOT close"]


def info_row(label: str, ratio: float) -> list[str]:
    return [label, f"{ratio:.2f}×", "—", "—"]


def range_per_query(results: Results, name: str) -> float | None:
    """(median script time − median empty-script time) / RANGE_QUERIES, in seconds."""
    script, empty = results.get(f"{name}.range_script"), results.get(f"{name}.range_empty")
    if not script or not empty:
        return None
    return (script.median - empty.median) / RANGE_QUERIES


def build_range_table(results: Results, n: int, runs: int) -> tuple[Table | None, list]:
    """The range-query table and its ratio rows."""
    get = results.get
    stores = {"kvsh": f"kvsh, {n:,} keys (after :compact)",
              "kvsh_small": f"kvsh, {n // 10:,} keys (after :compact)",
              "sqlite": f"sqlite3, {n:,} keys"}
    rows = []
    for name, label in stores.items():
        per_query = range_per_query(results, name)
        if per_query is None:
            continue
        lo, hi = get(f"{name}.range_query").spread
        rows.append([label, fmt_seconds(get(f"{name}.range_script"))[0],
                     fmt_seconds(get(f"{name}.range_empty"))[0],
                     f"{per_query * 1e6:,.1f}", f"{lo * 1e6:,.1f} – {hi * 1e6:,.1f}"])
    if not rows:
        return None, []
    table = Table(
        f"Range queries: {RANGE_QUERIES:,} × {RANGE_LIMIT} pairs from random existing keys, "
        f"one process (median of {runs} runs)",
        ["store", "script (median)", "empty script (median)", "µs/query", "min – max µs/query"],
        rows,
        [f"kvsh: `RANGE key:XXXXXXX + LIMIT {RANGE_LIMIT}` per line, piped into "
         "`kvsh --data-dir D --format raw > /dev/null`; sqlite3: `SELECT key, value FROM kv "
         f"WHERE key >= 'key:XXXXXXX' ORDER BY key LIMIT {RANGE_LIMIT};` per line, piped into "
         "one `sqlite3 db > /dev/null`. Same start keys (seed "
         f"{RANGE_SEED}) for kvsh and sqlite3 on {n:,} keys.",
         "µs/query = (median script time − median empty-script time, i.e. startup) / "
         f"{RANGE_QUERIES:,}; min – max from each round's script minus that round's empty "
         "script.",
         f"Checked once before timing: kvsh printed exactly {RANGE_QUERIES:,} × {RANGE_LIMIT} "
         f"× 2 lines (raw: key, value, ...), sqlite3 {RANGE_QUERIES:,} × {RANGE_LIMIT} "
         "`key|value` lines, all of them the expected pairs.",
         *results.notes.get("range", [])])
    ratios = []
    kvsh, small, sqlite = (range_per_query(results, name) for name in stores)
    if kvsh and small:
        ratios.append(close_row(f"range µs/query kvsh {n:,} / {n // 10:,} keys (O(log n + k))",
                                kvsh / small, RANGE_CLOSE))
    if kvsh and sqlite:
        ratios.append(info_row("range µs/query sqlite/kvsh", sqlite / kvsh))
    return table, ratios


def build_tables(results: Results, n: int, runs: int, parts: list[str]) -> list[Table]:
    get = results.get
    tables = []

    rows = [[system, *fmt_rate(get(f"{system}.load_rate"))]
            for system in SYSTEMS if get(f"{system}.load_rate")]
    if rows:
        tables.append(Table(
            f"Bulk load, {n:,} SET lines (median of {runs} runs, fresh store each run)",
            ["system", "lines/s (median)", "min – max"], rows,
            ["kvsh: --sync always; redis: AOF appendfsync everysec via redis-cli --pipe "
             "(server already running); sqlite3: one transaction, default pragmas.",
             *results.notes.get("load", [])]))

    ratios = []
    kvsh_load = get("kvsh.load_rate")
    for other, goal in (("redis", GOAL_LOAD_VS_REDIS), ("sqlite", GOAL_LOAD_VS_SQLITE)):
        if kvsh_load and get(f"{other}.load_rate"):
            ratios.append(goal_row(f"load kvsh/{other}",
                                   kvsh_load.median / get(f"{other}.load_rate").median, goal))
    for redis, label in (("redis", "AOF as loaded"), ("redis_rewritten", "rewritten AOF")):
        if get("kvsh.startup") and get(f"{redis}.startup"):
            ratios.append(goal_row(f"startup redis/kvsh ({label})",
                                   get(f"{redis}.startup").median / get("kvsh.startup").median,
                                   GOAL_STARTUP_VS_REDIS))
    if get("kvsh_compacted.startup") and get("redis_rewritten.startup"):
        ratios.append(goal_row("startup redis (rewritten AOF) / kvsh (after :compact)",
                               get("redis_rewritten.startup").median
                               / get("kvsh_compacted.startup").median,
                               GOAL_COMPACTED_STARTUP_VS_REDIS))

    rows = []
    labels = {"kvsh.startup": "kvsh (exec → value printed → exit)",
              "kvsh_compacted.startup": "kvsh after :compact (exec → value printed → exit)",
              "redis.startup": "redis, AOF as loaded (exec → GET answered)",
              "redis.startup_log": "redis, AOF as loaded: load time from its log",
              "redis_rewritten.startup": "redis, rewritten AOF (exec → GET answered)",
              "redis_rewritten.startup_log": "redis, rewritten AOF: load time from its log",
              "sqlite.startup": "sqlite3 (exec → SELECT printed → exit), reference"}
    for name, label in labels.items():
        if get(name):
            rows.append([label, *fmt_seconds(get(name))])
    if rows:
        tables.append(Table(
            f"Startup with {n:,} keys + one GET (median of {runs} runs, warm page cache)",
            ["what", "wall time (median)", "min – max"], rows, results.notes.get("startup", [])))

    range_table, range_ratios = build_range_table(results, n, runs)
    if range_table:
        tables.append(range_table)
    ratios += range_ratios

    if ratios:
        tables.append(Table("Ratios (of medians) against goals",
                            ["ratio", "value", "goal", "status"], ratios))

    if "memory" not in parts:
        return tables
    rows = []
    memory = {"kvsh.startup_rss": "kvsh peak RSS, GET process",
              "kvsh_compacted.startup_rss": "kvsh peak RSS, GET process after :compact",
              "kvsh.load_rss": "kvsh peak RSS, bulk load process",
              "redis.used_memory": "redis used_memory after load",
              "redis.used_memory_rss": "redis used_memory_rss after load",
              "redis.startup_rss": "redis-server peak RSS, started from AOF as loaded",
              "redis_rewritten.startup_rss": "redis-server peak RSS, started from rewritten AOF"}
    floored = False
    for name, label in memory.items():
        if get(name):
            value = get(name).median
            # wait4's peak RSS (not redis INFO) cannot read below the harness's own peak.
            at_floor = name.endswith("_rss") and not name.startswith("redis.used") \
                and value <= results.rss_floor * 1.02
            floored |= at_floor
            rows.append([label, ("≤ " if at_floor else "") + fmt_bytes(value),
                         f"{value / n:,.1f}"])
    for label, value in results.sizes.items():
        rows.append([f"disk: {label}", fmt_bytes(value), f"{value / n:,.1f}"])
    notes = []
    if floored:
        notes.append("≤: at the floor of the measurement. Peak RSS comes from wait4, and Linux "
                     "carries the parent's high-water mark over vfork + exec, so no child reads "
                     f"below this harness's own peak RSS ({fmt_bytes(results.rss_floor)}); the "
                     "real figure is lower.")
    tables.append(Table(f"Memory and disk with {n:,} keys (medians)",
                        ["what", "size", "bytes/key"], rows, notes))
    return tables


def fmt_ms(value: float) -> str:
    return f"{value:,.3f}"


def server_goal(rps_ratio: float, p99_ratio: float | None) -> str:
    """Status against the server goals: kvsh ops/s ≥ redis, and (if given) p99 ≤ redis."""
    parts = ["ops/s " + ("met" if rps_ratio >= 1 else "NOT met")]
    if p99_ratio is not None:
        parts.append("p99 " + ("met" if p99_ratio <= 1 else "NOT met"))
    return ", ".join(parts)


def build_server_tables(results: Results, runs: int, requests: int) -> list[Table]:
    """The server tables: everysec and always side by side, spreads, kvsh threads."""
    get = results.get
    tables = []
    common = (f"`redis-benchmark -t set,get -n {requests:,} -c {SERVER_CLIENTS} --csv` "
              f"(SET only for always), `-P {SERVER_PIPELINE}` on the pipelined rows; one key "
              f"({BENCH_KEY}, {BENCH_VALUE_BYTES}-byte value), as redis-benchmark does without "
              "-r; `--threads 2` on the client-threads rows. A fresh server "
              "on a fresh data dir for every invocation; the systems take turns on each "
              "workload, who goes first alternating by round. redis-benchmark runs on the same "
              "machine (loopback) and shares its cores with the server.")
    checks = ("Checked after every run: redis-benchmark exit 0, CSV header and rows as expected, "
              f"DBSIZE ≥ 1 and GET {BENCH_KEY} gives {BENCH_VALUE_BYTES} bytes; kvsh exits 0 "
              "on SIGTERM, "
              "redis on SHUTDOWN NOSAVE (after fsyncing its AOF).")
    spreads = []
    for sync, title, kvsh_flags, redis_flags in (
            ("everysec", "everysec", "kvsh serve --sync everysec",
             "redis-server --appendonly yes --appendfsync everysec --save \"\""),
            ("always", "always (every acknowledged write on disk)", "kvsh serve --sync always",
             "redis-server --appendonly yes --appendfsync always --save \"\"")):
        rows = []
        for workload in (w for w in SERVER_WORKLOADS if w.sync == sync):
            for test in workload.tests:
                row = workload.row(test)
                kvsh = (get(f"kvsh.server.{sync}.{row}.rps"), get(f"kvsh.server.{sync}.{row}.p99"))
                redis = (get(f"redis.server.{sync}.{row}.rps"),
                         get(f"redis.server.{sync}.{row}.p99"))
                if not kvsh[0] and not redis[0]:
                    continue
                cells = [row]
                cells += [f"{s.median:,.0f}" if s else "—" for s in (kvsh[0], redis[0])]
                rps_ratio = kvsh[0].median / redis[0].median if kvsh[0] and redis[0] else None
                cells.append(f"{rps_ratio:.2f}×" if rps_ratio else "—")
                cells += [fmt_ms(s.median) if s else "—" for s in (kvsh[1], redis[1])]
                p99_ratio = kvsh[1].median / redis[1].median if kvsh[1] and redis[1] else None
                cells.append(f"{p99_ratio:.2f}×" if p99_ratio else "—")
                if rps_ratio is None:
                    cells.append("—")
                elif not workload.has_goal:
                    cells.append("(extra row, no goal)")
                else:
                    cells.append(server_goal(rps_ratio, p99_ratio if sync == "everysec" else None))
                rows.append(cells)
                for system, (rps, p99) in (("kvsh", kvsh), ("redis", redis)):
                    if rps:
                        def median(metric: str, form: str) -> str:
                            samples = get(f"{system}.server.{sync}.{row}.{metric}")
                            return format(samples.median, form) if samples else "—"
                        spreads.append([f"{sync} {row}", system,
                                        "{:,.0f} – {:,.0f}".format(*rps.spread),
                                        "{} – {}".format(*map(fmt_ms, p99.spread)),
                                        median("client_cpu", ".0%"), median("client_us", ".2f"),
                                        median("server_us", ".2f"), median("server_sleeps", ".1f")])
        if not rows:
            continue
        goal = ("goal: kvsh ≥ redis in ops/s on the four rows without `--threads`, p99 no worse"
                if sync == "everysec" else "goal: kvsh ≥ redis in ops/s on SET")
        tables.append(Table(
            f"Server, sync {title}: redis-benchmark -c {SERVER_CLIENTS} -n {requests:,} "
            f"(median of {runs} runs)",
            ["test", "kvsh ops/s", "redis ops/s", "ops/s kvsh/redis", "kvsh p99 ms",
             "redis p99 ms", "p99 kvsh/redis", "status"], rows,
            [f"`{kvsh_flags}` (default --threads) vs `{redis_flags}`; {goal}.",
             *([common, checks] if sync == "everysec" else [])]))
    if spreads:
        tables.append(Table(f"Server: spread over the {runs} runs, and what each request cost",
                            ["test", "system", "ops/s min – max", "p99 ms min – max", "client CPU",
                             "client µs/req", "server µs/req", "server sleeps /1k req"],
                            spreads,
                            ["Medians over the runs; one invocation runs SET and GET, so both rows show the same "
                             "per-invocation figures. client CPU: redis-benchmark's user + system time over its "
                             "wall time; near 100% per thread the client is saturated and sets the pace for "
                             "either server. client µs/req and server µs/req: user + system CPU time per request "
                             "(the server's from /proc/PID/stat, all threads; 10 ms clock ticks). server sleeps: "
                             "voluntary context switches of the server's threads per 1,000 requests, mostly an "
                             "event loop finding nothing to do and blocking in epoll_wait; each one a client "
                             "then pays for when its next write has to wake the server."]))

    rows = []
    for workload in SERVER_THREADS_WORKLOADS:
        for test in workload.tests:
            row = workload.row(test)
            samples = [(get(f"kvsh_t{t}.server.everysec.{row}.rps"),
                        get(f"kvsh_t{t}.server.everysec.{row}.p99")) for t in SERVER_THREADS]
            if not all(rps for rps, _ in samples):
                continue
            cells = [row]
            cells += [f"{rps.median:,.0f}" for rps, _ in samples]
            cells.append(f"{samples[1][0].median / samples[0][0].median:.2f}×")
            cells += [fmt_ms(p99.median) for _, p99 in samples]
            redis = get(f"redis.server.everysec.{row}.rps")
            cells.append(f"{redis.median:,.0f}" if redis else "—")
            rows.append(cells)
    if rows:
        t1, t2 = SERVER_THREADS
        cores = os.cpu_count() or 1
        tables.append(Table(
            "kvsh event-loop threads: sync everysec, one run each",
            ["test", f"--threads {t1} ops/s", f"--threads {t2} ops/s", f"{t2}/{t1}",
             f"--threads {t1} p99 ms", f"--threads {t2} p99 ms", "redis ops/s (median above)"],
            rows,
            [f"Default --threads is max(1, cores − 1) = {max(1, cores - 1)} on this machine "
             f"({cores} cores, shared with redis-benchmark). A single run per setting, taken "
             "after the rounds above: indicative only."]))
    if tables:
        tables[-1].notes += results.notes.get("server", [])
    return tables


def build_replication_tables(results: Results, runs: int, n: int, requests: int,
                             sync_requests: int) -> list[Table]:
    """The replication part's tables: full sync, SET with a replica (+ lag), synchronous writes."""
    from .replication import SYNC_CONFIGS  # replication imports report's neighbours; avoid a cycle
    get = results.get
    tables, ratios = [], []
    redis_flags = " ".join(REDIS_REPL_ARGS)

    rows = []
    for system, label in (("kvsh", "kvsh → kvsh"), ("redis", "redis → redis")):
        time_s = get(f"{system}.repl.full_sync")
        if not time_s:
            continue
        primary = get(f"{system}.repl.full_sync_primary_cpu")
        replica = get(f"{system}.repl.full_sync_replica_cpu")
        rows.append([label, *fmt_seconds(time_s), f"{primary.median:.2f} s",
                     f"{replica.median:.2f} s",
                     f"{n / time_s.median:,.0f}"])
    if rows:
        tables.append(Table(
            f"Replication: full sync of {n:,} keys to a fresh replica (median of {runs} runs)",
            ["primary → replica", "REPLICAOF → link up + all keys", "min – max",
             "primary CPU", "replica CPU", "keys/s"], rows,
            [f"The primary holds {n:,} keys (`key:NNNNNNN`, 100-byte values; loaded once, untimed: "
             "kvsh by its shell (`--sync always`) and `:compact`, then `kvsh serve --sync everysec`; "
             "redis by `redis-cli --pipe`, appendfsync everysec, its automatic AOF rewrite finished). "
             "Each run starts a fresh replica process on a fresh data dir (kvsh `--sync everysec`; "
             "redis appendonly yes, appendfsync everysec), sends `REPLICAOF 127.0.0.1 PORT` and polls "
             f"`INFO replication` every {REPL_POLL_INTERVAL * 1000:g} ms until `master_link_status:up`, "
             f"then DBSIZE until it is {n:,}; GET of a middle key is checked after.",
             f"redis (primary and replica): `{redis_flags}` (Redis 7.0's defaults except "
             "`repl-diskless-sync-delay`, 5 s by default, set to 0 so that the transfer starts at once, "
             "as kvsh's does). The redis replica saves the RDB to disk, fsyncs it and loads it; after "
             "the link is up it rewrites its AOF in a fork, outside the timed window (waited for before "
             "shutting it down). The kvsh replica loads the RDB into a new index and writes it as a new "
             "image before it swaps it in, inside the window.",
             "CPU: user + system time from /proc/PID/stat over the timed window, all threads; the redis "
             "primary's includes its fork child (the RDB writer), counted once the background save has "
             "ended and the child is reaped."]))
        kvsh, redis = get("kvsh.repl.full_sync"), get("redis.repl.full_sync")
        if kvsh and redis:
            ratios.append(goal_row("full sync redis/kvsh (time)", redis.median / kvsh.median,
                                   GOAL_FULL_SYNC_VS_REDIS))

    rows, lag_rows = [], []
    for pipeline in REPL_BENCH_PIPELINES:
        row = "SET" + (f" -P {pipeline}" if pipeline > 1 else "")
        kvsh = (get(f"kvsh.repl.set.P{pipeline}.rps"), get(f"kvsh.repl.set.P{pipeline}.p99"))
        redis = (get(f"redis.repl.set.P{pipeline}.rps"), get(f"redis.repl.set.P{pipeline}.p99"))
        if not kvsh[0] and not redis[0]:
            continue
        cells = [row, *[f"{s.median:,.0f}" if s else "—" for s in (kvsh[0], redis[0])]]
        ratio = kvsh[0].median / redis[0].median if kvsh[0] and redis[0] else None
        cells.append(f"{ratio:.2f}×" if ratio else "—")
        cells += [fmt_ms(s.median) if s else "—" for s in (kvsh[1], redis[1])]
        p99_ratio = kvsh[1].median / redis[1].median if kvsh[1] and redis[1] else None
        cells.append(f"{p99_ratio:.2f}×" if p99_ratio else "—")
        cells.append(("ops/s met" if ratio >= 1 else "ops/s NOT met") if ratio else "—")
        rows.append(cells)
        if ratio:
            ratios.append(goal_row(f"{row} with one replica, kvsh/redis ops/s", ratio, 1.0))
        for system, (rps, _) in (("kvsh", kvsh), ("redis", redis)):
            if not rps:
                continue
            def med(metric: str, form: str) -> str:
                return format(get(f"{system}.repl.set.P{pipeline}.{metric}").median, form)
            lag_rows.append([row, system, "{:,.0f} – {:,.0f}".format(*rps.spread),
                             med("acked_bytes_p50", ",.0f"), med("acked_bytes_p99", ",.0f"),
                             med("acked_ms_p50", ",.1f"), med("acked_ms_p99", ",.1f"),
                             med("applied_bytes_p50", ",.0f"), med("applied_bytes_p99", ",.0f"),
                             med("applied_ms_p50", ",.1f"), med("applied_ms_p99", ",.1f"),
                             med("samples", ",.0f"), med("shortfall", ",.0f"),
                             med("primary_us", ".2f"), med("replica_us", ".2f"),
                             med("client_us", ".2f")])
    if rows:
        tables.append(Table(
            f"Replication: redis-benchmark -t set -c 50 -n {requests:,}, primary with one replica "
            f"attached, everysec (median of {runs} runs)",
            ["test", "kvsh ops/s", "redis ops/s", "ops/s kvsh/redis", "kvsh p99 ms", "redis p99 ms",
             "p99 kvsh/redis", "status"], rows,
            ["A fresh primary and a fresh replica (both on fresh data dirs, kvsh `--sync everysec`, "
             f"redis appendonly yes, appendfsync everysec, `{redis_flags}`) per invocation; the replica "
             "attached with REPLICAOF and online before redis-benchmark starts; goal: kvsh ≥ redis in "
             "ops/s. Checked after: DBSIZE 1 and a 3-byte value on both."]))
        tables.append(Table(
            "Replication lag under that load (medians over the runs of each run's p50/p99)",
            ["test", "system", "ops/s min – max", "acked B p50", "acked B p99", "acked ms p50",
             "acked ms p99", "applied B p50", "applied B p99", "applied ms p50", "applied ms p99",
             "samples", "shortfall B", "primary µs/req", "replica µs/req", "client µs/req"], lag_rows,
            [f"Sampled every {REPL_SAMPLE_INTERVAL * 1000:g} ms while redis-benchmark runs: the "
             "primary's `master_repl_offset` and slave0's `offset` (acked: what the replica "
             "acknowledged to the primary), and the replica's own `slave_repl_offset` (applied: what "
             "it has processed). B: master offset minus the replica's, per sample. ms: for each sample, "
             "the time until a later sample saw the replica's offset reach that sample's master "
             "offset (resolution: the sampling interval).",
             "A redis replica acknowledges once a second (`REPLCONF ACK` from its cron; more often only "
             "when a WAIT asks), so redis's acked lag measures that period, not how far behind its "
             "replica is: its applied columns do. A kvsh replica acknowledges after every batch it "
             "applies.",
             "shortfall: how far the replica's offset stayed below the primary's once it had applied "
             "everything (its offsets unchanged for 2 s and the last value there); 0 when the offsets "
             "meet, as they must. A replica with a shortfall never acknowledges the last writes' offsets: "
             "ms figures are then taken over the samples that were reached.",
             "µs/req: user + system CPU time per SET over the load (/proc/PID/stat, all threads, 10 ms "
             "ticks) of the primary, of the replica and of redis-benchmark."]))

    rows = []
    labels = {"kvsh": "kvsh --sync-replicas 1 (primary everysec, replica --sync always)",
              "redis": "redis SET + WAIT 1 0 (primary everysec, replica appendfsync always)",
              "kvsh_re": "kvsh --sync-replicas 1 (primary everysec, replica --sync everysec)",
              "redis_re": "redis SET + WAIT 1 0 (primary everysec, replica appendfsync everysec)"}
    for name, _system, _p, _r in SYNC_CONFIGS:
        rps = get(f"{name}.repl.syncw.rps")
        if not rps:
            continue
        p50, p99 = get(f"{name}.repl.syncw.p50"), get(f"{name}.repl.syncw.p99")
        stalled = get(f"{name}.repl.syncw.stalled")
        rows.append([labels[name], f"{rps.median:,.0f}", "{:,.0f} – {:,.0f}".format(*rps.spread),
                     fmt_ms(p50.median), fmt_ms(p99.median),
                     f"{get(f'{name}.repl.syncw.client_cpu').median:.0%}",
                     ", ".join(f"{v:.0f}" for v in stalled.values)])
    for kvsh_name, redis_name, label in (("kvsh", "redis", "replica always"),
                                         ("kvsh_re", "redis_re", "replica everysec")):
        k, r = get(f"{kvsh_name}.repl.syncw.rps"), get(f"{redis_name}.repl.syncw.rps")
        if k and r:
            ratios.append(info_row(f"synchronous writes ({label}), kvsh/redis ops/s",
                                   k.median / r.median))
            ratios.append(info_row(f"synchronous writes ({label}), kvsh/redis p99",
                                   get(f"{kvsh_name}.repl.syncw.p99").median
                                   / get(f"{redis_name}.repl.syncw.p99").median))
    if rows:
        tables.append(Table(
            f"Replication: synchronous writes, {sync_requests:,} SETs over {SYNC_CLIENTS} "
            f"connections (median of {runs} runs)",
            ["configuration", "ops/s", "min – max", "p50 ms", "p99 ms", "client CPU",
             "stalled connections per run"], rows,
            [f"One client for both (`sync_client` in replication.py): {SYNC_CLIENTS} Python threads, "
             "one connection each, each SETting its share of distinct keys (100-byte values) one at a "
             "time; for redis every SET is followed by `WAIT 1 0` in the same write, and a write "
             "counts when `+OK` and `:1` are in. Latency: from sending to the last reply.",
             "kvsh: a write's reply waits until the replica acknowledged it; a kvsh replica with "
             "`--sync always` acknowledges only what is on its disk. A redis replica acknowledges "
             "(`REPLCONF ACK`, in reply to the primary's `GETACK`) from its event loop after flushing "
             "its AOF, so with appendfsync always its acknowledgement also follows the fsync. Checked "
             "after every run: every reply as expected, and the replica's DBSIZE equals the number of "
             "SETs at once (every acknowledged write is there).",
             "client CPU: the client's CPU time over the run's wall time; near 100% it (one Python "
             "process) sets the pace for either server.",
             f"stalled: connections whose write got no reply within {SYNC_STALL_SECONDS:g} s; they stop "
             "there, and ops/s and latencies are then those of the writes acknowledged before (ops/s over "
             "the time to the last acknowledgement).",
             *results.notes.get("replication", [])]))
    if ratios:
        tables.append(Table("Replication: ratios (of medians) against issue 11's goals",
                            ["ratio", "value", "goal", "status"], ratios))
    return tables


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min)"


def environment(args: argparse.Namespace, command: str) -> list[tuple[str, str]]:
    """Facts about the machine and tools, to print above the results."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    df = subprocess.run(["df", "-hT", str(args.work)], capture_output=True, text=True)
    df_line = " ".join(df.stdout.strip().splitlines()[-1].split()) if df.returncode == 0 else "?"
    facts = [
        ("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
        ("nproc", command_output(["nproc"]) or str(os.cpu_count())),
        ("cpu", cpu),
        ("kernel", " ".join(platform.uname()[i] for i in (0, 2, 4))),
        ("python", platform.python_version()),
        ("redis-server", command_output(["redis-server", "--version"]) or "?"),
        ("sqlite3", command_output(["sqlite3", "--version"]) or "?"),
    ]
    if "server" in args.parts or "replication" in args.parts:
        facts.append(("redis-benchmark", command_output(["redis-benchmark", "--version"]) or "?"))
    if args.kvsh:
        version = command_output([args.kvsh, "--version"])
        if version:
            facts.append(("kvsh", version))
    facts += [("disk (df -hT work dir)", df_line), ("load average at start", load_average()),
              ("command", command)]
    return facts


def render(facts: list[tuple[str, str]], tables: list[Table], markdown: bool) -> str:
    if not markdown:
        width = max(len(k) for k, _ in facts)
        head = "\n".join(f"{k.ljust(width)}  {v}" for k, v in facts)
        return head + "\n\n" + "\n\n".join(t.text() for t in tables) + "\n"
    command = dict(facts)["command"]
    env_rows = "\n".join(f"| {k} | {v.replace('|', '/')} |" for k, v in facts if k != "command")
    return (f"### kvsh vs redis vs sqlite ({dict(facts)['date']})\n\n"
            f"```sh\n{command}\n```\n\n"
            f"| environment | |\n|---|---|\n{env_rows}\n\n"
            + "\n\n".join(t.markdown() for t in tables) + "\n")
