"""The BigQuery sink: every table of a medallion to its BigQuery table, nothing dropped.

Beam's ``WriteToBigQuery`` does the writing. Schemas, partitioning and clustering come from
the schema declaration (``schemas/``), so a table the pipeline creates is the table
``python -m beam_pipelines.bigquery setup`` creates. Rows BigQuery rejects (streaming
inserts, Storage Write API) come back from ``failed_rows_with_errors`` and become dead
letters (layer ``sink``, reason ``bigquery_rejected``) with the row and BigQuery's errors;
they are written to the dead-letter table with the pipeline's own dead letters. A load job
(FILE_LOADS) is all or nothing: a rejected load fails the run loudly instead.
"""
from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery
from apache_beam.io.gcp.bigquery_tools import RetryStrategy
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from beam_pipelines.bigquery.warehouse import LAYERS, Warehouse, pipeline_writes, table_layout
from schemas.core import FieldType, RecordSchema
from schemas.dead_letter import DEAD_LETTERS
from transforms.dead_letters import dead_letter
from transforms.windowing import BATCH, Mode

log = logging.getLogger(__name__)

FILE_LOADS, STREAMING_INSERTS, STORAGE_WRITE_API = (
    "FILE_LOADS", "STREAMING_INSERTS", "STORAGE_WRITE_API")
METHODS = (FILE_LOADS, STREAMING_INSERTS, STORAGE_WRITE_API)


def default_method(streaming: bool) -> str:
    """Load jobs are free and atomic for batch; streaming inserts make rows visible in
    seconds (and report each rejected row) for streaming."""
    return STREAMING_INSERTS if streaming else FILE_LOADS


def json_encoded_fields(schema: RecordSchema) -> tuple[str, ...]:
    """The fields JSON has no type for: timestamps, dates and bytes."""
    return tuple(f.name for f in schema.fields
                 if f.type in (FieldType.TIMESTAMP, FieldType.DATE, FieldType.BYTES))


def to_bigquery_row(row: dict, encoded: tuple[str, ...]) -> dict:
    """A row as BigQuery's JSON takes it: the ``encoded`` fields (known from the schema)
    as text: timestamps and dates in ISO 8601, bytes in base64."""
    import base64

    out = dict(row)
    for name in encoded:
        value = out.get(name)
        if isinstance(value, (bytes, bytearray)):
            out[name] = base64.b64encode(value).decode("ascii")
        elif value is not None:
            out[name] = value.isoformat()
    return out


class RejectedRowFn(beam.DoFn):
    """``(destination, row, errors)`` from ``failed_rows_with_errors`` → a dead letter."""

    def __init__(self, pipeline: str, table: str):
        self._pipeline = pipeline
        self._table = table

    def setup(self):
        self._rejected = Metrics.counter("sink", "bigquery_rows_rejected")

    def process(self, failed):
        destination, row, errors = failed
        self._rejected.inc()
        reasons = "; ".join(
            f"{e.get('location') or '(row)'}: {e.get('message') or e.get('reason')}"
            for e in (errors or []) if isinstance(e, dict)) or str(errors)
        yield dead_letter(
            pipeline=self._pipeline, layer="sink", step=f"WriteBigQuery/{self._table}",
            reason="bigquery_rejected", message=f"{destination} rejected the row: {reasons}",
            payload=row, source=row.get("source") if isinstance(row, dict) else None)


class _LogLostDeadLetterFn(beam.DoFn):
    """The dead-letter table itself rejected a dead letter: there is no table left to put
    it in, so it goes to the worker log in full, at ERROR, and to a counter."""

    def setup(self):
        self._lost = Metrics.counter("sink", "dead_letters_rejected")

    def process(self, failed):
        destination, row, errors = failed
        self._lost.inc()
        log.error("%s rejected a dead letter (%s): %r", destination, errors, row)


