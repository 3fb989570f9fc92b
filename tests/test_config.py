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
