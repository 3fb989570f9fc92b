"""Loading and validating the rules file (``configs/server_metrics.yaml``)."""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import yaml

from beam_pipelines.errors import UserError
from schemas.durations import parse_duration
from schemas.server_metrics import MEASUREMENTS, SERVER_TYPES
from transforms.server_metrics.rules import (
    SEVERITIES,
    SIGNAL_LABELS,
    AlertMatrix,
    AlertRule,
    AnomalyDetection,
    HealthWeights,
    Incidents,
    InhibitRule,
    Location,
    Matcher,
    ServerMetricsRules,
)

# Shipped inside the package ``configs`` so that an installed copy finds it too.
DEFAULT_CONFIG = resources.files("configs") / "server_metrics.yaml"
_TOP_LEVEL = {"high_utilization", "health_score_weights", "alert_rules", "locations",
              "alert_matrix", "anomaly_detection", "incidents"}


def load_rules(path: str | Path | None = None) -> ServerMetricsRules:
    path = Path(path) if path else DEFAULT_CONFIG  # type: ignore[assignment]
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"config file {path} is a directory, not a rules file") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"config file {path} is not UTF-8 text ({exc.reason} at byte "
                        f"{exc.start})") from None
    except OSError as exc:
        raise UserError(f"config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {exc}".replace("\n", " ")) \
            from None
    try:
        return rules_from_dict(doc)
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"config file {path}: {exc}") from None


def _number(where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, not {value!r}")
    if not math.isfinite(value):  # YAML's .inf and .nan
        raise ValueError(f"{where} must be a finite number, not {value!r}")
    return float(value)


def rules_from_dict(doc: dict) -> ServerMetricsRules:
    if not isinstance(doc, dict):
        raise ValueError("the top level must be a mapping")
    unknown = set(doc) - _TOP_LEVEL
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(sorted(unknown))}; "
                         f"expected {', '.join(sorted(_TOP_LEVEL))}")
    high = _keys("high_utilization", doc.get("high_utilization") or {},
                 {"cpu_usage", "memory_usage"})
    weights = _keys("health_score_weights", doc.get("health_score_weights") or {}, None)
    bad = set(weights) - {"cpu", "memory", "high_utilization"}
    if bad:
        raise ValueError(f"health_score_weights: unknown weight(s) {', '.join(sorted(bad))}")
    rules = []
    if not isinstance(doc.get("alert_rules") or [], list):
        raise ValueError("alert_rules must be a list of rules")
    for i, item in enumerate(doc.get("alert_rules", []) or []):
        if not isinstance(item, dict):
            raise ValueError(f"alert_rules[{i}] must be a mapping")
        extra = set(item) - {"name", "metric", "above", "below", "severity", "by_type",
                             "by_server", "hysteresis"}
        if extra:
            raise ValueError(f"alert_rules[{i}]: unknown key(s) {', '.join(sorted(extra))}")
        if "name" not in item or "metric" not in item:
            raise ValueError(f"alert_rules[{i}] needs a name and a metric")
        by_type = _keys(f"alert_rules[{i}].by_type", item.get("by_type") or {},
                        set(SERVER_TYPES))
        by_server = _keys(f"alert_rules[{i}].by_server", item.get("by_server") or {}, None)
        rules.append(AlertRule(
            name=str(item["name"]), metric=str(item["metric"]),
            severity=str(item.get("severity", "warning")),
            above=_number(f"alert_rules[{i}].above", item["above"]) if "above" in item else None,
            below=_number(f"alert_rules[{i}].below", item["below"]) if "below" in item else None,
            by_type=tuple((str(k), _number(f"alert_rules[{i}].by_type.{k}", v))
                          for k, v in by_type.items()),
            by_server=tuple((str(k), _number(f"alert_rules[{i}].by_server.{k}", v))
                            for k, v in by_server.items()),
            hysteresis=_number(f"alert_rules[{i}].hysteresis", item.get("hysteresis", 0))))
    locations = []
    for name, place in _keys("locations", doc.get("locations") or {}, None).items():
        if not isinstance(place, dict):
            raise ValueError(f"locations.{name} must have latitude and longitude")
        lat = _number(f"locations.{name}.latitude", place.get("latitude"))
        lon = _number(f"locations.{name}.longitude", place.get("longitude"))
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"locations.{name}: latitude/longitude out of range")
        locations.append(Location(str(name), lat, lon))
    return ServerMetricsRules(
        alert_matrix=_alert_matrix(doc.get("alert_matrix") or {}),
        anomaly_detection=_anomaly_detection(doc.get("anomaly_detection") or {}),
        incidents=_incidents(doc.get("incidents") or {}),
        high_cpu_threshold=_number("high_utilization.cpu_usage", high.get("cpu_usage", 90)),
        high_memory_threshold=_number("high_utilization.memory_usage",
                                      high.get("memory_usage", 90)),
        health_weights=HealthWeights(**{k: _number(f"health_score_weights.{k}", v)
                                        for k, v in weights.items()}),
        alert_rules=tuple(rules) if "alert_rules" in doc else ServerMetricsRules().alert_rules,
        locations=tuple(locations),
    )


