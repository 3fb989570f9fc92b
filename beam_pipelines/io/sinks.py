"""Where a pipeline's tables go, chosen by ``--sink``: the local lakehouse (Parquet files
and a DuckDB catalog) or BigQuery; with ``--postgres-dsn``, PostgreSQL hot tables beside
either. The graph up to the sink is the same for all."""
from __future__ import annotations

import re
from dataclasses import dataclass

from beam_pipelines.bigquery.warehouse import LAYERS
from beam_pipelines.errors import UserError
from beam_pipelines.io.lakehouse import holds_batches


@dataclass(frozen=True)
class LakehouseSink:
    output_dir: str

    name = "lakehouse"

    def write(self, tables: dict, schemas, streaming: bool = False,
              batches: bool | frozenset = False) -> None:
        """``batches``: True if every PCollection holds Arrow tables, or the names of
        those that do (the others hold rows)."""
        from beam_pipelines.io.lakehouse import write_tables

        write_tables(tables, schemas, self.output_dir, streaming=streaming, batches=batches)

    def describe(self) -> str:
        return f"the lakehouse in {self.output_dir}"


@dataclass(frozen=True)
class BigQuerySink:
    warehouse: object  # beam_pipelines.bigquery.warehouse.Warehouse
    method: str
    pipeline: str
    temp_location: str | None = None
    validate: bool = True
    layers: tuple[str, ...] = LAYERS

    name = "bigquery"

    def write(self, tables: dict, schemas, streaming: bool = False,
              batches: bool | frozenset = False) -> None:
        from beam_pipelines.bigquery.sink import write_tables_to_bigquery

        if batches:  # Beam's BigQuery IO writes rows
            tables = as_rows(tables, batches)
        write_tables_to_bigquery(tables, schemas, self.warehouse, self.method, self.pipeline,
                                 streaming, self.temp_location, self.validate, self.layers)

    def describe(self) -> str:
        w = self.warehouse
        datasets = ", ".join(f"{w.prefix}_{layer}" for layer in self.layers + ("ops",))
        return f"BigQuery ({w.project}: {datasets}; {self.method})"


def as_rows(tables: dict, batches=True, prefix: str = "") -> dict:
    """The tables that hold Arrow batches as rows, for what writes rows (``prefix``: of
    the step labels, when two sinks convert the same table)."""
    from transforms.batches import BatchesToRows

    return {name: (pcoll | f"{prefix}{name}AsRows" >> BatchesToRows())
            if holds_batches(name, batches) else pcoll for name, pcoll in tables.items()}


@dataclass(frozen=True)
class WithHotTables:
    """The main sink, plus the PostgreSQL hot tables (``--postgres-dsn``)."""

    main: LakehouseSink | BigQuerySink
    hot: object  # beam_pipelines.io.postgres.PostgresHotTables

    @property
    def name(self) -> str:
        return self.main.name

    def write(self, tables: dict, schemas, streaming: bool = False,
              batches: bool | frozenset = False) -> None:
        self.main.write(tables, schemas, streaming=streaming, batches=batches)
        self.hot.write(tables, schemas, batches=batches)

    def describe(self) -> str:
        return f"{self.main.describe()}, and {self.hot.describe()}"


def write_tables(sink_or_output_dir, tables: dict, schemas, *, pipeline: str,
                 streaming: bool = False, batches: bool | frozenset = False) -> None:
    """A medallion's tables to the sink: the one place its dead letters are stamped with
    the pipeline's name (``batches`` as the sinks' ``write`` takes it)."""
    from schemas.dead_letter import DEAD_LETTERS
    from transforms.dead_letters import StampPipeline

    if DEAD_LETTERS.name in tables:
        tables = {**tables, DEAD_LETTERS.name: tables[DEAD_LETTERS.name]
                  | "StampPipeline" >> StampPipeline(pipeline)}
    as_sink(sink_or_output_dir).write(tables, schemas, streaming=streaming, batches=batches)


def as_sink(sink_or_output_dir):
    if isinstance(sink_or_output_dir, str):
        return LakehouseSink(sink_or_output_dir)
    return sink_or_output_dir


