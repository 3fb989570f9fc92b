"""``python -m run replay [PIPELINE]``: records received once, taken through the medallion
again.

* ``--from-archive DIR [--start T] [--end T]``: the raw archive a streaming run kept
  (``--archive``), records received within [start, end);
* ``--dead-letters [--reason R[,R]] [--since T]``: the pipeline's dead letters in the
  lakehouse, e.g. after a rule was corrected.

By default into the lakehouse (``--output-dir``), in batch, *appended* to what it holds:

* every record keeps its original ``source`` (the delivery id), so a record the lakehouse
  already has in silver or as a dead letter is skipped (from the archive), and bronze
  never gets a row twice;
* a replayed dead letter is *superseded*: its old row is removed once the replay wrote the
  record's new outcome (silver, or a dead letter again, with today's reason), so every
  record still ends in exactly one place;
* gold, analytics and incidents are computed again over all of silver, earlier rows and
  new, and replace the old tables.

So replaying twice changes no gold table. ``--to-topic projects/P/topics/T`` publishes the
records instead, with their attributes, for a streaming run to take in (a copy of a record
it already has becomes a ``duplicate_event`` or ``late`` dead letter there, never a second
gold row).
"""
from __future__ import annotations

import base64
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from beam_pipelines.errors import RaisingParser, UserError

USAGE = """usage: {prog} replay [PIPELINE] --from-archive DIR [--start T] [--end T] [options]
       {prog} replay [PIPELINE] --dead-letters [--reason R[,R...]] [--since T] [options]

Takes records through the medallion of PIPELINE (metrics, the default, or logs) again,
appended to the lakehouse in --output-dir: records it already holds are skipped, a replayed
dead letter is replaced by the record's new outcome, gold is computed again over all of
silver. Replaying twice changes nothing.

  --from-archive DIR   the raw archive of a streaming run (its --archive DIR)
  --start T, --end T   received within [T, T) (UTC, e.g. 2026-12-06T10:00Z; default: all)
  --dead-letters       the pipeline's dead letters in --output-dir
  --reason R[,R...]    only these reasons (see docs/SCHEMAS.md)
  --since T            only those dead-lettered at T or later
  --to-topic TOPIC     publish the records to projects/P/topics/T instead, for a streaming
                       run to take in
Every option of '{prog} PIPELINE' is accepted too (--output-dir, --config, ...).
"""


@dataclass
class Selection:
    """The records to replay: payloads with their original sources and attributes."""

    what: str
    payloads: list = field(default_factory=list)
    sources: list = field(default_factory=list)
    attributes: list = field(default_factory=list)
    #: the layer each record re-enters at: bronze (a raw record), or silver (a dead
    #: letter of silver's, whose payload is its bronze row, which bronze already holds)
    layers: list = field(default_factory=list)
    #: dead letters being replayed, as (source, payload as stored): the rows their
    #: records' new outcomes supersede
    superseded: set = field(default_factory=set)
    #: an archive's records, read as they are staged or published rather than held:
    #: () → iterator of (payload, source, attributes, layer)
    stream: object = None

    @property
    def from_dead_letters(self) -> bool:
        return bool(self.superseded)

    def records(self):
        """(payload, source, attributes, layer) of every chosen record, in order."""
        if self.stream is not None:
            return self.stream()
        return zip(self.payloads, self.sources, self.attributes, self.layers, strict=True)

    def __len__(self) -> int:
        return len(self.payloads)


def _parse(argv: list[str], prog: str):
    from beam_pipelines.kinds import DEFAULT, KINDS

    argv = list(argv)
    name = argv.pop(0) if argv and not argv[0].startswith("-") else DEFAULT
    if name not in KINDS:
        raise UserError(f"unknown pipeline {name!r} (one of {', '.join(KINDS)})")
    parser = RaisingParser(prog=f"{prog} replay", add_help=False)
    parser.add_argument("--from-archive", "--from_archive", dest="from_archive")
    parser.add_argument("--dead-letters", "--dead_letters", dest="dead_letters",
                        action="store_true")
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--reason")
    parser.add_argument("--since")
    parser.add_argument("--to-topic", "--to_topic", dest="to_topic")
    args, rest = parser.parse_known_args(argv)
    if bool(args.from_archive) == bool(args.dead_letters):
        raise UserError("replay what: --from-archive DIR or --dead-letters (one of them)")
    if args.dead_letters and (args.start or args.end):
        raise UserError("--start and --end choose from an archive; dead letters are "
                        "chosen by --since and --reason")
    if args.from_archive and (args.reason or args.since):
        raise UserError("--reason and --since choose dead letters; an archive is chosen "
                        "by --start and --end")
    return KINDS[name], args, rest


