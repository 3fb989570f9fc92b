"""The schema declaration language: fields with type, unit, nullability and range."""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import cached_property


class FieldType(str, enum.Enum):
    STRING = "STRING"
    INT64 = "INT64"
    FLOAT64 = "FLOAT64"
    BOOL = "BOOL"
    TIMESTAMP = "TIMESTAMP"
    DATE = "DATE"
    BYTES = "BYTES"


# BigQuery's JSON schema (and Beam's BigQuery IO) use the legacy type names.
_BQ_LEGACY = {
    FieldType.STRING: "STRING",
    FieldType.INT64: "INTEGER",
    FieldType.FLOAT64: "FLOAT",
    FieldType.BOOL: "BOOLEAN",
    FieldType.TIMESTAMP: "TIMESTAMP",
    FieldType.DATE: "DATE",
    FieldType.BYTES: "BYTES",
}


_POSTGRES = {
    FieldType.STRING: "text",
    FieldType.INT64: "bigint",
    FieldType.FLOAT64: "double precision",
    FieldType.BOOL: "boolean",
    FieldType.TIMESTAMP: "timestamptz",
    FieldType.DATE: "date",
    FieldType.BYTES: "bytea",
}


@dataclass(frozen=True)
class Field:
    """One column. ``minimum``/``maximum`` are inclusive valid ranges (silver rejects
    values outside them); ``choices`` closes a STRING field to a known vocabulary."""

    name: str
    type: FieldType
    description: str
    unit: str | None = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def has_range(self) -> bool:
        return self.minimum is not None or self.maximum is not None

    def range_text(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if not self.has_range:
            return ""
        lo = "−∞" if self.minimum is None else _fmt(self.minimum)
        hi = "∞" if self.maximum is None else _fmt(self.maximum)
        return f"[{lo}, {hi}]"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class RecordSchema:
    """A table: its fields plus how BigQuery should lay it out."""

    name: str
    description: str
    fields: tuple[Field, ...]
    layer: str
    partition_field: str | None = None
    clustering: tuple[str, ...] = ()
    #: Columns that identify a row. Streaming appends a new pane for a key when a window
    #: fires again; the latest pane (highest ``pane_index``) is the current answer.
    key: tuple[str, ...] = ()

    def __post_init__(self):
        names = [f.name for f in self.fields]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"schema {self.name}: duplicate fields {sorted(dupes)}")
        layout = ((self.partition_field,) if self.partition_field else ()) + self.clustering
        for col in layout + self.key:
            if col not in names:
                raise ValueError(f"schema {self.name}: layout column {col!r} is not a field")

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @cached_property
    def by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    @cached_property
    def label(self) -> str:
        """The table's name as a step label: ``server_metrics_silver`` →
        ``ServerMetricsSilver``."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    def field(self, name: str) -> Field:
        return self.by_name[name]

    # ---- compact form for shuffles ------------------------------------------------------
    @cached_property
    def packer(self) -> RowPacker:
        return RowPacker(self)

    # ---- Arrow / Parquet -------------------------------------------------------------
    def arrow_schema(self):
        """The Arrow schema (built once: about 0.2 ms, and every batch step conforms to
        it)."""
        return self._arrow

    @cached_property
    def _arrow(self):
        import pyarrow as pa

        types = {
            FieldType.STRING: pa.string(),
            FieldType.INT64: pa.int64(),
            FieldType.FLOAT64: pa.float64(),
            FieldType.BOOL: pa.bool_(),
            FieldType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
            FieldType.DATE: pa.date32(),
            FieldType.BYTES: pa.binary(),
        }
        return pa.schema(
            [
                pa.field(
                    f.name,
                    types[f.type],
                    nullable=not f.required,
                    metadata={"description": f.description, "unit": f.unit or ""},
                )
                for f in self.fields
            ]
        )

    # ---- BigQuery ----------------------------------------------------------------------
    def bigquery_schema(self) -> list[dict]:
        """The table schema as BigQuery's JSON (``bq mk --schema``, Beam's WriteToBigQuery)."""
        return [
            {
                "name": f.name,
                "type": _BQ_LEGACY[f.type],
                "mode": "REQUIRED" if f.required else "NULLABLE",
                "description": _describe(f),
            }
            for f in self.fields
        ]

    def bigquery_schema_json(self) -> str:
        return json.dumps(self.bigquery_schema(), indent=2, ensure_ascii=False) + "\n"

    def bigquery_ddl(self, dataset: str = "${dataset}") -> str:
        cols = ",\n".join(
            f"  {f.name} {f.type.value}{' NOT NULL' if f.required else ''}"
            f" OPTIONS(description={_sql_string(_describe(f))})"
            for f in self.fields
        )
        ddl = f"CREATE TABLE IF NOT EXISTS `{dataset}.{self.name}` (\n{cols}\n)"
        if self.partition_field:
            pf = self.field(self.partition_field)
            expr = pf.name if pf.type is FieldType.DATE else f"DATE({pf.name})"
            ddl += f"\nPARTITION BY {expr}"
        if self.clustering:
            ddl += f"\nCLUSTER BY {', '.join(self.clustering)}"
        ddl += f"\nOPTIONS(description={_sql_string(self.description)});\n"
        return ddl

    def postgres_ddl(self, schema: str = "telemetry") -> str:
        """PostgreSQL DDL (15+): the table, a unique key (NULLS NOT DISTINCT: key columns
        may be null, and upserts must still meet the same row) and an index on the
        partition field for the retention window."""
        # Quoted: a field may be a reserved word there (injected_faults' "end").
        cols = ",\n".join(f'  "{f.name}" {_POSTGRES[f.type]}'
                           f"{' NOT NULL' if f.required else ''}" for f in self.fields)
        table = f"{schema}.{self.name}"
        ddl = f"CREATE TABLE IF NOT EXISTS {table} (\n{cols}\n);\n"
        if self.key:
            ddl += (f"CREATE UNIQUE INDEX IF NOT EXISTS {self.name}_key ON {table} "
                    f"({', '.join(map(quoted, self.key))}) NULLS NOT DISTINCT;\n")
        if self.partition_field:
            ddl += (f"CREATE INDEX IF NOT EXISTS {self.name}_{self.partition_field} "
                    f"ON {table} ({quoted(self.partition_field)});\n")
        ddl += f"COMMENT ON TABLE {table} IS '{self.description.replace(chr(39), chr(39) * 2)}';\n"
        return ddl

    # ---- Documentation ------------------------------------------------------------------
    def markdown(self) -> str:
        head = f"### `{self.name}` ({self.layer})\n\n{self.description}\n\n"
        rows = ["| field | type | unit | required | valid range | description |",
                "|---|---|---|---|---|---|"]
        for f in self.fields:
            rows.append(
                f"| `{f.name}` | {f.type.value} | {f.unit or ''} | {'yes' if f.required else ''} "
                f"| {f.range_text()} | {f.description} |"
            )
        return head + "\n".join(rows) + "\n"


def quoted(name: str) -> str:
    """A column name as PostgreSQL reads it whatever it is (injected_faults' "end")."""
    return f'"{name}"'


def _describe(f: Field) -> str:
    return f"{f.description} ({f.unit})" if f.unit else f.description


def _sql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MICRO = timedelta(microseconds=1)


class RowPacker:
    """A row dict ⇄ a tuple of primitives in field order (timestamps as epoch microseconds,
    dates as ordinals), which Beam's default coder encodes natively. Pickling the dict
    instead costs several times more because of its datetimes."""

    def __init__(self, schema: RecordSchema):
        self.names = schema.names
        self._times = tuple(i for i, f in enumerate(schema.fields)
                            if f.type is FieldType.TIMESTAMP)
        self._dates = tuple(i for i, f in enumerate(schema.fields) if f.type is FieldType.DATE)

    def pack(self, row: dict) -> tuple:
        values = [row[n] for n in self.names]
        for i in self._times:
            if values[i] is not None:
                values[i] = (values[i] - _EPOCH) // _ONE_MICRO
        for i in self._dates:
            if values[i] is not None:
                values[i] = values[i].toordinal()
        return tuple(values)

    def unpack(self, packed: tuple) -> dict:
        values = list(packed)
        for i in self._times:
            if values[i] is not None:
                values[i] = _EPOCH + timedelta(microseconds=values[i])
        for i in self._dates:
            if values[i] is not None:
                values[i] = date.fromordinal(values[i])
        return dict(zip(self.names, values, strict=True))
