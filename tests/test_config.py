"""The rules file: defaults, overrides and clear errors."""
from __future__ import annotations

import pytest

from beam_pipelines.config import load_rules, rules_from_dict
from beam_pipelines.errors import UserError


def test_default_rules_reproduce_the_reference_systems():
    rules = load_rules()
    assert (rules.high_cpu_threshold, rules.high_memory_threshold) == (90.0, 90.0)
    w = rules.health_weights
    assert (w.cpu, w.memory, w.high_utilization) == (0.4, 0.4, 0.2)
    assert {r.name: (r.metric, r.threshold, r.severity) for r in rules.alert_rules} == {
        "high_cpu": ("cpu_usage", 90.0, "warning"),
        "high_memory": ("memory_usage", 90.0, "warning"),
        "overheating": ("temperature_c", 90.0, "critical"),
    }
    assert rules.location("europe").latitude == 50.1


def test_overrides():
    rules = rules_from_dict({"health_score_weights": {"cpu": 0.5},
                             "alert_rules": [{"name": "cold", "metric": "temperature_c",
                                              "below": 5, "severity": "info"}]})
    assert rules.health_weights.cpu == 0.5 and rules.health_weights.memory == 0.4
    assert rules.alert_rules[0].breached_by(4.0) and not rules.alert_rules[0].breached_by(6.0)


@pytest.mark.parametrize("doc, message", [
    ({"thresholds": {}}, "unknown section"),
    ({"health_score_weights": {"disk": 1}}, "unknown weight"),
    ({"health_score_weights": {"cpu": -1}}, "must not be negative"),
    ({"health_score_weights": {"cpu": "high"}}, "must be a number"),
    ({"alert_rules": [{"name": "x", "metric": "fan_speed", "above": 1}]}, "unknown metric"),
    ({"alert_rules": [{"name": "x", "metric": "cpu_usage"}]}, "exactly one of"),
    ({"alert_rules": [{"name": "x", "metric": "cpu_usage", "above": 1, "severity": "loud"}]},
     "severity"),
    ({"alert_rules": [{"name": "x", "metric": "cpu_usage", "above": 1, "colour": "red"}]},
     "unknown key"),
    ({"alert_rules": [{"name": "x", "metric": "cpu_usage", "above": 1},
                      {"name": "x", "metric": "cpu_usage", "above": 2}]}, "unique"),
    ({"locations": {"mars": {"latitude": 100, "longitude": 0}}}, "out of range"),
])
def test_invalid_rules_are_rejected_with_a_clear_message(doc, message):
    with pytest.raises((ValueError, TypeError), match=message):
        rules_from_dict(doc)


def test_file_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_rules(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("alert_rules: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_rules(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("health_score_weights: {cpu: -2}")
    with pytest.raises(UserError, match=str(wrong)):
        load_rules(wrong)


@pytest.mark.parametrize("text, message", [
    (b"alert_matrix:\n  cpu_usage: .inf\n", "alert_matrix.cpu_usage must be a finite number"),
    (b"anomaly_detection:\n  threshold: .nan\n", "anomaly_detection.threshold must be a finite"),
    (b"high_utilization: [1, 2]\n", "high_utilization must be a mapping, not list"),
    (b"health_score_weights: 5\n", "health_score_weights must be a mapping, not int"),
    (b"locations: [us-east]\n", "locations must be a mapping, not list"),
    (b"alert_rules: {a: 1}\n", "alert_rules must be a list of rules"),
    (b"\xff\xfe rules", "is not UTF-8 text"),
])
def test_every_malformed_rules_file_is_one_line_naming_the_file_and_key(tmp_path, text,
                                                                         message):
    path = tmp_path / "rules.yaml"
    path.write_bytes(text)
    with pytest.raises(UserError, match=message) as err:
        load_rules(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_directory_is_not_a_rules_file(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        load_rules(tmp_path)


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "fast"])
def test_a_sample_rate_that_is_not_a_finite_positive_number_is_one_line(value, capsys):
    from beam_pipelines import cli

    assert cli.main(["logs", "--sample-rate", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--sample-rate" in err