def main(argv: list[str], prog: str = "python -m run") -> int:
    if "-h" in argv or "--help" in argv:
        print(USAGE.format(prog=prog))
        return 0
    from beam_pipelines import options as opts_module

    kind, args, rest = _parse(argv, prog)
    options = opts_module.parse_options(rest, kind.options, f"{prog} replay {kind.name}")
    opts = options.view_as(kind.options)
    from apache_beam.options.pipeline_options import StandardOptions

    if options.view_as(StandardOptions).streaming:
        raise UserError("replay runs in batch (without --streaming); --to-topic feeds a "
                        "streaming run")
    if opts.input:
        raise UserError("replay reads --from-archive or --dead-letters, not --input")
    pipeline = kind.launch.pipeline
    selection = (select_archive(args.from_archive, args.start, args.end, opts.output_dir,
                                pipeline)
                 if args.from_archive else
                 select_dead_letters(opts.output_dir, pipeline, args.reason, args.since))
    if args.to_topic:
        published = publish(selection, args.to_topic)
        print(f"Published {published:,} record(s) ({selection.what}) to {args.to_topic}")
        return 0
    if selection.stream is None and not len(selection):
        print(f"Nothing to replay: {selection.what} holds no record.")
        return 0
    outcome = into_lakehouse(options, kind.launch, selection)
    if outcome["catalog"] and opts.summary:
        print(kind.summary(outcome["catalog"], outcome["output_dir"],
                           input_records=outcome.get("input_records"),
                           **outcome.get("summary_args", {})))
    return 0


# ---- choosing the records -----------------------------------------------------------------
def _time(text: str | None, flag: str) -> datetime | None:
    from beam_pipelines.io.archive import parse_time

    return parse_time(text, flag) if text else None


def select_archive(directory: str, start: str | None, end: str | None, output_dir: str,
                   pipeline: str) -> Selection:
    from beam_pipelines.io.archive import archive_files, payload_of, read_archive_file

    low, high = _time(start, "--start"), _time(end, "--end")
    if low and high and high <= low:
        raise UserError(f"--end {end} is not after --start {start}")
    if "://" not in directory and not os.path.isdir(directory):
        raise UserError(f"--from-archive {directory}: no such directory")
    files = archive_files(directory, low, high)
    window = (f" received {'from ' + low.isoformat() if low else ''}"
              f"{' until ' + high.isoformat() if high else ''}") if low or high else ""
    what = f"the archive {directory}{window}"
    if not files:
        raise UserError(f"{what}: no archived record")
    def stream():
        for path in files:
            for entry in read_archive_file(path, low, high):
                yield (payload_of(entry), entry.get("source"), entry.get("attributes") or {},
                       "bronze")

    return Selection(what, stream=stream)


def select_dead_letters(output_dir: str, pipeline: str, reasons: str | None,
                        since: str | None) -> Selection:
    import duckdb

    from beam_pipelines.catalog import READ_FILES
    from beam_pipelines.io.lakehouse import data_files
    from schemas.dead_letter import DEAD_LETTERS, REASONS

    wanted = [r.strip() for r in (reasons or "").split(",") if r.strip()]
    unknown = [r for r in wanted if r not in REASONS]
    if unknown:
        raise UserError(f"--reason {', '.join(unknown)}: not a dead-letter reason (one of "
                        f"{', '.join(sorted(REASONS))})")
    after = _time(since, "--since")
    files = data_files(os.path.join(output_dir, DEAD_LETTERS.layer, DEAD_LETTERS.name))
    what = f"the dead letters of {pipeline} in {output_dir}" + (
        f" ({', '.join(wanted)})" if wanted else "") + (
        f" since {after.isoformat()}" if after else "")
    selection = Selection(what)
    if not files:
        return selection
    sql = (f"select payload, payload_encoding, source, reason, layer from {READ_FILES} "
           "where pipeline = ?")
    params: list = [files, pipeline]
    if wanted:
        sql += " and reason in (select unnest(?))"
        params.append(wanted)
    if after:
        sql += " and processing_timestamp >= ?"
        params.append(after)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(sql + " order by source", params).fetchall()
    for payload, encoding, source, reason, layer in rows:
        selection.payloads.append(base64.b64decode(payload) if encoding == "base64"
                                  else payload.encode("utf-8"))
        selection.sources.append(source)
        selection.attributes.append({"replay_of": source or "", "dead_letter_reason": reason})
        selection.layers.append("silver" if layer == "silver" and _is_row(payload)
                                else "bronze")
        selection.superseded.add((source, payload))
    return selection


