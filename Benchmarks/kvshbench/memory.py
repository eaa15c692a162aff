"""5. Memory and on-disk sizes (the RSS figures come from the timed runs of the other parts)."""

from __future__ import annotations

from .config import REDIS_AOF_DIR
from .processes import tree_size
from .report import fmt_bytes


class MemoryPart:
    """5. Memory and on-disk sizes (the RSS figures come from the timed runs of the other parts).

    A mixin of Bench (suite.py): its methods use the settings and results of BenchCore (measure.py)."""

    # --- 5. sizes ----------------------------------------------------------

    def record_sizes(self, systems: list[str]) -> None:
        sizes = self.results.sizes
        sizes["input data.txt"] = self.data.txt.stat().st_size
        if "kvsh" in systems:
            sizes["kvsh *.log files"] = tree_size(self.kvsh_store, "*.log")
            if tree_size(self.kvsh_store, "*.image"):  # a background compaction ran during load
                sizes["kvsh *.image files, as loaded"] = tree_size(self.kvsh_store, "*.image")
            sizes["kvsh data dir (all files)"] = tree_size(self.kvsh_store)
            if self.kvsh_compacted_ready:
                store = self.kvsh_compacted_store
                sizes["kvsh *.image after :compact"] = tree_size(store, "*.image")
                sizes["kvsh data dir after :compact (all files)"] = tree_size(store)
        if "redis" in systems:
            for label, store in (("as loaded", self.redis_store),
                                 ("rewritten", self.redis_rewritten_store)):
                aof_dir = store / REDIS_AOF_DIR
                sizes[f"redis appendonlydir, {label}"] = tree_size(aof_dir)
                files = ", ".join(f"{p.name} {fmt_bytes(p.stat().st_size)}"
                                  for p in sorted(aof_dir.iterdir()) if p.suffix != ".manifest")
                self.results.note("startup", f"redis AOF {label}: {files}")
        if "sqlite" in systems:
            sizes["sqlite db file"] = self.sqlite_db.stat().st_size
