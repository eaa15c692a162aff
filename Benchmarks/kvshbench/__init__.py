r"""Side-by-side benchmark of kvsh against redis-server and sqlite3.

Measures, on N lines of ``SET key:NNNNNNN <100-byte value>``, in parts that
``--parts`` selects:

1. ``load``: bulk-load throughput (lines/s, fresh empty store per run),
2. ``startup``: open a store holding the N keys and answer one GET,
3. ``compact``: the same startup for kvsh after ``:compact`` (one image and an
   empty log), against redis started from its rewritten (RDB-preamble) AOF,
4. ``range``: latency of ``RANGE start + LIMIT 100`` (kvsh, on N and N/10
   keys) and of the equivalent ``SELECT ... LIMIT 100`` (sqlite3),
5. ``memory``: the memory-per-key and on-disk-size table (its RSS figures come
   from the timed runs of the other parts),
6. ``server``: ``kvsh serve`` against redis-server under ``redis-benchmark -c 50``
   (SET and GET, without pipelining and with ``-P 16``): kvsh ``--sync everysec``
   vs redis ``appendfsync everysec``, and ``--sync always`` vs ``appendfsync
   always`` (SET); an extra everysec SET/GET row with a two-threaded client
   (``redis-benchmark --threads 2``), where the client no longer sets the pace;
   plus one run of kvsh with ``--threads 1`` and ``--threads 2``. A fresh
   server on a fresh data dir for every redis-benchmark invocation. Beside
   ops/s and p99, every invocation records the server's and the client's CPU
   time per request and how often the server's threads went to sleep.
7. ``replication`` (issue 11): kvsh primary -> kvsh replica beside redis ->
   redis replica: the full sync of the N keys to a fresh replica (REPLICAOF
   -> link up with all keys); ``redis-benchmark -t set -c 50`` (``-P 1`` and
   ``-P 16``) against a primary with one replica attached (everysec), with
   the replication lag sampled every 10 ms; and synchronous replication
   (kvsh ``--sync-replicas 1`` beside redis ``WAIT 1 0`` after every SET)
   driven by one small client of the script's own for both.

Timings are wall-clock; every figure is the median over ``--runs`` runs, and
the systems are interleaved within each round so that noise on a shared
machine hits them alike. Without ``load``, the stores left in the work
directory by an earlier run with the same ``--lines`` are reused (or loaded
once, untimed). The ``server`` part needs neither the data set nor the stores;
``replication`` needs the data set only (it loads its own primaries, untimed).
Standard library only.

Usage:
    python3 Benchmarks/bench.py --kvsh .build/release/kvsh \
        [--lines 1000000] [--runs 5] [--work DIR] [--markdown OUT.md] \
        [--only kvsh,redis,sqlite] \
        [--parts load,startup,compact,range,memory,server,replication] \
        [--server-requests 1000000] [--sync-requests 20000]

    # the replication benchmarks alone (issue 11; Docs/Benchmarks.md, Run H):
    python3 Benchmarks/bench.py --kvsh .build/release/kvsh --parts replication \
        --only kvsh,redis --runs 3 --server-requests 500000

Layout (Benchmarks/bench.py is the entry point; the code is this package):
    config.py     what is measured, the goals, and BenchError
    processes.py  child processes: spawn, time (wall clock, peak RSS), stop
    dataset.py    the generated data set (N SET lines), kept between runs
    resp.py       a minimal RESP client (PING, INFO, DBSIZE, checks)
    servers.py    starting and stopping redis-server and kvsh serve
    measure.py    the shared runner: samples, results, stores kept between
                  runs, the driver that interleaves the systems per round
    load.py, startup.py, compact.py, ranges.py, memory.py, server.py,
    replication.py
                  one module per part: its measurements, as a mixin of Bench
    suite.py      Bench, the parts put together
    report.py     the tables (plain text or Markdown) and environment facts
    cli.py        options, validation and the main flow
"""