def _is_row(payload: str) -> bool:
    """A silver dead letter's payload is its bronze row as JSON (else it re-enters at
    bronze, which says what is wrong with it)."""
    import json

    try:
        return isinstance(json.loads(payload), dict)
    except ValueError:
        return False


# ---- publishing ---------------------------------------------------------------------------
def publish(selection: Selection, topic: str) -> int:
    """The records to a topic, each a message with its attributes, an ``event_id`` of its
    own (``replay:`` + its source: a redelivered copy is dropped by the source) and
    ``replay_of``."""
    from beam_pipelines.ops import pubsub
    from schemas.messages import ENVELOPE_ATTRIBUTE, EVENT_ID_ATTRIBUTE

    pubsub.check_topic(topic)
    pubsub.require_credentials()
    pubsub.check_topic_exists(topic)
    from google.cloud import pubsub_v1

    client = pubsub_v1.PublisherClient()
    futures, published = [], 0
    for payload, source, attributes, _ in selection.records():
        attributes = {k: str(v) for k, v in attributes.items()
                      if k not in (ENVELOPE_ATTRIBUTE, EVENT_ID_ATTRIBUTE)}
        attributes["replay_of"] = source or ""
        attributes[EVENT_ID_ATTRIBUTE] = f"replay:{source}"
        futures.append(client.publish(topic, payload, **attributes))
        if len(futures) >= 10_000:  # bounded memory: wait for a batch at a time
            published += _settled(futures)
    return published + _settled(futures)


def _settled(futures: list) -> int:
    for future in futures:
        future.result(timeout=60)
    done = len(futures)
    futures.clear()
    return done


# ---- into the lakehouse -------------------------------------------------------------------
@dataclass
class Prepared:
    """What a replay run reads and, once it has written, replaces."""

    input_path: str             # the selected records, staged as Parquet
    resume: object              # delivery.Resume: what the lakehouse holds
    replaced: list              # files of the recomputed tables, removed after the run
    dead_letter_files: list     # the dead letters' files before the run
    staging: str
    chosen: int                 # records chosen
    kept: int                   # of those, staged (the lakehouse lacks them, or replayed)
    from_dead_letters: bool

    @property
    def new_records(self) -> int:
        """Records the lakehouse did not hold (a replayed dead letter it holds already)."""
        return 0 if self.from_dead_letters else self.kept

    @property
    def skipped(self) -> int:
        return self.chosen - self.kept


def prepare(output_dir: str, pipeline: str, tables, selection: Selection,
            kept_tables: tuple) -> Prepared:
    """Stage the selected records the lakehouse lacks (or superseded dead letters) and
    note the files a successful replay replaces: every table's but ``kept_tables``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_pipelines.io import delivery
    from beam_pipelines.io.lakehouse import data_files, table_dir
    from schemas.dead_letter import DEAD_LETTERS

    resume = delivery.Resume.load(output_dir, pipeline, tables)
    staging = os.path.join(output_dir, f".replay-{uuid.uuid4().hex[:12]}")
    os.makedirs(staging)
    path = os.path.join(staging, "input.parquet")
    schema = pa.schema([("payload", pa.binary()), ("source", pa.string()),
                        ("layer", pa.string())])
    chosen = kept = 0
    chunk: list = []
    with pq.ParquetWriter(path, schema) as writer:  # a chunk at a time: bounded memory
        for payload, source, _, layer in selection.records():
            chosen += 1
            if selection.from_dead_letters or source not in resume.terminal:
                chunk.append((payload, source, layer))
            if len(chunk) >= 50_000:
                kept += _write_chunk(writer, schema, chunk)
        kept += _write_chunk(writer, schema, chunk)
    replaced = recomputed_files(output_dir, tables, kept_tables)
    dead = data_files(table_dir(output_dir, DEAD_LETTERS))
    return Prepared(path, resume, replaced, dead, staging, chosen, kept,
                    selection.from_dead_letters)


def _write_chunk(writer, schema, chunk: list) -> int:
    import pyarrow as pa

    if not chunk:
        return 0
    payloads, sources, layers = zip(*chunk, strict=True)
    writer.write_table(pa.table([pa.array(payloads, pa.binary()), pa.array(sources, pa.string()),
                                 pa.array(layers, pa.string())], schema=schema))
    done = len(chunk)
    chunk.clear()
    return done


def read_staged(path: str, layer: str = "bronze", batch_rows: int = 50_000):
    """The staged records that re-enter at ``layer`` → raw batches that keep each
    record's original source."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from transforms.batches import raw_lines

    table = pq.read_table(path)
    table = table.filter(pc.equal(table.column("layer"), layer))
    for start in range(0, table.num_rows, batch_rows):
        part = table.slice(start, batch_rows)
        yield raw_lines(part.column("payload").to_pylist(), part.column("source"))