def _whole(where: str, value, unit: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where} must be a whole number of {unit}")
    return value


def _keys(section: str, doc, allowed: set[str] | None) -> dict:
    """``doc`` as a mapping with only ``allowed`` keys (None: any key)."""
    if not isinstance(doc, dict):
        raise ValueError(f"{section} must be a mapping, not {type(doc).__name__}")
    unknown = set(doc) - allowed if allowed is not None else set()
    if unknown:
        raise ValueError(f"{section}: unknown key(s) {', '.join(sorted(unknown))}; expected "
                         f"{', '.join(sorted(allowed))}")
    return doc


def _seconds(where: str, value) -> int:
    seconds = parse_duration(value) if isinstance(value, str) else _number(where, value)
    if seconds != int(seconds):
        raise ValueError(f"{where} must be whole seconds")
    return int(seconds)


def _alert_matrix(doc) -> AlertMatrix:
    doc = _keys("alert_matrix", doc, {"window", "period", "cpu_usage", "memory_usage",
                                      "network_in", "disk_io", "severity"})
    kwargs = {k: _number(f"alert_matrix.{k}", doc[k])
              for k in ("cpu_usage", "memory_usage", "network_in", "disk_io") if k in doc}
    if "window" in doc:
        kwargs["window_s"] = _seconds("alert_matrix.window", doc["window"])
    if "period" in doc:
        kwargs["period_s"] = _seconds("alert_matrix.period", doc["period"])
    if "severity" in doc:
        kwargs["severity"] = str(doc["severity"])
    return AlertMatrix(**kwargs)


def _incidents(doc) -> Incidents:
    doc = _keys("incidents", doc, {"for", "for_by_rule", "keep_firing_for", "pending_gap",
                                   "fire_at_once",
                                   "flush_every", "min_signals", "families", "group_by",
                                   "group_wait", "group_interval", "repeat_interval",
                                   "inhibit_rules"})
    kwargs = {}
    for key in ("families", "group_by"):
        if key in doc:
            value = doc[key]
            if not isinstance(value, list):
                raise ValueError(f"incidents.{key} must be a list")
            kwargs[key] = tuple(str(v) for v in value)
    if "min_signals" in doc:
        kwargs["min_signals"] = _whole("incidents.min_signals", doc["min_signals"], "signals")
    for key in ("for", "keep_firing_for", "pending_gap", "flush_every", "group_wait",
                "group_interval", "repeat_interval"):
        if key in doc:
            kwargs[f"{key}_s"] = _seconds(f"incidents.{key}", doc[key])
    if "for_by_rule" in doc:
        own = _keys("incidents.for_by_rule", doc["for_by_rule"] or {}, None)
        kwargs["for_by_rule"] = tuple(
            (str(rule), _seconds(f"incidents.for_by_rule.{rule}", value))
            for rule, value in own.items())
    if "fire_at_once" in doc:
        value = doc["fire_at_once"]
        if not isinstance(value, list):
            raise ValueError("incidents.fire_at_once must be a list of matchers "
                             "({severity: critical, family: threshold}) or severities")
        # a bare severity stays one (Incidents makes it the matcher {severity: it})
        kwargs["fire_at_once"] = tuple(
            v if isinstance(v, str) else _matcher("incidents.fire_at_once", v) for v in value)
    if "inhibit_rules" in doc:
        value = doc["inhibit_rules"]
        if not isinstance(value, list):
            raise ValueError("incidents.inhibit_rules must be a list of {source, target, "
                             "equal}")
        kwargs["inhibit_rules"] = tuple(_inhibit_rule(i, rule) for i, rule in enumerate(value))
    return Incidents(**kwargs)


def _matcher(where: str, doc) -> Matcher:
    doc = _keys(where, doc, set(SIGNAL_LABELS))
    labels = {}
    for name, value in doc.items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{where}.{name} must be a name or a list of names")
        labels[name] = values
    return Matcher.of(**labels)


