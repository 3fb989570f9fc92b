"""The preflight alone: the typed plan a run follows, with its feed checked and parsed once."""
from __future__ import annotations

import pytest

from beam_pipelines.errors import UserError
from beam_pipelines.options import ServerMetricsOptions, parse_options
from beam_pipelines.preflight import KafkaFeed, PubSubFeed, TcpFeed, preflight
from beam_pipelines.server_metrics import LAUNCH, PIPELINE
from tests.test_dataflow import DATAFLOW
from transforms.windowing import BATCH, Streaming


def plan_for(argv: list[str]):
    return preflight(parse_options(argv, ServerMetricsOptions), LAUNCH)


def test_a_batch_run_has_no_feed_and_the_batch_mode(tmp_path):
    plan = plan_for(["--output-dir", str(tmp_path)])
    assert plan.mode is BATCH and plan.feed is None and plan.pipeline == PIPELINE


def test_the_live_generator_is_no_feed_and_the_mode_carries_the_lateness(tmp_path):
    plan = plan_for(["--streaming", "--output-dir", str(tmp_path), "--allowed-lateness",
                     "90s", "--early-firing", "2s"])
    assert plan.feed is None
    assert plan.mode == Streaming(allowed_lateness_s=90, early_firing_s=2.0)


def test_a_tcp_feed_is_parsed_into_host_and_port(tmp_path):
    plan = plan_for(["--streaming", "--tcp-connect", "127.0.0.1:9", "--output-dir",
                     str(tmp_path)])
    assert plan.feed == TcpFeed("127.0.0.1", 9, listen=False)


def test_kafka_topics_are_parsed_once_with_the_group_and_the_join_wait():
    plan = plan_for(DATAFLOW + ["--streaming", "--kafka-bootstrap", "broker:9092",
                                "--kafka-topic", " cpu, memory ", "--kafka-join",
                                "--kafka-join-wait", "45s"])
    assert plan.feed == KafkaFeed("broker:9092", ("cpu", "memory"), f"telemetry-{PIPELINE}",
                                  join_wait_s=45.0)
    assert plan.dataflow and plan.offline


def test_a_subscription_on_dataflow_is_named_not_contacted():
    subscription = "projects/fake-project/subscriptions/metrics"
    plan = plan_for(DATAFLOW + ["--streaming", "--subscription", subscription])
    assert plan.feed == PubSubFeed(subscription)


@pytest.mark.parametrize("argv, problem", [
    (["--streaming", "--kafka-bootstrap", "b:9092", "--kafka-topic", "a b"],
     "topic names"),
    (["--streaming", "--kafka-bootstrap", "b:9092", "--kafka-topic", "cpu", "--kafka-join"],
     "two or more --kafka-topic topics"),
])
def test_a_feed_mistake_is_a_user_error(argv, problem):
    with pytest.raises(UserError, match=problem):
        plan_for(DATAFLOW + argv)


def test_a_tcp_address_without_a_port_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="expected HOST:PORT"):
        plan_for(["--streaming", "--tcp-connect", "nowhere", "--output-dir", str(tmp_path)])


# --- the kinds' own settings, typed, in the plan -----------------------------------------

def test_the_plan_carries_the_metrics_settings_rules_inventory_and_topic(tmp_path):
    from beam_pipelines.config import load_rules
    from beam_pipelines.server_metrics import MetricsSettings

    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("web-1: {name: web-01, type: web, location: eu-west}\n")
    plan = plan_for(DATAFLOW + ["--input", "gs://b/m/*.jsonl", "--inventory", str(inventory),
                                "--alerts-topic",
                                "projects/fake-project/topics/alerts", "--max-future", "2m"])
    assert isinstance(plan.settings, MetricsSettings)
    assert plan.settings.alerts_topic == "projects/fake-project/topics/alerts"
    assert plan.max_future_s == 120.0
    assert [s.server_name for s in plan.settings.rules.inventory.servers] == ["web-01"]
    assert plan.settings.rules.alert_matrix == load_rules().alert_matrix


def test_the_plan_carries_the_web_log_settings_parsed_once(tmp_path):
    from beam_pipelines.options import WebLogsOptions
    from beam_pipelines.web_logs import LAUNCH as LOGS
    from beam_pipelines.web_logs import WebLogsSettings

    options = parse_options(["--output-dir", str(tmp_path), "--windows", "5m,1m,5m",
                             "--ip-privacy", "hash", "--ip-salt", "s", "--top-paths", "7",
                             "--log-format", "nginx_main", "--trusted-proxies", "10.0.0.0/8"],
                            WebLogsOptions)
    plan = preflight(options, LOGS)
    settings = plan.settings
    assert isinstance(settings, WebLogsSettings) and plan.pipeline == "web_logs"
    assert settings.windows == (60, 300) and settings.top_paths == 7
    assert settings.policy.mode == "hash" and settings.policy.salt == b"s"
    assert settings.log_format.may_fill("forwarded_for")
    assert settings.database is None  # the embedded database, opened on the workers


@pytest.mark.parametrize("argv, problem", [
    (["--windows", "0s"], "--windows needs at least one window"),
    (["--log-format", "%h %q"], "--log-format"),
    (["--geo-database", "/nowhere.mmdb"], "no such file"),
    (["--trusted-proxies", "10.0.0.0/8"], "X-Forwarded-For"),
])
def test_a_web_log_setting_mistake_stops_the_preflight(tmp_path, argv, problem):
    from beam_pipelines.options import WebLogsOptions
    from beam_pipelines.web_logs import LAUNCH as LOGS

    options = parse_options(["--output-dir", str(tmp_path), *argv], WebLogsOptions)
    with pytest.raises(UserError, match=problem):
        preflight(options, LOGS)


def test_a_metrics_setting_mistake_stops_the_preflight(tmp_path):
    config = tmp_path / "rules.yaml"
    config.write_text("thresholds: [oops\n")
    with pytest.raises(UserError, match=str(config)):
        plan_for(["--output-dir", str(tmp_path), "--config", str(config)])
    with pytest.raises(UserError, match="alerts-topic|topic"):
        plan_for(["--output-dir", str(tmp_path), "--alerts-topic", "not a topic"])


def test_the_plan_s_mode_chooses_the_batch_or_the_streaming_medallion(tmp_path):
    """One launch path: the same build, the medallion the mode names."""
    from beam_pipelines import runs
    from beam_pipelines.options import WebLogsOptions
    from beam_pipelines.web_logs import LAUNCH as LOGS
    from transforms.server_metrics.medallion import ServerMetricsBatchMedallion
    from transforms.server_metrics.streaming import ServerMetricsStreamingMedallion
    from transforms.web_logs.medallion import WebLogsBatchMedallion
    from transforms.web_logs.streaming import WebLogsStreamingMedallion

    out = ["--output-dir", str(tmp_path)]
    batch, streaming = plan_for(out), plan_for(out + ["--streaming"])
    assert isinstance(runs.medallion(LAUNCH, batch), ServerMetricsBatchMedallion)
    assert isinstance(runs.medallion(LAUNCH, streaming), ServerMetricsStreamingMedallion)
    logs = [preflight(parse_options(out + extra, WebLogsOptions), LOGS)
            for extra in ([], ["--streaming"])]
    assert isinstance(runs.medallion(LOGS, logs[0]), WebLogsBatchMedallion)
    assert isinstance(runs.medallion(LOGS, logs[1]), WebLogsStreamingMedallion)