def rows_of_payloads(batch, schema):
    """Silver's dead letters (raw batches of their payloads: the bronze rows as JSON) →
    that layer's rows again, as an Arrow table of ``schema``."""
    import json

    from transforms.batches import from_rows

    rows = []
    for payload in batch.column("payload").to_pylist():
        row = json.loads(payload)
        for f in schema.fields:
            value = row.get(f.name)
            if value is not None and f.type.name == "TIMESTAMP":
                row[f.name] = datetime.fromisoformat(value.replace("Z", "+00:00"))
        rows.append({f.name: row.get(f.name) for f in schema.fields})
    return from_rows(rows, schema)


def without_sources(table, sources: frozenset):
    """An Arrow table without the rows of these sources (bronze rows already written)."""
    if not sources or not table.num_rows:
        return table
    import pyarrow as pa
    import pyarrow.compute as pc

    return table.filter(pc.invert(pc.is_in(table.column("source"),
                                           value_set=pa.array(list(sources), pa.string()))))


def finish(output_dir: str, pipeline: str, prepared: Prepared, selection: Selection) -> None:
    """After the replay wrote its files: the recomputed tables' old files go, and so do the
    replayed dead letters' old rows (their records' new outcomes are written)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in prepared.replaced:
        os.remove(path)
    for path in prepared.dead_letter_files if selection.superseded else ():
        table = pq.read_table(path)
        mine = [p == pipeline and (s, d) in selection.superseded for p, s, d in
                zip(table.column("pipeline").to_pylist(), table.column("source").to_pylist(),
                    table.column("payload").to_pylist(), strict=True)]
        if not any(mine):
            continue
        _rewrite(path, table.filter(pa.array([not m for m in mine])))
    shutil.rmtree(prepared.staging, ignore_errors=True)


def _rewrite(path: str, rest) -> None:
    """A table file holding ``rest`` only: written beside it and renamed over it (never a
    half-written file in place), or removed when nothing is left."""
    import pyarrow.parquet as pq

    if rest.num_rows:
        temporary = path + ".rewrite-tmp"
        pq.write_table(rest, temporary)
        os.replace(temporary, path)
    else:
        os.remove(path)
        try:  # a partition folder left empty goes too
            os.rmdir(os.path.dirname(path))
        except OSError:
            pass


def announce(selection: Selection, prepared: Prepared) -> None:
    parts = [f"{prepared.new_records:,} new record(s)"]
    if selection.superseded:
        parts.append(f"{prepared.chosen:,} dead letter(s) taken again")
    if prepared.skipped:
        parts.append(f"{prepared.skipped:,} already in the lakehouse, skipped")
    print(f"Replaying {selection.what}: {', '.join(parts)}", flush=True)


def _local_lakehouse(plan, output_dir: str, what: str) -> None:
    """A run that appends goes to a local lakehouse, on the local runner."""
    from beam_pipelines.io.lakehouse import is_local

    if plan.sink.name != "lakehouse" or not is_local(output_dir) or plan.dataflow:
        raise UserError(f"{what} appends to a local lakehouse (--output-dir) on the local "
                        "runner")


def _appending_run(options, kind, plan, resume, raw_of, rechecked_of=None,
                   bronze_known: frozenset | None = None,
                   prior_without: frozenset = frozenset()):
    """``kind``'s batch medallion over ``raw_of(p)`` (and ``rechecked_of(p)``: bronze rows
    re-entering at silver), with the lakehouse's silver for gold (less the rows of the
    input files ``prior_without``, read again); bronze rows of ``bronze_known`` sources are
    not written again."""
    import apache_beam as beam
    import pyarrow as pa

    from beam_pipelines import runs
    from beam_pipelines.io import delivery

    p = beam.Pipeline(options=options)
    raw = raw_of(p)
    rechecked = rechecked_of(p) if rechecked_of is not None else None
    earlier = delivery.replay_silver(resume.silver_files, prior_without)
    prior = p | "EarlierSilver" >> earlier if earlier is not None else None
    out = raw | kind.label >> runs.medallion(kind, plan, prior_silver=prior,
                                             rechecked_bronze=rechecked)
    if bronze_known:
        bronze = kind.bronze.name
        out[bronze] = out[bronze] | "NewBronzeRows" >> beam.Map(
            without_sources, bronze_known).with_output_types(pa.Table)
    runs.write(out, kind, plan, kind.appended_tables)
    result = p.run()
    result.wait_until_finish()
    return result


def into_lakehouse(options, kind, selection: Selection) -> dict:
    """The replay run of a record kind (a :class:`beam_pipelines.runs.Launch`): its batch
    medallion over the staged records, with the earlier silver rows for gold and silver's
    dead letters' bronze rows for silver; bronze, silver and dead letters are appended to,
    every other table of the kind's replaced."""
    import apache_beam as beam
    import pyarrow as pa

    from beam_pipelines.io.lakehouse import prepare_output_dir, write_catalog
    from beam_pipelines.preflight import preflight
    from schemas.dead_letter import DEAD_LETTERS

    output_dir = options.view_as(kind.options_class).output_dir
    pipeline, tables = kind.pipeline, kind.appended_tables
    plan = preflight(options, kind, streaming=False)
    prepare_output_dir(output_dir, tables)
    _local_lakehouse(plan, output_dir, "replay")
    prepared = prepare(output_dir, pipeline, tables, selection,
                       kept_tables=(kind.bronze, kind.silver, DEAD_LETTERS))
    announce(selection, prepared)

    def staged(p, layer):
        return (p
                | f"Replayed{layer.title()}" >> beam.Create([prepared.input_path])
                | f"Read{layer.title()}" >> beam.FlatMap(read_staged, layer
                                                         ).with_output_types(pa.Table))

    result = _appending_run(
        options, kind, plan, prepared.resume,
        lambda p: staged(p, "bronze"),
        lambda p: staged(p, "silver") | "BronzeRowsAgain" >> beam.Map(
            rows_of_payloads, kind.bronze).with_output_types(pa.Table),
        # a record a stream half wrote (bronze, not yet silver): bronze once
        None if selection.from_dead_letters else prepared.resume.bronze)
    finish(output_dir, pipeline, prepared, selection)
    return {"output_dir": output_dir, "catalog": write_catalog(output_dir, tables),
            "tables": kind.tables, "sink": plan.sink, "result": result,
            "input_records": prepared.resume.prior_input + prepared.new_records,
            "summary_args": kind.summary_args(plan)}


