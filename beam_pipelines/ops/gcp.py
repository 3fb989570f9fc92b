"""``python -m beam_pipelines.ops.gcp setup|teardown --config configs/gcp.yaml``: the Google
Cloud resources of the pipelines, as code.

``setup`` creates what is missing and brings what exists up to the file: Pub/Sub topics,
the subscriptions the streaming jobs read (ack deadline, retention, a dead-letter topic
with its own subscription, a retry policy), then the BigQuery warehouse (datasets, tables,
rule tables, views: ``beam_pipelines.bigquery setup``). ``teardown --yes`` removes all of
it. Each step prints one line (``created``, ``exists``, ``updated``, ``deleted``,
``absent``), so a second run shows that nothing changed.

``PUBSUB_EMULATOR_HOST`` and ``BIGQUERY_EMULATOR_HOST`` point it at the local emulators.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from beam_pipelines.errors import UserError
from schemas.durations import parse_duration

DEFAULT_CONFIG = resources.files("configs") / "gcp.yaml"  # installed copies find it too

_FEED_KEYS = {"topic", "subscription", "ack_deadline", "retention", "dead_letter", "retry"}


@dataclass(frozen=True)
class Feed:
    """A topic, the subscription a streaming job reads, and what happens to messages that
    cannot be delivered."""

    topic: str                     # short names: the project comes from the command
    subscription: str
    ack_deadline_s: int = 60
    retention_s: int = 7 * 86400
    max_delivery_attempts: int | None = 10   # None: no dead-letter topic
    minimum_backoff_s: float | None = 10.0   # None: Pub/Sub's immediate redelivery
    maximum_backoff_s: float | None = 600.0

    def __post_init__(self):
        # Pub/Sub's own limits, checked here so the mistake names the file's key.
        if not 10 <= self.ack_deadline_s <= 600:
            raise ValueError(f"{self.topic}: ack_deadline must be 10s to 600s")
        if not 600 <= self.retention_s <= 7 * 86400:
            raise ValueError(f"{self.topic}: retention must be 10m to 7d (the most a "
                             "subscription keeps)")
        if self.max_delivery_attempts is not None and not 5 <= self.max_delivery_attempts <= 100:
            raise ValueError(f"{self.topic}: dead_letter.max_delivery_attempts must be 5 to 100")
        if self.minimum_backoff_s is not None:
            if not 0 <= self.minimum_backoff_s <= self.maximum_backoff_s <= 600:
                raise ValueError(f"{self.topic}: retry needs 0s <= minimum_backoff <= "
                                 "maximum_backoff <= 600s")

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}-dead-letter"


@dataclass(frozen=True)
class Resources:
    project: str | None
    feeds: tuple[Feed, ...]
    dataset_prefix: str = "telemetry"
    location: str = "US"
    rules: str | None = None       # the rules file loaded into the _ops tables
    looker_template_report_id: str | None = None  # the report of docs/LOOKER.md

    def topic_path(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def subscription_path(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    def warehouse(self):
        from beam_pipelines.bigquery.warehouse import Warehouse

        return Warehouse(self.project, self.dataset_prefix, self.location)


def _seconds(where: str, value) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _feed(i: int, item) -> Feed:
    where = f"pubsub[{i}]"
    if not isinstance(item, dict) or "topic" not in item or "subscription" not in item:
        raise ValueError(f"{where} needs a topic and a subscription")
    unknown = set(item) - _FEED_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    dead_letter = item.get("dead_letter") or {}
    retry = item.get("retry") or {}
    if set(dead_letter) - {"max_delivery_attempts"} or set(retry) - {"minimum_backoff",
                                                                    "maximum_backoff"}:
        raise ValueError(f"{where}: dead_letter takes max_delivery_attempts; retry takes "
                         "minimum_backoff and maximum_backoff")
    attempts = dead_letter.get("max_delivery_attempts") if dead_letter else None
    if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int)):
        raise ValueError(f"{where}.dead_letter.max_delivery_attempts must be a whole number")
    return Feed(
        topic=str(item["topic"]), subscription=str(item["subscription"]),
        ack_deadline_s=round(_seconds(f"{where}.ack_deadline", item.get("ack_deadline", 60))),
        retention_s=round(_seconds(f"{where}.retention", item.get("retention", "7d"))),
        max_delivery_attempts=attempts,
        minimum_backoff_s=(_seconds(f"{where}.retry.minimum_backoff",
                                    retry.get("minimum_backoff", "10s")) if retry else None),
        maximum_backoff_s=(_seconds(f"{where}.retry.maximum_backoff",
                                    retry.get("maximum_backoff", "600s")) if retry else None),
    )


def load(path: str | Path | None = None, project: str | None = None) -> Resources:
    """Read and check the resources file; ``project`` overrides the file's."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: "
                        f"{str(exc).splitlines()[0]}") from None
    try:
        if not isinstance(doc, dict):
            raise ValueError("the top level must be a mapping")
        unknown = set(doc) - {"project", "pubsub", "bigquery"}
        if unknown:
            raise ValueError(f"unknown section(s) {', '.join(sorted(unknown))}; expected "
                             "project, pubsub, bigquery")
        feeds = tuple(_feed(i, item) for i, item in enumerate(doc.get("pubsub") or []))
        bq = doc.get("bigquery") or {}
        if set(bq) - {"dataset_prefix", "location", "rules", "looker_template_report_id"}:
            raise ValueError("bigquery takes dataset_prefix, location, rules and "
                             "looker_template_report_id")
        template = bq.get("looker_template_report_id") or None
        if template is not None:
            from beam_pipelines.bigquery.looker import check_template_report_id

            check_template_report_id(str(template))
        resources = Resources(project=project or doc.get("project"), feeds=feeds,
                              dataset_prefix=str(bq.get("dataset_prefix", "telemetry")),
                              location=str(bq.get("location", "US")), rules=bq.get("rules"),
                              looker_template_report_id=template)
    except (TypeError, ValueError) as exc:
        raise UserError(f"config file {path}: {exc}") from None
    if not resources.project:
        raise UserError("no project: pass --project or set project: in the config file")
    # Names are checked as the APIs would, before anything is created.
    from beam_pipelines.ops.pubsub import check_subscription, check_topic

    resources.warehouse()
    for feed in feeds:
        check_topic(resources.topic_path(feed.topic))
        check_topic(resources.topic_path(feed.dead_letter_topic))
        check_subscription(resources.subscription_path(feed.subscription))
    return resources


