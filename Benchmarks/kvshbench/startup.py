"""2. Startup: open a store holding the N keys and answer one GET."""

from __future__ import annotations

import time
from pathlib import Path

from .config import BenchError, REDIS_AOF_DIR
from .processes import copy_fresh, fresh_dir, run_timed
from .report import fmt_bytes
from .servers import RedisServer, redis_aof_load_seconds


class StartupPart:
    """2. Startup: open a store holding the N keys and answer one GET.

    A mixin of Bench (suite.py): its methods use the settings and results of BenchCore (measure.py)."""

    # --- 2. startup + one GET ----------------------------------------------

    def startup_kvsh(self) -> None:
        """Wall time of `kvsh --data-dir D GET <middle key>` on a copy of the loaded store."""
        store = self.work / "kvsh" / "startup"
        copy_fresh(self.kvsh_store, store)
        files = ", ".join(f"{p.name} {fmt_bytes(p.stat().st_size)}"
                          for p in sorted(store.iterdir()) if p.suffix in (".image", ".log"))
        self.results.note("startup", f"kvsh store as loaded: {files}")
        done = run_timed([self.kvsh, "--data-dir", str(store), "GET", self.data.middle_key],
                         capture=True)
        self._check_exit("kvsh GET", done)
        if self.data.middle_value not in done.stdout.decode(errors="replace"):
            raise BenchError(f"kvsh GET printed {done.stdout[:200]!r}, not the value")
        self.results.add("kvsh.startup", done.seconds)
        self.results.add("kvsh.startup_rss", done.maxrss_bytes)

    def rewrite_redis_store(self) -> None:
        """Untimed: BGREWRITEAOF a copy of the loaded store into one RDB-preamble base.

        This is the layout redis converges to with aof-use-rdb-preamble, and
        its fastest startup; the store as left by the load is usually a base
        RDB from redis's own automatic rewrite plus a long incr AOF to replay.
        """
        store = fresh_dir(self.redis_rewritten_store)
        copy_fresh(self.redis_store / REDIS_AOF_DIR, store / REDIS_AOF_DIR)
        with RedisServer(store) as server:
            server.call_when_loaded("PING")
            server.wait_for_aof_rewrite()  # it may start one by itself after loading
            server.call("BGREWRITEAOF")
            server.wait_for_aof_rewrite()
            server.shutdown()

    def startup_redis(self) -> None:
        """redis-server on the AOF as left by the load."""
        self._startup_redis_from(self.redis_store, "redis")

    def startup_redis_rewritten(self) -> None:
        """redis-server on the rewritten AOF (one RDB-preamble base file)."""
        self._startup_redis_from(self.redis_rewritten_store, "redis_rewritten")

    def _startup_redis_from(self, source: Path, name: str) -> None:
        """Time from exec of redis-server on a copy of ``source``'s AOF to the GET reply."""
        store = fresh_dir(self.work / "redis" / "startup")
        copy_fresh(source / REDIS_AOF_DIR, store / REDIS_AOF_DIR)
        start = time.perf_counter()
        with RedisServer(store) as server:
            value = server.call_when_loaded("GET", self.data.middle_key)
            seconds = time.perf_counter() - start
            if value != self.data.middle_value:
                raise BenchError(f"redis GET returned {value!r}")
            dbsize = server.call("DBSIZE")
            if dbsize != self.n:
                raise BenchError(f"redis loaded {dbsize} keys from {source}, expected {self.n}")
            maxrss = server.shutdown()
        self.results.add(f"{name}.startup", seconds)
        self.results.add(f"{name}.startup_log", redis_aof_load_seconds(server.log))
        self.results.add(f"{name}.startup_rss", maxrss)

    def startup_sqlite(self) -> None:
        """For reference: `sqlite3 db "SELECT value ... WHERE key=<middle>"`."""
        db = self.work / "sqlite" / "startup" / "db.sqlite"
        copy_fresh(self.sqlite_db.parent, db.parent)
        done = run_timed(["sqlite3", str(db),
                          f"SELECT value FROM kv WHERE key='{self.data.middle_key}';"],
                         capture=True)
        self._check_exit("sqlite3 SELECT", done)
        if done.stdout.decode().strip() != self.data.middle_value:
            raise BenchError(f"sqlite3 SELECT printed {done.stdout[:200]!r}")
        self.results.add("sqlite.startup", done.seconds)