def ingested_files(resume) -> frozenset:
    """The input files an earlier run read (the ``source`` of their records: a file's
    path, or ``path:line`` for CSV)."""
    from beam_pipelines.io.delivery import file_of

    return frozenset(file_of(s) for s in resume.bronze | resume.terminal)


def recomputed_files(output_dir: str, tables, kept) -> list[str]:
    """The files of the tables a run computes again whole (all but the ``kept`` schemas,
    which it appends to or rewrites row by row), removed once its new files are in."""
    from beam_pipelines.io.lakehouse import data_files, table_dir

    names = {schema.name for schema in kept}
    return [f for schema in tables if schema.name not in names
            for f in data_files(table_dir(output_dir, schema))]


def append_files(options, opts, kind, plan, files: dict[str, list[str]]) -> dict:
    """``--mode append``: input files (by format) through the batch medallion, appended to
    the lakehouse like a replay: a file an earlier run read is skipped (so running twice
    over the same files changes nothing), and gold is computed again over all of silver."""
    from beam_pipelines.io import delivery
    from beam_pipelines.io.lakehouse import prepare_output_dir, write_catalog
    from beam_pipelines.io.sources import ReadRawBatches, count_input_records
    from schemas.dead_letter import DEAD_LETTERS

    output_dir = opts.output_dir
    tables = kind.appended_tables
    prepare_output_dir(output_dir, tables)
    _local_lakehouse(plan, output_dir, "--mode append")
    resume = delivery.Resume.load(output_dir, kind.pipeline, tables)
    seen = ingested_files(resume)
    new = {fmt: [f for f in paths if f not in seen] for fmt, paths in files.items()}
    new = {fmt: paths for fmt, paths in new.items() if paths}
    skipped = sum(len(v) for v in files.values()) - sum(len(v) for v in new.values())
    print(f"Appending to {output_dir}: {sum(len(v) for v in new.values())} new file(s)"
          + (f", {skipped} read before, skipped" if skipped else ""), flush=True)
    replaced = recomputed_files(output_dir, tables, (kind.bronze, kind.silver, DEAD_LETTERS))
    if new:
        result = _appending_run(options, kind, plan, resume,
                                lambda p: p | "ReadNewFiles" >> ReadRawBatches(new))
    else:  # nothing new: gold is computed again all the same, from silver alone
        result = _appending_run(options, kind, plan, resume, lambda p: _no_raw(p))
    for path in replaced:
        os.remove(path)
    counted = count_input_records(new) if new else 0
    return {"output_dir": output_dir, "catalog": write_catalog(output_dir, tables),
            "tables": kind.tables, "sink": plan.sink, "result": result,
            "input_records": resume.prior_input + counted}


