"""4. Range queries: RANGE + LIMIT 100 (kvsh, N and N/10 keys) and SELECT ... LIMIT 100 (sqlite3)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import BenchError, RANGE_LIMIT, RANGE_QUERIES, RANGE_SEED
from .dataset import key_for, value_for
from .processes import fresh_dir, run_timed


@dataclass
class RangeScripts:
    """The range-query scripts over a store holding key_for(0) .. key_for(keys - 1)."""

    keys: int
    starts: list[int]  # index of each query's start key
    kvsh: Path  # RANGE key:XXXXXXX + LIMIT 100, one per line
    sql: Path  # SELECT key, value FROM kv WHERE key >= ... ORDER BY key LIMIT 100;
    empty: Path  # no commands at all: startup and exit


class RangePart:
    """4. Range queries: RANGE + LIMIT 100 (kvsh, N and N/10 keys) and SELECT ... LIMIT 100 (sqlite3).

    A mixin of Bench (suite.py): its methods use the settings and results of BenchCore (measure.py)."""

    # --- 4. range queries ---------------------------------------------------

    def prepare_kvsh_small(self) -> None:
        """Untimed: load the first N/10 lines of data.txt into a fresh store, then :compact it."""
        lines = self.n // 10
        head = self.work / "kvsh" / "range-small.txt"
        with open(self.data.txt, "rb") as src, open(head, "wb") as dst:
            for _ in range(lines):
                dst.write(src.readline())
        store = fresh_dir(self.kvsh_small_store)
        done = run_timed([self.kvsh, "--data-dir", str(store), "--sync", "none"], stdin_path=head)
        self._check_exit(f"kvsh load of {lines} lines", done)
        head.unlink()
        self.compact_kvsh(store)

    def write_range_scripts(self, keys: int) -> RangeScripts:
        """The query scripts over a store holding key_for(0) .. key_for(keys - 1).

        RANGE_QUERIES start keys drawn with a fixed seed among those that have
        at least RANGE_LIMIT keys from them on, so every query returns exactly
        RANGE_LIMIT pairs.
        """
        rng = random.Random(RANGE_SEED)
        starts = [rng.randrange(keys - RANGE_LIMIT + 1) for _ in range(RANGE_QUERIES)]
        directory = self.work / "range"
        directory.mkdir(exist_ok=True)
        scripts = RangeScripts(keys, starts, directory / f"range-{keys}.kv",
                               directory / f"range-{keys}.sql", directory / "empty.txt")
        scripts.kvsh.write_text("".join(f"RANGE {key_for(i)} + LIMIT {RANGE_LIMIT}\n"
                                        for i in starts))
        scripts.sql.write_text("".join(f"SELECT key, value FROM kv WHERE key >= '{key_for(i)}' "
                                       f"ORDER BY key LIMIT {RANGE_LIMIT};\n" for i in starts))
        scripts.empty.write_text("")
        return scripts

    def validate_range(self, what: str, argv: list[str], script: Path,
                       scripts: RangeScripts, row: Callable[[int], str]) -> None:
        """Untimed: run ``script`` once; its output must be the expected rows, ``row(i)`` each."""
        done = run_timed(argv, stdin_path=script, capture=True)
        self._check_exit(what, done)
        expected = "".join(f"{row(j)}\n" for i in scripts.starts
                           for j in range(i, i + RANGE_LIMIT)).encode()
        lines, expected_lines = done.stdout.count(b"\n"), expected.count(b"\n")
        if lines != expected_lines:
            raise BenchError(f"{what} printed {lines:,} lines, expected {expected_lines:,}")
        if done.stdout != expected:
            pairs = zip(done.stdout.split(b"\n"), expected.split(b"\n"))
            number, got, want = next((k, g, w) for k, (g, w) in enumerate(pairs, 1) if g != w)
            raise BenchError(f"{what}: output line {number} is {got[:120]!r}, "
                             f"expected {want[:120]!r}")

    def prepare_range(self, systems: list[str]) -> None:
        """Untimed: write the scripts, build the N/10 store, check each output once."""
        self.range_scripts = self.write_range_scripts(self.n)
        self.range_small_scripts = None
        if "kvsh" in systems:
            def kvsh_row(i: int) -> str:
                return f"{key_for(i)}\n{value_for(i)}"  # raw: a key line, then a value line

            self.validate_range("kvsh RANGE script",
                                self._kvsh_range_argv(self.kvsh_compacted_store),
                                self.range_scripts.kvsh, self.range_scripts, kvsh_row)
            if self.n // 10 >= RANGE_LIMIT:
                self.prepare_kvsh_small()
                self.range_small_scripts = self.write_range_scripts(self.n // 10)
                self.validate_range("kvsh RANGE script (N/10 keys)",
                                    self._kvsh_range_argv(self.kvsh_small_store),
                                    self.range_small_scripts.kvsh, self.range_small_scripts,
                                    kvsh_row)
            else:
                self.results.note("range", f"no N/10 run: {self.n // 10} keys are fewer than "
                                  f"LIMIT {RANGE_LIMIT}")
        if "sqlite" in systems:
            self.validate_range("sqlite3 SELECT script", ["sqlite3", str(self.sqlite_db)],
                                self.range_scripts.sql, self.range_scripts,
                                lambda i: f"{key_for(i)}|{value_for(i)}")

    def _kvsh_range_argv(self, store: Path) -> list[str]:
        return [self.kvsh, "--data-dir", str(store), "--format", "raw"]

    def _time_range(self, name: str, argv: list[str], script: Path, empty: Path) -> None:
        """One round: the empty script (startup), then the query script, output to /dev/null.

        Records both wall times and this round's (script − empty) / RANGE_QUERIES.
        """
        timings = []
        for path in (empty, script):
            done = run_timed(argv, stdin_path=path)
            self._check_exit(f"{name} range script {path.name}", done)
            timings.append(done.seconds)
        self.results.add(f"{name}.range_empty", timings[0])
        self.results.add(f"{name}.range_script", timings[1])
        self.results.add(f"{name}.range_query", (timings[1] - timings[0]) / RANGE_QUERIES)

    def range_kvsh(self) -> None:
        """`kvsh --data-dir D --format raw < script` on the compacted N-key and N/10-key stores."""
        self._time_range("kvsh", self._kvsh_range_argv(self.kvsh_compacted_store),
                         self.range_scripts.kvsh, self.range_scripts.empty)
        if self.range_small_scripts:
            self._time_range("kvsh_small", self._kvsh_range_argv(self.kvsh_small_store),
                             self.range_small_scripts.kvsh, self.range_small_scripts.empty)

    def range_sqlite(self) -> None:
        """`sqlite3 db < script` (the same start keys as kvsh's N-key script)."""
        self._time_range("sqlite", ["sqlite3", str(self.sqlite_db)],
                         self.range_scripts.sql, self.range_scripts.empty)