def subscription_request(resources: Resources, feed: Feed) -> dict:
    """The ``Subscription`` the feed's streaming job reads, as the API takes it."""
    from google.protobuf import duration_pb2

    request = {
        "name": resources.subscription_path(feed.subscription),
        "topic": resources.topic_path(feed.topic),
        "ack_deadline_seconds": feed.ack_deadline_s,
        "message_retention_duration": duration_pb2.Duration(seconds=feed.retention_s),
    }
    if feed.max_delivery_attempts is not None:
        request["dead_letter_policy"] = {
            "dead_letter_topic": resources.topic_path(feed.dead_letter_topic),
            "max_delivery_attempts": feed.max_delivery_attempts}
    if feed.minimum_backoff_s is not None:
        request["retry_policy"] = {
            "minimum_backoff": duration_pb2.Duration(seconds=round(feed.minimum_backoff_s)),
            "maximum_backoff": duration_pb2.Duration(seconds=round(feed.maximum_backoff_s))}
    return request


def _dead_letter_subscription(resources: Resources, feed: Feed) -> dict:
    from google.protobuf import duration_pb2

    return {"name": resources.subscription_path(f"{feed.dead_letter_topic}"),
            "topic": resources.topic_path(feed.dead_letter_topic),
            "ack_deadline_seconds": 60,
            "message_retention_duration": duration_pb2.Duration(seconds=7 * 86400)}