def into_place(options, opts, kind, plan):
    """A batch run that keeps what the lakehouse holds: ``--mode append``, or ``--mode
    replace`` when the lakehouse holds other files' records. Returns ``(outcome, None)``
    for such a run, else ``(None, files)`` for an ordinary batch run, which replaces the
    tables (``files``: the inputs already resolved, or None)."""
    if opts.mode == "append":
        return append_files(options, opts, kind, plan, kind.inputs(opts)), None
    if opts.mode != "replace" or not in_place(options, opts):
        return None, None
    held = input_held(opts.output_dir, kind.pipeline, kind.appended_tables)
    others = {f for f in held if not is_sample(f, opts.output_dir)}
    if not opts.input:  # the generated sample: demo data, never mixed with real records
        if others:
            raise UserError(f"--output-dir {opts.output_dir} holds the records of "
                            f"{len(others)} input(s) of earlier runs, which a generated "
                            "sample would mix with: give --input, another --output-dir, "
                            "or --mode overwrite")
        return None, None
    files = kind.inputs(opts)
    paths = frozenset(p for group in files.values() for p in group)
    if others - paths:
        return replace_files(options, opts, kind, plan, files, held), None
    return None, files  # nothing else there: replacing the tables keeps nothing less


def is_sample(path: str, output_dir: str) -> bool:
    """A record read from the sample a run generated in ``output_dir``."""
    sample = os.path.join(os.path.abspath(output_dir), "_sample") + os.sep
    return os.path.abspath(path).startswith(sample)


def in_place(options, opts) -> bool:
    """``--mode replace`` can keep what the lakehouse holds of other files: a local
    lakehouse alone, on a local runner, that holds something already."""
    from beam_pipelines.catalog import catalog_path
    from beam_pipelines.io.lakehouse import is_local
    from beam_pipelines.preflight import is_dataflow

    return (opts.sink == "lakehouse" and opts.postgres_dsn is None
            and is_local(opts.output_dir) and not is_dataflow(options)
            and os.path.exists(catalog_path(opts.output_dir)))


def input_held(output_dir: str, pipeline: str, tables) -> dict[str, int]:
    """The records the lakehouse holds for ``pipeline`` by the input they were read from
    (a file, or a stream's delivery): every record read is a bronze row or a bronze dead
    letter."""
    import duckdb

    from beam_pipelines.catalog import READ_FILES
    from beam_pipelines.io.delivery import LINE_SUFFIX
    from beam_pipelines.io.lakehouse import data_files, table_dir

    def files(layer: str) -> list[str]:
        return [f for schema in tables if schema.layer == layer
                for f in data_files(table_dir(output_dir, schema))]

    bronze, dead = files("bronze"), files("dead_letter")
    held: dict[str, int] = {}
    file_of = f"regexp_replace(source, '{LINE_SUFFIX}', '')"
    with duckdb.connect() as con:
        rows = []
        if bronze:
            rows += con.execute(f"select {file_of}, count(*) from {READ_FILES} "
                                "group by all", [bronze]).fetchall()
        if dead:
            rows += con.execute(f"select {file_of}, count(*) from {READ_FILES} where "
                                "layer = 'bronze' and pipeline = ? group by all",
                                [dead, pipeline]).fetchall()
    for name, count in rows:
        held[name] = held.get(name, 0) + count
    return held


