#!/usr/bin/env python3
r"""Pictures of the benchmark's side-by-side results: one PNG bar chart per Markdown table that has a kvsh column
and the same column for a peer (``kvsh ops/s`` beside ``redis ops/s``, ``kvsh p99 ms`` beside ``redis p99 ms``...),
rows as groups, one bar per system.

It reads the Markdown that ``bench.py --markdown`` writes (or a section of Docs/Benchmarks.md), so the charts show
exactly the numbers the tables hold.

Usage:
    python3 Benchmarks/charts.py --markdown Docs/Benchmarks.md --section "Run H" --out Docs/charts/run-h
    python3 Benchmarks/charts.py --markdown /tmp/latest.md --out Docs/charts/latest
Prints the Markdown image links of the charts written.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

SYSTEMS = ("kvsh", "redis", "sqlite", "sqlite3")
COLORS = {"kvsh": "#2b6cb0", "redis": "#c53030", "sqlite": "#2f855a", "sqlite3": "#2f855a"}


def number(cell: str) -> float | None:
    """The first number in a cell (`1,234.5`, `0.87×`, `42 ms`); None when there is none."""
    match = re.search(r"-?\d[\d,]*(?:\.\d+)?", cell)
    return float(match.group(0).replace(",", "")) if match else None


def tables(lines: list[str]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) of every Markdown table, titled by the nearest heading above it."""
    found, title, index = [], "", 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            title = line.lstrip("#").strip()
        if line.startswith("|") and index + 1 < len(lines) and re.match(r"^\|[\s\-:|]+\|$", lines[index + 1].strip()):
            headers = [c.strip() for c in line.strip().strip("|").split("|")]
            rows, index = [], index + 2
            while index < len(lines) and lines[index].startswith("|"):
                rows.append([c.strip() for c in lines[index].strip().strip("|").split("|")])
                index += 1
            found.append((title, headers, rows))
            continue
        index += 1
    return found


def pairs(headers: list[str]) -> list[tuple[str, dict[str, int]]]:
    """Columns measured for several systems: (what, {system: column})."""
    by_measure: dict[str, dict[str, int]] = {}
    for column, header in enumerate(headers):
        words = header.split(" ", 1)
        if len(words) == 2 and words[0] in SYSTEMS:
            by_measure.setdefault(words[1], {})[words[0]] = column
    return [(measure, systems) for measure, systems in by_measure.items() if "kvsh" in systems and len(systems) > 1]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", type=Path, required=True)
    parser.add_argument("--section", help="only the section whose '## ' heading starts with this")
    parser.add_argument("--out", type=Path, required=True, help="directory for the PNG files (created)")
    args = parser.parse_args(argv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("charts: matplotlib is not installed (python3 -m pip install matplotlib)", file=sys.stderr)
        return 1
    lines = args.markdown.read_text().splitlines()
    if args.section:
        start = next((i for i, l in enumerate(lines) if l.startswith("## " + args.section)), None)
        if start is None:
            print(f"charts: no section '## {args.section}' in {args.markdown}", file=sys.stderr)
            return 1
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines = lines[start:end]
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for number_in_section, (title, headers, rows) in enumerate(tables(lines)):
        for measure, systems in pairs(headers):
            labels, values = [], {system: [] for system in systems}
            for row in rows:
                cells = {system: number(row[column]) if column < len(row) else None for system, column in systems.items()}
                if any(value is None for value in cells.values()):
                    continue
                labels.append(row[0])
                for system, value in cells.items():
                    values[system].append(value)
            if not labels:
                continue
            figure, axes = plt.subplots(figsize=(max(6, 1.4 * len(labels) + 2), 3.6), dpi=110)
            width = 0.8 / len(systems)
            for offset, system in enumerate(systems):
                xs = [i + (offset - (len(systems) - 1) / 2) * width for i in range(len(labels))]
                axes.bar(xs, values[system], width, label=system, color=COLORS.get(system))
            axes.set_xticks(range(len(labels)))
            axes.set_xticklabels(labels, fontsize=8, rotation=15 if len(labels) > 4 else 0)
            axes.set_ylabel(measure)
            axes.set_title(f"{title}: {measure}", fontsize=9)
            axes.legend(fontsize=8)
            axes.grid(axis="y", alpha=0.3)
            figure.tight_layout()
            path = args.out / f"{number_in_section:02d}-{slug(title)}-{slug(measure)}.png"
            figure.savefig(path)
            plt.close(figure)
            print(f"![{title}: {measure}]({path.as_posix()})")
            written += 1
    if written == 0:
        print("charts: no table with a kvsh column beside a peer's", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
