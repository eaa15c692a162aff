"""1. Bulk load: N SET lines into a fresh empty store per run."""

from __future__ import annotations

import os

from .config import BenchError
from .processes import fresh_dir, run_timed
from .servers import RedisServer


class LoadPart:
    """1. Bulk load: N SET lines into a fresh empty store per run.

    A mixin of Bench (suite.py): its methods use the settings and results of BenchCore (measure.py)."""

    # --- 1. bulk load -----------------------------------------------------

    def validate_kvsh_load(self) -> None:
        """Untimed first run: exit status 0 and exactly one reply line per command."""
        store = fresh_dir(self.kvsh_store)
        replies = self.work / "kvsh" / "replies.txt"
        done = run_timed([self.kvsh, "--data-dir", str(store), "--sync", "always"],
                         stdin_path=self.data.txt, stdout_path=replies)
        self._check_exit("kvsh load", done)
        with open(replies, "rb") as f:
            count = sum(1 for _ in f)
        if count != self.n:
            raise BenchError(f"kvsh printed {count} reply lines for {self.n} commands")
        replies.unlink()

    def load_kvsh(self) -> None:
        store = fresh_dir(self.kvsh_store)
        os.sync()
        done = run_timed([self.kvsh, "--data-dir", str(store), "--sync", "always"],
                         stdin_path=self.data.txt)
        self._check_exit("kvsh load", done)
        self.results.add("kvsh.load_rate", self.n / done.seconds)
        self.results.add("kvsh.load_rss", done.maxrss_bytes)

    def load_redis(self) -> None:
        """Fresh server and dir; time `redis-cli --pipe`; leave the AOF on disk."""
        store = fresh_dir(self.redis_store)
        with RedisServer(store) as server:
            server.call_when_loaded("PING", timeout=30)
            os.sync()
            done = run_timed(["redis-cli", "-p", str(server.port), "--pipe"],
                             stdin_path=self.data.txt, capture=True)
            self._check_exit("redis-cli --pipe", done)
            summary = done.stdout.decode()
            if f"errors: 0, replies: {self.n}" not in summary:
                raise BenchError(f"redis-cli --pipe summary:\n{summary}")
            dbsize = server.call("DBSIZE")
            if dbsize != self.n:
                raise BenchError(f"redis DBSIZE {dbsize} after load, expected {self.n}")
            server.wait_for_aof_rewrite()
            memory = server.info("memory")
            server.shutdown()
        if "Starting automatic rewriting of AOF" in server.log.read_text():
            self.results.note("load", "redis ran its automatic AOF rewrite (default "
                              "auto-aof-rewrite-min-size 64mb: fork + RDB base file) during "
                              "the timed load.")
        self.results.add("redis.load_rate", self.n / done.seconds)
        self.results.add("redis.used_memory", int(memory["used_memory"]))
        self.results.add("redis.used_memory_rss", int(memory["used_memory_rss"]))

    def load_sqlite(self) -> None:
        db = self.sqlite_db
        fresh_dir(db.parent)
        os.sync()
        done = run_timed(["sqlite3", str(db)], stdin_path=self.data.sql)
        self._check_exit("sqlite3 load", done)
        rows = run_timed(["sqlite3", str(db), "SELECT count(*) FROM kv;"], capture=True)
        if rows.stdout.strip() != str(self.n).encode():
            raise BenchError(f"sqlite has {rows.stdout.strip()!r} rows, expected {self.n}")
        self.results.add("sqlite.load_rate", self.n / done.seconds)
