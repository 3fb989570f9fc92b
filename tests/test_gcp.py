"""GCP resources as code (``python -m beam_pipelines.ops.gcp``) against the official Pub/Sub
emulator and the BigQuery emulator: created once, unchanged by a second run, brought back
to the file when changed by hand, and removed by teardown."""
from __future__ import annotations

import uuid

import pytest

from beam_pipelines.errors import UserError
from beam_pipelines.ops import gcp

PROJECT = "local-project"


def _config(tmp_path, feeds: str = "", bigquery: str = "", project: str = PROJECT) -> str:
    path = tmp_path / "gcp.yaml"
    path.write_text(f"project: {project}\npubsub:\n{feeds}\nbigquery:\n{bigquery}\n")
    return str(path)


def _feed(name: str, extra: str = "") -> str:
    return (f"  - topic: {name}\n    subscription: {name}\n    ack_deadline: 30s\n"
            f"    retention: 2d\n    dead_letter: {{max_delivery_attempts: 7}}\n"
            f"    retry: {{minimum_backoff: 5s, maximum_backoff: 300s}}\n{extra}")


def test_the_shipped_file_loads_and_names_valid_resources():
    resources = gcp.load(None, project="my-project")
    assert {f.topic for f in resources.feeds} >= {"server-metrics", "web-logs"}
    feed = resources.feeds[0]
    request = gcp.subscription_request(resources, feed)
    assert request["dead_letter_policy"]["dead_letter_topic"] == \
        "projects/my-project/topics/server-metrics-dead-letter"
    assert request["retry_policy"]["maximum_backoff"].seconds == 600
    assert resources.warehouse().dataset("gold") == "telemetry_gold"