def replace_files(options, opts, kind, plan, files: dict[str, list[str]],
                  held: dict[str, int]) -> dict:
    """``--mode replace`` into a lakehouse that holds other files' records (``held``: its
    records by input, :func:`input_held`): the input
    files' records replace what earlier runs wrote of the same files (bronze, silver, dead
    letters), every other file's stay, and gold is computed again over all of silver.

    The new rows are written first and the superseded ones removed after: a run that
    fails leaves the lakehouse as it was, or (stopped between the two) with both, which
    the same run again mends."""
    from beam_pipelines.io import delivery
    from beam_pipelines.io.lakehouse import (
        data_files,
        prepare_output_dir,
        table_dir,
        write_catalog,
    )
    from beam_pipelines.io.sources import ReadRawBatches, count_input_records
    from schemas.dead_letter import DEAD_LETTERS

    output_dir = opts.output_dir
    pipeline, tables = kind.pipeline, kind.appended_tables
    prepare_output_dir(output_dir, tables)
    _local_lakehouse(plan, output_dir, "--mode replace")
    inputs = frozenset(p for paths in files.values() for p in paths)
    resume = delivery.Resume.load(output_dir, pipeline, tables)
    samples = {f for f in held if is_sample(f, output_dir) and f not in inputs}
    read_again = inputs & set(held)
    again = frozenset(read_again | samples)  # a generated sample's records go too
    dropped_input = sum(held[f] for f in again)  # counted as input before: read again
    kept = sum(count for f, count in held.items() if f not in inputs and f not in samples)
    print(f"Replacing in {output_dir}: {len(inputs)} file(s)"
          + (f", {len(read_again)} read before "
             f"({sum(held[f] for f in read_again):,} earlier records replaced)"
             if read_again else "")
          + (f", the generated sample's {sum(held[f] for f in samples):,} records removed"
             if samples else "")
          + f"; {kept:,} records of other inputs kept", flush=True)
    kept_layers = (kind.bronze, kind.silver, DEAD_LETTERS)
    replaced = recomputed_files(output_dir, tables, kept_layers)
    superseded = {schema.name: data_files(table_dir(output_dir, schema))
                  for schema in kept_layers}
    result = _appending_run(options, kind, plan, resume,
                            lambda p: p | "ReadFiles" >> ReadRawBatches(files),
                            prior_without=again)
    for path in replaced:
        os.remove(path)
    for name, paths in superseded.items():
        for path in paths:
            _drop_rows_of(path, again, pipeline if name == DEAD_LETTERS.name else None)
    return {"output_dir": output_dir, "catalog": write_catalog(output_dir, tables),
            "tables": kind.tables, "sink": plan.sink, "result": result,
            "input_records": resume.prior_input - dropped_input
            + count_input_records(files)}


def _drop_rows_of(path: str, files: frozenset, pipeline: str | None) -> None:
    """A table file without the rows read from ``files`` (of ``pipeline`` only, if
    given)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from beam_pipelines.io.delivery import from_files

    if not files:
        return

    def dropped(table):
        gone = from_files(table, files)
        if pipeline is not None:
            gone = pc.and_(gone, pc.equal(table.column("pipeline"), pipeline))
        return gone

    # The columns that tell first: a file (a partition) the input does not cover is
    # read no further and left as it is.
    columns = ["source"] + (["pipeline"] if pipeline is not None else [])
    if not pc.any(dropped(pq.read_table(path, columns=columns))).as_py():
        return
    table = pq.read_table(path)
    _rewrite(path, table.filter(pc.invert(dropped(table))))


def _no_raw(p):
    import apache_beam as beam
    import pyarrow as pa

    return p | "NoNewRecords" >> beam.Create([]).with_output_types(pa.Table)