def setup_pubsub(resources: Resources) -> list[str]:
    from google.cloud import pubsub_v1

    from beam_pipelines.ops.pubsub import ensure_subscription, ensure_topic, require_credentials

    require_credentials()
    publisher = pubsub_v1.PublisherClient()
    done = []
    with pubsub_v1.SubscriberClient() as subscriber:
        for feed in resources.feeds:
            if feed.max_delivery_attempts is not None:
                # The dead-letter topic first: the subscription names it.
                done.append(ensure_topic(publisher, resources.topic_path(feed.dead_letter_topic)))
                done.append(ensure_subscription(subscriber,
                                                _dead_letter_subscription(resources, feed)))
            done.append(ensure_topic(publisher, resources.topic_path(feed.topic)))
            done.append(ensure_subscription(subscriber, subscription_request(resources, feed)))
    return done


def teardown_pubsub(resources: Resources) -> list[str]:
    from google.cloud import pubsub_v1

    from beam_pipelines.ops.pubsub import remove_subscription, remove_topic, require_credentials

    require_credentials()
    publisher = pubsub_v1.PublisherClient()
    done = []
    with pubsub_v1.SubscriberClient() as subscriber:
        for feed in resources.feeds:
            done.append(remove_subscription(subscriber,
                                            resources.subscription_path(feed.subscription)))
            done.append(remove_topic(publisher, resources.topic_path(feed.topic)))
            if feed.max_delivery_attempts is not None:
                done.append(remove_subscription(
                    subscriber, resources.subscription_path(feed.dead_letter_topic)))
                done.append(remove_topic(publisher,
                                         resources.topic_path(feed.dead_letter_topic)))
    return done


def setup(resources: Resources, only: str | None = None) -> list[str]:
    done = []
    if only in (None, "pubsub"):
        done += _api(setup_pubsub, resources)
    if only in (None, "bigquery"):
        from beam_pipelines.bigquery import admin, emulator
        from beam_pipelines.config import load_rules

        rules = load_rules(resources.rules)
        emulator.require_credentials()
        done += admin.setup(resources.warehouse(), rules)
        done.append(_report_line(resources))
    return done


def _report_line(resources: Resources) -> str:
    """Where to look next: the report, once its template is named in the config file."""
    if not resources.looker_template_report_id:
        return ("Looker Studio: name the template report (docs/LOOKER.md) as "
                "bigquery.looker_template_report_id for a link to the whole report")
    from beam_pipelines.bigquery.looker import warehouse_report_url

    return ("Looker Studio report: " + warehouse_report_url(
        resources.warehouse(), resources.looker_template_report_id))


def teardown(resources: Resources, only: str | None = None) -> list[str]:
    done = []
    if only in (None, "pubsub"):
        done += _api(teardown_pubsub, resources)
    if only in (None, "bigquery"):
        from beam_pipelines.bigquery import admin, emulator

        emulator.require_credentials()
        done += admin.teardown(resources.warehouse())
    return done


def _api(step, resources: Resources) -> list[str]:
    from google.api_core.exceptions import GoogleAPICallError

    try:
        return step(resources)
    except GoogleAPICallError as exc:
        raise UserError(f"Pub/Sub: {exc.message}") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(message)


def main(argv: list[str] | None = None, prog: str = "python -m beam_pipelines.ops.gcp") -> int:
    parser = _Parser(prog=prog,
                     description="Create (setup) or remove (teardown) the Pub/Sub topics and "
                                 "subscriptions and the BigQuery warehouse of the pipelines.")
    parser.add_argument("action", choices=("setup", "teardown"))
    parser.add_argument("--config", default=None,
                        help="resources file (default configs/gcp.yaml)")
    parser.add_argument("--project", default=None, help="Google Cloud project (default: "
                                                        "the file's project)")
    parser.add_argument("--only", choices=("pubsub", "bigquery"), default=None,
                        help="only this service's resources")
    parser.add_argument("--yes", action="store_true",
                        help="teardown: really delete (required)")
    try:
        args = parser.parse_args(argv)
        resources = load(args.config, args.project)
        if args.action == "teardown" and not args.yes:
            raise UserError("teardown deletes the topics, subscriptions (with their unread "
                            "messages) and every table: add --yes")
        lines = (setup if args.action == "setup" else teardown)(resources, args.only)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