_PG_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def from_options(options, opts, pipeline: str, streaming: bool, dataflow: bool,
                 offline: bool = False):
    """The sink the flags ask for, checked: names, write method, credentials, datasets,
    the PostgreSQL server (``offline``: a job only built, so nothing is contacted)."""
    if opts.sink == "postgres" or opts.postgres_dsn:
        if not _PG_SCHEMA.fullmatch(opts.postgres_schema):
            raise UserError(f"--postgres-schema {opts.postgres_schema!r}: lowercase letters, "
                            "digits and underscores, starting with a letter or underscore")
    if opts.sink == "postgres":
        from beam_pipelines.io.postgres import PostgresSink

        if not opts.postgres_dsn:
            raise UserError("--sink postgres needs --postgres-dsn (a libpq URL or "
                            "connection string)")
        sink = PostgresSink(opts.postgres_dsn, opts.postgres_schema,
                            opts.postgres_retention or None)
        if not offline:
            sink.check()
        return sink
    main = _main_sink(options, opts, pipeline, streaming, dataflow, offline)
    if not opts.postgres_dsn:
        return main
    from beam_pipelines.io.postgres import PostgresHotTables
    from schemas.render import POSTGRES_TABLES

    hot = PostgresHotTables(opts.postgres_dsn, opts.postgres_schema,
                            opts.postgres_retention or None)
    if not offline:
        hot.check(POSTGRES_TABLES)
    return WithHotTables(main, hot)


def _main_sink(options, opts, pipeline: str, streaming: bool, dataflow: bool,
               offline: bool):
    if opts.sink == "lakehouse":
        return LakehouseSink(opts.output_dir)
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    from beam_pipelines.bigquery import emulator
    from beam_pipelines.bigquery.sink import FILE_LOADS, STORAGE_WRITE_API, default_method
    from beam_pipelines.bigquery.warehouse import Warehouse, parse_layers

    gcp = options.view_as(GoogleCloudOptions)
    warehouse = Warehouse(opts.bq_project or gcp.project, opts.bq_dataset_prefix,
                          opts.bq_location)
    # --bq-write-method is one of its argparse choices already.
    method = default_method(streaming) if opts.bq_write_method == "auto" else \
        opts.bq_write_method
    layers = parse_layers(opts.bq_layers)
    if "silver" not in layers:
        from beam_pipelines.bigquery.scheduled import silver_built_for

        if pipeline not in silver_built_for():
            raise UserError(f"--bq-layers {opts.bq_layers}: the scheduled SQL cannot build "
                            f"{pipeline}'s silver (it needs the pipeline's parsing and "
                            "enrichment): include silver")
    local_emulator = emulator.emulator_url() is not None
    if local_emulator and dataflow:
        raise UserError("BIGQUERY_EMULATOR_HOST points this process at a local emulator; a "
                        "Dataflow job writes to the real BigQuery: unset it")
    if method == STORAGE_WRITE_API and local_emulator:
        raise UserError("--bq-write-method STORAGE_WRITE_API needs Beam's Java expansion "
                        "service and the real BigQuery; use FILE_LOADS or STREAMING_INSERTS "
                        "with the emulator")
    temp = gcp.temp_location
    if method == FILE_LOADS and not local_emulator and not (temp or "").startswith("gs://"):
        raise UserError("--bq-write-method FILE_LOADS stages files in Cloud Storage: pass "
                        "--temp_location gs://BUCKET/tmp (or use STREAMING_INSERTS)")
    emulator.use_emulator(warehouse.project)
    if offline:
        return BigQuerySink(warehouse, method, pipeline, temp, layers=layers)
    emulator.require_credentials()
    if not dataflow or local_emulator:
        from beam_pipelines.bigquery.admin import missing_datasets

        missing = missing_datasets(warehouse)
        if missing:
            raise UserError(
                f"BigQuery dataset(s) {', '.join(missing)} do not exist: create them with "
                f"`python -m beam_pipelines.bigquery setup --project {warehouse.project} "
                f"--dataset-prefix {warehouse.prefix}`")
    if local_emulator and method == FILE_LOADS:
        import tempfile

        # The emulator loads files from local paths, which Beam only accepts unvalidated.
        return BigQuerySink(warehouse, method, pipeline,
                            temp or tempfile.mkdtemp(prefix="bq-loads-"), validate=False,
                            layers=layers)
    return BigQuerySink(warehouse, method, pipeline, temp, layers=layers)
