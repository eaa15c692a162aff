"""What is measured and the goals it is held to: the constants every module shares."""

from __future__ import annotations


SYSTEMS = ("kvsh", "redis", "sqlite")


PARTS = ("load", "startup", "compact", "range", "memory", "server", "replication")


PART_SYSTEMS = {"load": SYSTEMS, "startup": SYSTEMS, "compact": ("kvsh", "redis"),
                "range": ("kvsh", "sqlite"), "memory": SYSTEMS,
                "server": ("kvsh", "redis"),
                "replication": ("kvsh", "redis")}  # who takes part in what


STORE_PARTS = ("load", "startup", "compact", "range", "memory")  # need data set + stores


DATA_PARTS = (*STORE_PARTS, "replication")  # need the generated data set (replication: not the stores)


VALUE_BYTES = 100


DATA_FORMAT_VERSION = 1  # bump when the generated data changes shape


# Goals from the kvsh design brief.
GOAL_LOAD_VS_REDIS = 2.0


GOAL_LOAD_VS_SQLITE = 5.0


GOAL_STARTUP_VS_REDIS = 3.0


GOAL_COMPACTED_STARTUP_VS_REDIS = 4.0  # kvsh after :compact vs redis rewritten AOF


# Range queries: RANGE_QUERIES random start keys (seeded), RANGE_LIMIT pairs each.
RANGE_QUERIES = 1000


RANGE_LIMIT = 100


RANGE_SEED = 20240601


RANGE_CLOSE = 1.5  # N vs N/10 keys: per-query latencies within this factor are "close"


KVSH_COMPACTED_LOG_MAX = 4096  # bytes; the log :compact starts holds only its header


# Server part: redis-benchmark against `kvsh serve` and redis-server.
SERVER_REQUESTS = 1_000_000  # redis-benchmark -n (--server-requests)


SERVER_CLIENTS = 50  # redis-benchmark -c


SERVER_PIPELINE = 16  # redis-benchmark -P of the pipelined rows


SERVER_THREADS = (1, 2)  # kvsh serve --threads, tried once on the everysec rows


SERVER_START_TIMEOUT = 30.0  # seconds until a fresh server must answer PING


SERVER_STOP_TIMEOUT = 60.0  # seconds until a stopped server must have exited


BENCH_KEY = "key:__rand_int__"  # redis-benchmark's key without -r: one key


BENCH_VALUE_BYTES = 3  # redis-benchmark's default payload size (-d 3; random letters in 7.0)


BENCH_CSV_HEADER = ["test", "rps", "avg_latency_ms", "min_latency_ms", "p50_latency_ms",
                    "p95_latency_ms", "p99_latency_ms", "max_latency_ms"]  # redis-benchmark 7.0


REDIS_AOF_DIR = "appendonlydir"  # redis 7 default `appenddirname`


REDIS_START_TIMEOUT = 600.0  # seconds; generous for 1M keys on a noisy box


# Replication part (issue 11): kvsh primary -> kvsh replica beside redis -> redis, on loopback.
GOAL_FULL_SYNC_VS_REDIS = 2.0  # full sync of --lines keys: redis time / kvsh time


REPL_SYNC_TIMEOUT = 900.0  # seconds a full sync (or a replica's catching up) may take


REPL_POLL_INTERVAL = 0.002  # seconds between INFO polls while timing a full sync


REPL_SAMPLE_INTERVAL = 0.010  # seconds between lag samples under redis-benchmark


REPL_BENCH_PIPELINES = (1, 16)  # redis-benchmark -t set -P ... with one replica attached


# The synchronous-replication client (the same for both systems): SYNC_CLIENTS connections,
# each running its share of --sync-requests SETs (redis: SET and WAIT 1 0, sent together).
SYNC_REQUESTS = 20_000


SYNC_CLIENTS = 50


SYNC_STALL_SECONDS = 20.0  # a write not acknowledged in this time stops its connection (reported)


REPL_QUIET_SECONDS = 2.0  # offsets unchanged this long, with the last value there: the replica is done


REDIS_REPL_ARGS = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
                   "--repl-diskless-load", "disabled"]  # every redis in this part


class BenchError(RuntimeError):
    """A measurement could not be taken or its result failed validation."""
