"""The shared runner: samples and results, the stores kept between invocations, and the driver that
interleaves the systems within each round."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import BenchError, DATA_FORMAT_VERSION, PART_SYSTEMS, STORE_PARTS
from .dataset import DataSet
from .processes import ChildResult, harness_peak_rss, run_timed


@dataclass
class Samples:
    """Repeated observations of one metric."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.values), max(self.values)


@dataclass
class Results:
    """Everything measured, keyed by ``system`` / ``metric``."""

    samples: dict[str, Samples] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    rss_floor: int = 0  # harness_peak_rss() once the last peak RSS was taken
    notes: dict[str, list[str]] = field(default_factory=dict)  # table ("load", ...) -> notes

    def add(self, name: str, value: float) -> None:
        self.samples.setdefault(name, Samples()).add(value)

    def note(self, table: str, text: str) -> None:
        """Attach ``text`` once to the table named ``table``."""
        notes = self.notes.setdefault(table, [])
        if text not in notes:
            notes.append(text)

    def get(self, name: str) -> Samples | None:
        return self.samples.get(name)


class BenchCore:
    """What every part shares: the settings, the results, the stores' paths and the driver.

    The parts are mixins (LoadPart, StartupPart, ...); Bench (suite.py) puts them together."""

    def __init__(self, args: argparse.Namespace, data: DataSet | None):
        self.kvsh = str(Path(args.kvsh).resolve()) if args.kvsh else None
        self.runs = args.runs
        self.work = args.work
        self.data = data  # None when only the server part runs
        self.n = args.lines
        self.server_requests = args.server_requests
        self.sync_requests = args.sync_requests
        self.results = Results()
        self.kvsh_compacted_ready = False  # set by prepare_kvsh_compacted()

    # --- paths of the stores left by the last load run -------------------

    @property
    def kvsh_store(self) -> Path:
        return self.work / "kvsh" / "load"

    @property
    def redis_store(self) -> Path:
        return self.work / "redis" / "load"

    @property
    def redis_rewritten_store(self) -> Path:
        return self.work / "redis" / "rewritten"

    @property
    def sqlite_db(self) -> Path:
        return self.work / "sqlite" / "db.sqlite"

    @property
    def kvsh_compacted_store(self) -> Path:
        """A copy of the loaded kvsh store after one ``:compact``."""
        return self.work / "kvsh" / "compacted"

    @property
    def kvsh_small_store(self) -> Path:
        """The first N/10 lines, loaded and compacted, for the range part."""
        return self.work / "kvsh" / "range-small"

    # --- stores kept between invocations (reused when --parts omits load) -

    def _stamp_path(self, system: str) -> Path:
        return self.work / system / "store.json"

    def _stamp_wanted(self) -> dict:
        return {"lines": self.n, "format": DATA_FORMAT_VERSION}

    def forget_store(self, system: str) -> None:
        """Mark ``system``'s stores as not reusable (a load is about to replace them)."""
        self._stamp_path(system).unlink(missing_ok=True)

    def stamp_store(self, system: str) -> None:
        """Mark ``system``'s stores as complete for this data set."""
        self._stamp_path(system).write_text(json.dumps(self._stamp_wanted()))

    def store_reusable(self, system: str) -> bool:
        """Whether an earlier run left complete stores for this data set.

        For kvsh the store must also open with this binary and hold N keys
        (the log format may have changed since).
        """
        stamp = self._stamp_path(system)
        if not stamp.exists() or json.loads(stamp.read_text()) != self._stamp_wanted():
            return False
        if system == "kvsh":
            done = run_timed([self.kvsh, "--data-dir", str(self.kvsh_store), "DBSIZE"],
                             capture=True)
            return done.returncode == 0 and done.stdout.strip() == str(self.n).encode()
        return True

    def ensure_stores(self, systems: list[str]) -> None:
        """Without the load part: reuse the stores of an earlier run, else load once, untimed."""
        loaders = {"kvsh": [self.validate_kvsh_load],
                   "redis": [self.untimed(self.load_redis), self.rewrite_redis_store],
                   "sqlite": [self.untimed(self.load_sqlite)]}
        for system in systems:
            if self.store_reusable(system):
                print(f"[prepare] {system}: reusing the loaded store in {self.work / system}",
                      file=sys.stderr)
                continue
            print(f"[prepare] {system}: no reusable store; loading once, untimed",
                  file=sys.stderr)
            self.forget_store(system)
            for step in loaders[system]:
                step()
            self.stamp_store(system)

    def untimed(self, step: Callable[[], None]) -> Callable[[], None]:
        """``step`` with whatever it measures thrown away."""
        def run() -> None:
            kept, self.results = self.results, Results()
            try:
                step()
            finally:
                self.results = kept
        return run

    # --- driver ------------------------------------------------------------

    def run(self, systems: list[str], parts: list[str]) -> Results:
        """Interleave the systems within each round: load, startup (+ compact), range,
        then server phases, then replication."""
        if any(p in STORE_PARTS for p in parts):
            self.run_stores(systems, parts)
        if "server" in parts:
            self.run_server(systems)
        if "replication" in parts:
            self.run_replication(systems)
        return self.results

    def run_stores(self, systems: list[str], parts: list[str]) -> None:
        """The parts on the generated data set: load, startup (+ compact), range, memory."""
        if "load" in parts:
            for system in systems:
                self.forget_store(system)
            if "kvsh" in systems:
                self.validate_kvsh_load()
            self._rounds("load", systems, {"kvsh": [self.load_kvsh], "redis": [self.load_redis],
                                           "sqlite": [self.load_sqlite]})
            if "redis" in systems:
                self.rewrite_redis_store()
            for system in systems:
                self.stamp_store(system)
        else:
            self.ensure_stores([s for s in systems
                                if any(s in PART_SYSTEMS[p] for p in parts if p in STORE_PARTS)])
        if "kvsh" in systems and ("compact" in parts or "range" in parts):
            self.prepare_kvsh_compacted()
        startup = "startup" in parts
        compact = "compact" in parts
        self._rounds("startup", systems, {
            "kvsh": [step for step, on in ((self.startup_kvsh, startup),
                                           (self.startup_kvsh_compacted, compact)) if on],
            "redis": [step for step, on in ((self.startup_redis, startup),
                                            (self.startup_redis_rewritten, startup or compact))
                      if on],
            "sqlite": [self.startup_sqlite] if startup else []})
        self.results.rss_floor = harness_peak_rss()  # no peak RSS is taken after this
        if "range" in parts and ("kvsh" in systems or "sqlite" in systems):
            self.prepare_range(systems)
            self._rounds("range", systems, {"kvsh": [self.range_kvsh],
                                            "sqlite": [self.range_sqlite]})
        if "memory" in parts:
            self.record_sizes(systems)

    def _rounds(self, phase: str, systems: list[str],
                steps: dict[str, list[Callable[[], None]]]) -> None:
        """Run ``steps[system]`` for every system, ``self.runs`` rounds in a row.

        Systems without steps in this phase are skipped.
        """
        active = [s for s in systems if steps.get(s)]
        if not active:
            return
        for round_no in range(1, self.runs + 1):
            for system in active:
                print(f"[{phase} {round_no}/{self.runs}] {system}", file=sys.stderr)
                for step in steps[system]:
                    step()

    @staticmethod
    def _check_exit(what: str, done: ChildResult) -> None:
        if done.returncode != 0:
            raise BenchError(f"{what} exited with {done.returncode}: "
                             f"{done.stderr.decode(errors='replace')[-2000:]}")
