"""The SQL the project ships (``sql/``), found and rendered in one place: the BigQuery
setup and the local dashboard create the same reporting views, in an order where a view
comes after the reporting views it reads (BigQuery refuses a view over one that does not
exist yet), with the same substitution of dataset names."""
from __future__ import annotations

import re
import string
from pathlib import Path

from beam_pipelines.errors import UserError

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


def render_sql(text: str, identifiers: dict[str, str]) -> str:
    """Substitute ``${bronze}``, ``${gold}``, … with validated dataset ids (values are
    query parameters, never substituted). An unknown name is an error, not a blank."""
    try:
        return string.Template(text).substitute(identifiers)
    except KeyError as exc:
        raise UserError(f"SQL names an unknown dataset ${{{exc.args[0]}}}") from None