class WriteBigQueryTable(beam.PTransform):
    """Rows of one schema → its BigQuery table. Returns the rejected rows as dead letters
    (an empty PCollection for FILE_LOADS, and for the dead-letter table itself, whose
    rejections can only be logged)."""

    def __init__(self, warehouse: Warehouse, schema: RecordSchema, method: str,
                 pipeline: str, mode: Mode = BATCH, temp_location: str | None = None,
                 validate: bool = True):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown BigQuery write method {method!r}")
        self._warehouse = warehouse
        self._schema = schema
        self._method = method
        self._pipeline = pipeline
        self._mode = mode
        self._temp = temp_location
        self._validate = validate

    def write_transform(self) -> WriteToBigQuery:
        """The configured ``WriteToBigQuery`` (exposed so tests can check its settings)."""
        kwargs = {}
        if self._method == FILE_LOADS:
            if self._temp:
                kwargs["custom_gcs_temp_location"] = self._temp
            # streaming: one load job per table a minute
            kwargs.update(self._mode.choose(batch={}, streaming={"triggering_frequency": 60}))
        if self._method == STREAMING_INSERTS:
            # Retry what BigQuery says is transient; return the rest as failed rows.
            kwargs["insert_retry_strategy"] = RetryStrategy.RETRY_ON_TRANSIENT_ERROR
        if self._method == STORAGE_WRITE_API:
            kwargs.update(self._mode.choose(batch={}, streaming={"triggering_frequency": 5}))
        return WriteToBigQuery(
            table=self._warehouse.table_spec(self._schema),
            schema={"fields": self._schema.bigquery_schema()},
            method=self._method,
            create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
            write_disposition=BigQueryDisposition.WRITE_APPEND,
            additional_bq_parameters=table_layout(self._schema),
            validate=self._validate,
            **kwargs)

    def expand(self, rows):
        result = (rows
                  | "ToBigQueryRow" >> beam.Map(to_bigquery_row,
                                                json_encoded_fields(self._schema))
                  | "WriteToBigQuery" >> self.write_transform())
        if self._method != FILE_LOADS and self._schema is DEAD_LETTERS:
            result.failed_rows_with_errors | "LogLostDeadLetters" >> beam.ParDo(
                _LogLostDeadLetterFn())
        if self._method == FILE_LOADS or self._schema is DEAD_LETTERS:
            return rows.pipeline | "NoRejections" >> beam.Create([])
        return (result.failed_rows_with_errors
                | "RejectedToGlobal" >> beam.WindowInto(GlobalWindows())
                | "RejectedToDeadLetters" >> beam.ParDo(
                    RejectedRowFn(self._pipeline, self._schema.name)))


def write_tables_to_bigquery(tables: dict, schemas, warehouse: Warehouse, method: str,
                             pipeline: str, mode: Mode = BATCH,
                             temp_location: str | None = None, validate: bool = True,
                             layers: tuple[str, ...] = LAYERS) -> beam.PCollection:
    """Every table of a medallion's output dict to the warehouse; rows BigQuery rejects
    join the dead letters. Returns what goes to the dead-letter table.

    ``layers``: the layers written (dead letters always are). With ``("bronze",)`` the
    scheduled queries of ``sql/scheduled`` build silver and gold in BigQuery instead."""
    by_name = {schema.name: schema for schema in schemas}
    rejected = []
    for name, rows in tables.items():
        if name == DEAD_LETTERS.name or not pipeline_writes(by_name[name], layers):
            continue
        rejected.append(rows | f"BigQuery{by_name[name].label}" >> WriteBigQueryTable(
            warehouse, by_name[name], method, pipeline, mode, temp_location, validate))
    dead = tables[DEAD_LETTERS.name] | "DeadLettersToGlobal" >> beam.WindowInto(
        GlobalWindows())
    if tuple(layers) != LAYERS:
        # A layer left to the scheduled queries has its rejections written by them.
        dead = dead | "DeadLettersOfWrittenLayers" >> beam.Filter(
            lambda r, kept=frozenset(layers) | {"sink"}: r["layer"] in kept)
    all_dead = (dead, *rejected) | "WithSinkRejections" >> beam.Flatten()
    all_dead | "BigQueryDeadLetters" >> WriteBigQueryTable(
        warehouse, DEAD_LETTERS, method, pipeline, mode, temp_location, validate)
    return all_dead