@pytest.mark.parametrize("feeds, message", [
    ("  - topic: t1\n", "needs a topic and a subscription"),
    ("  - {topic: abc, subscription: abc, ack_deadline: 5s}\n", "ack_deadline must be"),
    ("  - {topic: abc, subscription: abc, dead_letter: {max_delivery_attempts: 2}}\n",
     "max_delivery_attempts must be 5 to 100"),
    ("  - {topic: abc, subscription: abc, retry: {minimum_backoff: 11m}}\n", "retry needs"),
    ("  - {topic: abc, subscription: abc, colour: red}\n", "unknown key(s) colour"),
    ("  - {topic: abc, subscription: abc, retention: soon}\n", "is not a duration"),
    ("  - {topic: 'bad name', subscription: abc}\n", "is not a topic path"),
])
def test_mistakes_in_the_file_are_one_line_naming_the_key(tmp_path, feeds, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        gcp.load(_config(tmp_path, feeds))


def test_a_bad_looker_template_id_is_one_line_naming_it(tmp_path):
    with pytest.raises(UserError, match="template report id 'not an id'"):
        gcp.load(_config(tmp_path, bigquery="  looker_template_report_id: not an id\n"))


def test_setup_creates_updates_and_teardown_removes_pubsub(pubsub_emulator, tmp_path):
    from google.cloud import pubsub_v1

    name = f"feed-{uuid.uuid4().hex[:8]}"
    resources = gcp.load(_config(tmp_path, _feed(name)))
    sub_path = f"projects/{PROJECT}/subscriptions/{name}"
    dlq = f"projects/{PROJECT}/topics/{name}-dead-letter"

    first = gcp.setup(resources, only="pubsub")
    assert first == [f"created topic {dlq}",
                     f"created subscription projects/{PROJECT}/subscriptions/{name}-dead-letter",
                     f"created topic projects/{PROJECT}/topics/{name}",
                     f"created subscription {sub_path}"]
    with pubsub_v1.SubscriberClient() as subscriber:
        sub = subscriber.get_subscription(subscription=sub_path)
    assert sub.ack_deadline_seconds == 30
    assert sub.message_retention_duration.total_seconds() == 2 * 86400
    assert sub.dead_letter_policy.dead_letter_topic == dlq
    assert sub.dead_letter_policy.max_delivery_attempts == 7
    assert sub.retry_policy.minimum_backoff.total_seconds() == 5
    assert sub.retry_policy.maximum_backoff.total_seconds() == 300

    assert all(line.startswith("exists") for line in gcp.setup(resources, only="pubsub"))

    # Changed by hand (or an older file): setup brings it back to the file.
    with pubsub_v1.SubscriberClient() as subscriber:
        from google.protobuf import field_mask_pb2
        subscriber.update_subscription(request={
            "subscription": {"name": sub_path, "ack_deadline_seconds": 99},
            "update_mask": field_mask_pb2.FieldMask(paths=["ack_deadline_seconds"])})
    again = gcp.setup(resources, only="pubsub")
    assert f"updated subscription {sub_path}: ack_deadline_seconds" in again
    with pubsub_v1.SubscriberClient() as subscriber:
        assert subscriber.get_subscription(subscription=sub_path).ack_deadline_seconds == 30

    removed = gcp.teardown(resources, only="pubsub")
    assert len(removed) == 4 and all(line.startswith("deleted") for line in removed)
    assert all(line.startswith("absent") for line in gcp.teardown(resources, only="pubsub"))


def test_the_dead_letter_topic_keeps_what_could_not_be_delivered(pubsub_emulator, tmp_path):
    """A message nacked max_delivery_attempts times moves to TOPIC-dead-letter, and the
    subscription setup made there keeps it: no message is lost."""
    import time

    from google.cloud import pubsub_v1

    name = f"dl-{uuid.uuid4().hex[:8]}"
    feed = (f"  - topic: {name}\n    subscription: {name}\n    ack_deadline: 10s\n"
            f"    dead_letter: {{max_delivery_attempts: 5}}\n"
            f"    retry: {{minimum_backoff: 0s, maximum_backoff: 0s}}\n")
    resources = gcp.load(_config(tmp_path, feed))
    gcp.setup(resources, only="pubsub")
    pubsub_v1.PublisherClient().publish(resources.topic_path(name), b"poison").result(30)
    deadline = time.time() + 60
    with pubsub_v1.SubscriberClient() as subscriber:
        main_sub = resources.subscription_path(name)
        dead_sub = resources.subscription_path(f"{name}-dead-letter")
        kept = []
        while not kept and time.time() < deadline:
            pulled = subscriber.pull(subscription=main_sub, max_messages=10, timeout=10,
                                     return_immediately=True)
            ids = [m.ack_id for m in pulled.received_messages]
            if ids:  # refuse it: the consumer cannot process it
                subscriber.modify_ack_deadline(subscription=main_sub, ack_ids=ids,
                                               ack_deadline_seconds=0)
            dead = subscriber.pull(subscription=dead_sub, max_messages=10, timeout=10,
                                   return_immediately=True)
            kept = [m.message.data for m in dead.received_messages]
            time.sleep(0.2)
    gcp.teardown(resources, only="pubsub")
    assert kept == [b"poison"]


def test_the_command_sets_up_both_services_and_says_so(pubsub_emulator, bigquery_env,
                                                      tmp_path, capsys):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    prefix = f"gcp_{uuid.uuid4().hex[:6]}"
    config = _config(tmp_path, _feed(name), f"  dataset_prefix: {prefix}\n  location: US\n"
                     "  looker_template_report_id: tmpl-12345678\n")
    assert gcp.main(["setup", "--config", config]) == 0
    out = capsys.readouterr().out
    assert f"created subscription projects/{PROJECT}/subscriptions/{name}" in out
    assert f"created dataset {prefix}_gold" in out and "replaced view" in out
    report = out.strip().splitlines()[-1]  # last: where to look next
    assert report.startswith("Looker Studio report: https://lookerstudio.google.com/"
                             "reporting/create?c.reportId=tmpl-12345678&")
    assert f"ds.server_health_daily.datasetId={prefix}_reporting" in report
    assert gcp.main(["setup", "--config", config]) == 0
    assert "created" not in capsys.readouterr().out
    assert gcp.main(["teardown", "--config", config]) == 2
    assert "--yes" in capsys.readouterr().err
    assert gcp.main(["teardown", "--config", config, "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"deleted dataset {prefix}_gold" in out and f"deleted topic projects/{PROJECT}" in out


def test_user_mistakes_are_one_line(tmp_path, capsys):
    assert gcp.main(["setup", "--config", str(tmp_path / "none.yaml")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1
    assert gcp.main(["setup", "--config", _config(tmp_path, project="")]) == 2
    assert "no project" in capsys.readouterr().err
    assert gcp.main(["setup", "--config", _config(tmp_path), "--project", "Bad_Project"]) == 2
    assert "is not a Google Cloud project id" in capsys.readouterr().err
