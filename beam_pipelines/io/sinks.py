"""Where a pipeline's tables go, chosen by ``--sink``: the local lakehouse (Parquet files
and a DuckDB catalog) or BigQuery; with ``--postgres-dsn``, PostgreSQL hot tables beside
either. The graph up to the sink is the same for all; each sink writes as the run's mode
(``transforms.windowing.BATCH`` or a ``Streaming``) chooses."""
from __future__ import annotations

from dataclasses import dataclass

from beam_pipelines.bigquery.warehouse import LAYERS
from beam_pipelines.io.lakehouse import holds_batches
from transforms.windowing import BATCH, Mode


@dataclass(frozen=True)
class LakehouseSink:
    output_dir: str

    name = "lakehouse"

    def write(self, tables: dict, schemas, mode: Mode = BATCH,
              batches: bool | frozenset = False) -> None:
        """``batches``: True if every PCollection holds Arrow tables, or the names of
        those that do (the others hold rows)."""
        from beam_pipelines.io.lakehouse import write_tables

        write_tables(tables, schemas, self.output_dir, mode=mode, batches=batches)

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

    def write(self, tables: dict, schemas, mode: Mode = BATCH,
              batches: bool | frozenset = False) -> None:
        from beam_pipelines.bigquery.sink import write_tables_to_bigquery

        # Beam's BigQuery IO writes rows, one PCollection a table
        tables = as_rows(tables, batches, prefix="BigQuery")
        write_tables_to_bigquery(tables, schemas, self.warehouse, self.method, self.pipeline,
                                 mode, self.temp_location, self.validate, self.layers)

    def describe(self) -> str:
        w = self.warehouse
        datasets = ", ".join(f"{w.prefix}_{layer}" for layer in self.layers + ("ops",))
        return f"BigQuery ({w.project}: {datasets}; {self.method})"


def as_rows(tables: dict, batches=True, prefix: str = "") -> dict:
    """The tables that hold Arrow batches as rows, for what writes rows (``prefix``: of
    the step labels, when two sinks convert the same table)."""
    from transforms.batches import BatchesToRows, whole

    return {name: (pcoll | f"{prefix}{name}AsRows" >> BatchesToRows())
            if holds_batches(name, batches) else pcoll
            for name, pcoll in whole(tables, prefix).items()}


@dataclass(frozen=True)
class WithHotTables:
    """The main sink, plus the PostgreSQL hot tables (``--postgres-dsn``)."""

    main: LakehouseSink | BigQuerySink
    hot: object  # beam_pipelines.io.postgres.PostgresHotTables

    @property
    def name(self) -> str:
        return self.main.name

    def write(self, tables: dict, schemas, mode: Mode = BATCH,
              batches: bool | frozenset = False) -> None:
        self.main.write(tables, schemas, mode=mode, batches=batches)
        self.hot.write(tables, schemas, batches=batches)

    def describe(self) -> str:
        return f"{self.main.describe()}, and {self.hot.describe()}"


def write_tables(sink_or_output_dir, tables: dict, schemas, *, pipeline: str,
                 mode: Mode = BATCH, batches: bool | frozenset = False) -> None:
    """A medallion's tables to the sink, written as the run's ``mode`` chooses: the one
    place its dead letters are stamped with the pipeline's name (``batches`` as the
    sinks' ``write`` takes it)."""
    from schemas.dead_letter import DEAD_LETTERS
    from transforms.dead_letters import StampPipeline

    if DEAD_LETTERS.name in tables:
        tables = {**tables, DEAD_LETTERS.name: tables[DEAD_LETTERS.name]
                  | "StampPipeline" >> StampPipeline(pipeline)}
    as_sink(sink_or_output_dir).write(tables, schemas, mode=mode, batches=batches)


def as_sink(sink_or_output_dir):
    if isinstance(sink_or_output_dir, str):
        return LakehouseSink(sink_or_output_dir)
    return sink_or_output_dir
