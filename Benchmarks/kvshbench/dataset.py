"""The generated data set: N lines of SET key:NNNNNNN <100-byte value>, kept between runs."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import DATA_FORMAT_VERSION, VALUE_BYTES


def key_for(index: int) -> str:
    """``key:NNNNNNN``, the 7-digit zero-padded index."""
    return f"key:{index:07d}"


def value_for(index: int) -> str:
    """100 printable bytes from [A-Za-z0-9_-], deterministic in ``index``."""
    raw = hashlib.shake_128(b"kvsh-bench:%d" % index).digest(VALUE_BYTES * 3 // 4)
    return base64.urlsafe_b64encode(raw).decode("ascii")


@dataclass
class DataSet:
    """The generated input files; identical rows for all three systems."""

    lines: int
    txt: Path  # SET commands, for kvsh and redis-cli --pipe
    sql: Path  # the same rows as one SQL transaction, for sqlite3

    @property
    def middle_key(self) -> str:
        return key_for(self.lines // 2)

    @property
    def middle_value(self) -> str:
        return value_for(self.lines // 2)


def prepare_data(work: Path, lines: int) -> DataSet:
    """Write data.txt and data.sql for ``lines`` rows, reusing them when cached."""
    data = DataSet(lines, work / "data.txt", work / "data.sql")
    stamp = work / "data.json"
    wanted = {"lines": lines, "format": DATA_FORMAT_VERSION}
    if stamp.exists() and data.txt.exists() and data.sql.exists():
        if json.loads(stamp.read_text()) == wanted:
            return data
    stamp.unlink(missing_ok=True)
    print(f"generating {lines:,} lines in {work} ...", file=sys.stderr)
    tmp_txt, tmp_sql = data.txt.with_suffix(".txt.tmp"), data.sql.with_suffix(".sql.tmp")
    with open(tmp_txt, "w") as txt, open(tmp_sql, "w") as sql:
        sql.write("CREATE TABLE kv(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;\n"
                  "BEGIN;\n")
        for i in range(lines):
            key, value = key_for(i), value_for(i)
            txt.write(f"SET {key} {value}\n")
            sql.write(f"INSERT INTO kv VALUES('{key}','{value}');\n")
        sql.write("COMMIT;\n")
    tmp_txt.replace(data.txt)
    tmp_sql.replace(data.sql)
    stamp.write_text(json.dumps(wanted))
    return data
