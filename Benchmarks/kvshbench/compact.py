"""3. Startup after :compact (kvsh) against redis started from its rewritten AOF."""

from __future__ import annotations

from pathlib import Path

from .config import BenchError, KVSH_COMPACTED_LOG_MAX
from .processes import copy_fresh, run_timed
from .report import fmt_bytes


class CompactPart:
    """3. Startup after :compact (kvsh) against redis started from its rewritten AOF.

    A mixin of Bench (suite.py): its methods use the settings and results of BenchCore (measure.py)."""

    # --- 3. startup after :compact ------------------------------------------

    def compact_kvsh(self, store: Path) -> str:
        """Untimed: `kvsh --data-dir STORE :compact`; check it left one image and an empty log.

        Returns the line kvsh printed about the checkpoint.
        """
        done = run_timed([self.kvsh, "--data-dir", str(store), ":compact"], capture=True)
        self._check_exit("kvsh :compact", done)
        images = sorted(store.glob("*.image"))
        logs = sorted(store.glob("*.log"))
        leftovers = sorted(p.name for p in store.glob("*.tmp"))
        if len(images) != 1 or len(logs) != 1 or leftovers:
            raise BenchError(f"after :compact {store} holds {[p.name for p in images]}, "
                             f"{[p.name for p in logs]}, {leftovers}; expected one image "
                             "and one log")
        if logs[0].stat().st_size > KVSH_COMPACTED_LOG_MAX:
            raise BenchError(f"after :compact {logs[0]} holds {logs[0].stat().st_size} bytes, "
                             f"expected at most {KVSH_COMPACTED_LOG_MAX}")
        return done.stdout.decode(errors="replace").strip()

    def prepare_kvsh_compacted(self) -> None:
        """Untimed: copy the loaded kvsh store and run :compact on the copy once."""
        store = self.kvsh_compacted_store
        copy_fresh(self.kvsh_store, store)
        report = self.compact_kvsh(store)
        files = ", ".join(f"{p.name} {fmt_bytes(p.stat().st_size)}"
                          for p in sorted(store.iterdir()) if p.suffix in (".image", ".log"))
        self.results.note("startup", f"kvsh after :compact (run once, untimed): {files}; "
                          f"kvsh said: {report}")
        self.kvsh_compacted_ready = True

    def startup_kvsh_compacted(self) -> None:
        """Wall time of `kvsh --data-dir D GET <middle key>` on a copy of the compacted store."""
        store = self.work / "kvsh" / "startup"
        copy_fresh(self.kvsh_compacted_store, store)
        done = run_timed([self.kvsh, "--data-dir", str(store), "GET", self.data.middle_key],
                         capture=True)
        self._check_exit("kvsh GET after :compact", done)
        if self.data.middle_value not in done.stdout.decode(errors="replace"):
            raise BenchError(f"kvsh GET after :compact printed {done.stdout[:200]!r}, "
                             "not the value")
        self.results.add("kvsh_compacted.startup", done.seconds)
        self.results.add("kvsh_compacted.startup_rss", done.maxrss_bytes)