def _inhibit_rule(i: int, doc) -> InhibitRule:
    where = f"incidents.inhibit_rules[{i}]"
    doc = _keys(where, doc, {"source", "target", "equal"})
    if "source" not in doc or "target" not in doc:
        raise ValueError(f"{where} needs a source and a target matcher")
    equal = doc.get("equal", ["server_id"])
    if not isinstance(equal, list):
        raise ValueError(f"{where}.equal must be a list of labels")
    return InhibitRule(_matcher(f"{where}.source", doc["source"]),
                       _matcher(f"{where}.target", doc["target"]),
                       tuple(str(v) for v in equal))


def _anomaly_detection(doc) -> AnomalyDetection:
    doc = _keys("anomaly_detection", doc, {"metrics", "alpha", "variance_alpha", "threshold",
                                           "warmup", "min_std", "severity", "flush_every",
                                           "log_scale", "severity_at"})
    kwargs = {k: _number(f"anomaly_detection.{k}", doc[k])
              for k in ("alpha", "variance_alpha", "threshold") if k in doc}
    if "metrics" in doc:
        if not isinstance(doc["metrics"], list):
            raise ValueError("anomaly_detection.metrics must be a list of metric names")
        kwargs["metrics"] = tuple(str(m) for m in doc["metrics"])
    if "warmup" in doc:
        kwargs["warmup"] = _whole("anomaly_detection.warmup", doc["warmup"], "samples")
    if "min_std" in doc:
        floors = _keys("anomaly_detection.min_std", doc["min_std"], set(MEASUREMENTS))
        kwargs["min_std"] = tuple((m, _number(f"anomaly_detection.min_std.{m}", v))
                                  for m, v in floors.items())
    if "severity" in doc:
        kwargs["severity"] = str(doc["severity"])
    if "severity_at" in doc:
        levels = _keys("anomaly_detection.severity_at", doc["severity_at"] or {},
                       set(SEVERITIES))
        kwargs["severity_at"] = tuple(
            (level, _number(f"anomaly_detection.severity_at.{level}", score))
            for level, score in levels.items())
    if "flush_every" in doc:
        kwargs["flush_every_s"] = _seconds("anomaly_detection.flush_every", doc["flush_every"])
    if "log_scale" in doc:
        scale = doc["log_scale"] or []
        if not isinstance(scale, list) or set(map(str, scale)) - set(MEASUREMENTS):
            raise ValueError("anomaly_detection.log_scale must be a list of metric names "
                             f"(of {', '.join(MEASUREMENTS)})")
        kwargs["log_scale"] = tuple(str(m) for m in scale)
    return AnomalyDetection(**kwargs)


#: An inventory's columns (and the short names also accepted).
_INVENTORY_COLUMNS = {"server_id": "server_id", "server_name": "server_name",
                      "name": "server_name", "server_type": "server_type",
                      "type": "server_type", "location": "location"}


def load_inventory(path: str | Path | None):
    """``--inventory FILE``: a CSV file with a header (server_id, server_name, server_type,
    location; name and type also do) or a YAML file (a list of such mappings, or a
    mapping of server_id → the others) → :class:`transforms.server_metrics.rules.Inventory`."""
    import csv

    from transforms.server_metrics.rules import Inventory, InventoryEntry

    if not path:
        return Inventory()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"--inventory {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--inventory {path}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    try:
        if path.suffix.lower() == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
        else:
            doc = yaml.safe_load(text) or []
            if isinstance(doc, dict):
                doc = doc.get("servers", doc)
            if isinstance(doc, dict):  # server_id → its fields
                rows = [{"server_id": k, **(v or {})} for k, v in doc.items()]
            elif isinstance(doc, list):
                rows = doc
            else:
                raise ValueError("expected a list of servers or a mapping of server_id to "
                                 "name, type and location")
        entries = []
        for i, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise ValueError(f"server {i} is not a mapping")
            unknown = set(row) - set(_INVENTORY_COLUMNS)
            if unknown:
                raise ValueError(f"unknown column(s) {', '.join(sorted(map(str, unknown)))}; "
                                 f"expected server_id, server_name, server_type, location")
            fields = {_INVENTORY_COLUMNS[k]: (str(v).strip() or None) if v is not None
                      else None for k, v in row.items()}
            if not fields.get("server_id"):
                raise ValueError(f"server {i} has no server_id")
            entries.append(InventoryEntry(**fields))
        return Inventory(tuple(entries))
    except yaml.YAMLError as exc:
        raise UserError(f"--inventory {path} is not valid YAML: {exc}".replace("\n", " ")) \
            from None
    except (ValueError, csv.Error) as exc:
        raise UserError(f"--inventory {path}: {exc}") from None
