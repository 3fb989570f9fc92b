"""Table-by-table comparison of two runs of a medallion: the same rows, floats within
rounding (the order of additions differs between engines), dead letters field by field."""
from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime, timezone

from beam_pipelines.catalog import connect as connect_catalog


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) or (a != a and b != b)
    return a == b


def normalised(rows: list[dict], drop=("processing_timestamp", "ingest_timestamp",
                                        "processing_delay_ms")) -> list[tuple]:
    def value(k, v):
        if isinstance(v, datetime):  # one spelling of UTC, whichever tzinfo carries it
            return v.astimezone(timezone.utc)
        if k == "visitor_sketch" and v is not None:
            # A small sketch lists its items in arrival order: compare what it counts.
            from transforms.web_logs.row_gold import merged_estimate

            return ("sketch of", merged_estimate([v]))
        return v

    out = [tuple(sorted((k, value(k, v)) for k, v in row.items() if k not in drop))
           for row in rows]
    return sorted(out, key=repr)


def assert_tables_equal(expected: dict, actual: dict) -> None:
    assert set(expected) == set(actual)
    for name in expected:
        want, got = normalised(expected[name]), normalised(actual[name])
        assert len(want) == len(got), (name, len(want), len(got))
        if name == "dead_letters":
            # Silver's payload is the bronze row, ingest time included: compare its fields.
            want = [_without_ingest(r) for r in want]
            got = [_without_ingest(r) for r in got]
            assert Counter(map(repr, want)) == Counter(map(repr, got)), name
            continue
        # Sorted alike (floats rounded for the order only), then compared with tolerance.
        for mine, theirs in zip(sorted(want, key=_rounded), sorted(got, key=_rounded),
                                strict=True):
            for (k, a), (k2, b) in zip(mine, theirs, strict=True):
                assert k == k2 and _same(a, b), (name, k, a, b, mine, theirs)


def _rounded(row: tuple) -> tuple[str, str]:
    """A sort key: the exact fields first (they identify a row), rounded floats last (a
    float at a rounding boundary may round either way between engines)."""
    exact = [(k, v) for k, v in row if not isinstance(v, float)]
    return repr(exact), repr([(k, f"{v:.6g}") for k, v in row if isinstance(v, float)])


def _without_ingest(row: tuple) -> tuple:
    fields = dict(row)
    if fields.get("layer") == "silver":
        payload = json.loads(fields["payload"])
        payload.pop("ingest_timestamp", None)
        payload.pop("processing_delay_ms", None)
        fields["payload"] = json.dumps(payload, sort_keys=True)
    return tuple(sorted(fields.items()))


def table_rows(lakehouse, names) -> dict:
    """The rows of these views of a lakehouse's catalog, normalised (see above)."""
    with connect_catalog(str(lakehouse)) as con:
        out = {}
        for name in names:
            cursor = con.execute(f"select * from {name}")
            columns = [d[0] for d in cursor.description]
            out[name] = normalised([dict(zip(columns, r, strict=True))
                                    for r in cursor.fetchall()])
        return out


def read_table_dir(directory):
    """Every row of a lakehouse table's files, in all its partitions, as one Arrow table
    (the partition folders' names are not made a column, as ``pq.read_table`` would)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_pipelines.io.lakehouse import data_files

    return pa.concat_tables([pq.read_table(f) for f in data_files(str(directory))])
