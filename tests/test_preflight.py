"""The preflight alone: the typed plan a run follows, with its feed checked and parsed once."""
from __future__ import annotations

import pytest

from beam_pipelines.errors import UserError
from beam_pipelines.options import ServerMetricsOptions, parse_options
from beam_pipelines.preflight import KafkaFeed, PubSubFeed, TcpFeed, preflight
from beam_pipelines.server_metrics import PIPELINE
from tests.test_dataflow import DATAFLOW
from transforms.windowing import BATCH, Streaming


def plan_for(argv: list[str], streaming: bool = True):
    options = parse_options(argv)
    return preflight(options, options.view_as(ServerMetricsOptions), PIPELINE, streaming)


def test_a_batch_run_has_no_feed_and_the_batch_mode(tmp_path):
    plan = plan_for(["--output-dir", str(tmp_path)], streaming=False)
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
