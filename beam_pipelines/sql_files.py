"""The SQL the project ships (``sql/``), found in one place: the BigQuery setup and the
local dashboard create the same reporting views, in an order where a view comes after the
reporting views it reads (BigQuery refuses a view over one that does not exist yet)."""
from __future__ import annotations

import re
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
_READS = re.compile(r"\$\{reporting\}\.(\w+)`")


def reporting_view_files() -> list[Path]:
    """``sql/reporting/*.sql`` by name, each after the reporting views it reads."""
    paths = {p.stem: p for p in sorted((SQL_DIR / "reporting").glob("*.sql"))}
    reads = {name: {r for r in _READS.findall(path.read_text(encoding="utf-8"))
                    if r != name and r in paths}
             for name, path in paths.items()}
    ordered: list[Path] = []
    done: set[str] = set()

    def place(name: str, seen: tuple = ()) -> None:
        if name in done:
            return
        if name in seen:
            raise ValueError(f"reporting views read each other in a cycle: {name}")
        for other in sorted(reads[name]):
            place(other, (*seen, name))
        done.add(name)
        ordered.append(paths[name])

    for name in paths:
        place(name)
    return ordered
