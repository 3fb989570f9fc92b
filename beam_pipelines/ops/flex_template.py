"""The Dataflow Flex Template: its launcher entry point and its ``metadata.json``.

One image (``Dockerfile``) is both the workers' SDK container and the template launcher;
the launcher runs this file with every template parameter as ``--name=value``. A template
cannot take a positional argument or a bare flag, so two parameters stand in for them:
``pipeline`` (a kind of :mod:`beam_pipelines.kinds`: ``metrics`` or ``logs``) and
``streaming`` (``true`` or ``false``). The rest are the options of ``python -m run``
under Beam's underscore spelling.

``python -m beam_pipelines.ops.flex_template metadata`` prints ``metadata.json``, generated
from the options classes (help text, and a validation regex from each option's type,
choices or name), so the template cannot drift from the pipelines; a test compares it
with the committed ``deploy/metadata.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from beam_pipelines.kinds import DEFAULT, KINDS
from beam_pipelines.options import add_arguments
from schemas.durations import duration_arg, positive_int_arg

#: The image's copy of setup.py (``/template/setup.py``), beside the package.
SETUP_FILE = Path(__file__).resolve().parents[2] / "setup.py"

#: Options of ``python -m run`` that a Dataflow job cannot use, and why: they are left out
#: of the template (a launch that passes one gets Dataflow's "unknown parameter").
LOCAL_ONLY = {
    "seed": "seeds the generated sample, which exists on the local runner only",
    "progress": "the progress line is the local runner's; Dataflow's console shows a job's",
    "sample_servers": "the generated sample is local",
    "sample_duration": "the generated sample is local",
    "sample_interval": "the generated sample is local",
    "sample_rate": "the generated sample is local",
    "summary": "the summary reads the local lakehouse",
    "run_for": "a Dataflow streaming job runs until it is drained",
    "mode": "appending is to the local lakehouse; BigQuery's scheduled MERGEs replace days",
    "kafka_join": "the family join is the local Kafka source's (Dataflow reads whole records)",
    "kafka_join_wait": "the family join is the local Kafka source's",
    "wait": "a template launch must return once the job is submitted",
    "max_source_outage": "Dataflow's own Pub/Sub source retries for as long as the job runs",
    "heartbeat": "a Dataflow job's progress is in its console and metrics",
    "tcp_listen": "TCP sources run on the local runner only",
    "tcp_connect": "TCP sources run on the local runner only",
}

_DURATION = r"^[0-9]+(\.[0-9]+)?(ms|s|min|m|h|d)?$"
_GS = r"^gs://[a-z0-9][-_.a-z0-9]{1,220}/.+$"


def _by_name() -> dict[str, str]:
    """Regexes of the free-text options, from the checks the pipelines apply."""
    from beam_pipelines.bigquery import warehouse
    from beam_pipelines.ops.pubsub import _SUBSCRIPTION, _TOPIC
    from transforms.web_logs.access_log import LOG_FORMATS

    layer = "(" + "|".join(warehouse.LAYERS) + ")"
    return {
        "input": r"^gs://[^,]+(,gs://[^,]+)*$",
        "output_dir": _GS,
        "config": r"^\S+\.ya?ml$",
        "subscription": _SUBSCRIPTION.pattern,
        "alerts_topic": _TOPIC.pattern,
        "geo_database": _GS,
        "ip_salt": r"^.+$",
        "ip_salt_file": r"^\S+$",
        "windows": r"^[0-9]+(ms|s|min|m|h|d)?(,[0-9]+(ms|s|min|m|h|d)?)*$",
        "earliest_event": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        # a preset, or a format string with at least one directive (compiled at launch)
        "log_format": "^(" + "|".join(LOG_FORMATS) + r"|json:.+|.*[%$].*)$",
        "trusted_proxies": r"^[0-9A-Fa-f.:]+(/[0-9]+)?(,[0-9A-Fa-f.:]+(/[0-9]+)?)*$",
        "bq_project": warehouse._PROJECT.pattern,
        "bq_dataset_prefix": r"^[A-Za-z0-9_]{1,1000}$",
        "bq_location": warehouse._LOCATION.pattern,
        "bq_layers": rf"^{layer}(,{layer})*$",
        "postgres_dsn": r"^(postgres(ql)?://\S+|\S+=\S+( \S+=\S+)*)$",
        "postgres_schema": r"^[a-z_][a-z0-9_]{0,62}$",
        "kafka_bootstrap": r"^[^,\s]+:[0-9]+(,[^,\s]+:[0-9]+)*$",
        "kafka_topic": r"^[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*$",
        "kafka_group": r"^[A-Za-z0-9._-]+$",
        "archive": r"^gs://\S+$",  # workers cannot write a local one
        "inventory": r"^\S+\.(csv|ya?ml)$",
    }


def _regex(dest: str, action: argparse.Action, by_name: dict[str, str]) -> str:
    if action.nargs == 0:  # a switch: the launcher turns true/false into the flag
        return "^(true|false)$"
    if action.choices:
        return "^(" + "|".join(action.choices) + ")$"
    if action.type is duration_arg:
        return _DURATION
    if action.type is positive_int_arg:
        return r"^[1-9][0-9]*$"
    if action.type is int:
        return r"^-?[0-9]+$"
    if action.type is float:
        return r"^[0-9]+(\.[0-9]+)?$"
    return by_name[dest]  # a KeyError here is an option without a regex: add it above


def _label(dest: str) -> str:
    words = dest.replace("_", " ").capitalize().split()
    return " ".join({"Bq": "BigQuery", "Ip": "IP", "Ipv4": "IPv4", "Ipv6": "IPv6"}.get(w, w)
                    for w in words)


def _options() -> dict[str, tuple[argparse.Action, list[str]]]:
    """dest → (its argparse action, the pipelines that take it)."""
    found: dict[str, tuple[argparse.Action, list[str]]] = {}
    for name, kind in KINDS.items():
        parser = argparse.ArgumentParser(add_help=False)
        add_arguments(kind.options, parser)
        for action in parser._actions:
            found.setdefault(action.dest, (action, []))[1].append(name)
    return found


def metadata() -> dict:
    by_name = _by_name()
    parameters = [
        {"name": "pipeline", "label": "Pipeline",
         "helpText": " or ".join(f"{k.name} ({k.noun})" for k in KINDS.values()),
         "regexes": ["^(" + "|".join(KINDS) + ")$"]},
        {"name": "streaming", "label": "Streaming",
         "helpText": "true: read --subscription continuously; false (default): read "
                     "--input files once",
         "isOptional": True, "regexes": ["^(true|false)$"]},
        {"name": "sdk_container_image", "label": "SDK container image",
         "helpText": "this template's own image, so the workers run what submitted the job "
                     "(without it they install the code from setup.py at start-up)",
         "isOptional": True, "regexes": [r"^[a-z0-9][-a-z0-9.]*(:[0-9]+)?/\S+$"]},
    ]
    for dest, (action, pipelines) in sorted(_options().items()):
        if dest in LOCAL_ONLY:
            continue
        only = "" if len(pipelines) == len(KINDS) else f" [pipeline {pipelines[0]}]"
        parameters.append({
            "name": dest, "label": _label(dest),
            "helpText": " ".join((action.help or "").split()) + only,
            "isOptional": True, "regexes": [_regex(dest, action, by_name)]})
    return {
        "name": "Telemetry medallion",
        "description": "Server metrics or web access logs: bronze validation, silver "
                       "cleaning, gold aggregation into BigQuery, every rejected record "
                       "a dead letter.",
        "streaming": True, "supportsAtLeastOnce": False, "supportsExactlyOnce": True,
        "parameters": parameters,
    }


def _switches(pipeline: str) -> set[str]:
    """The ``--on/--no-on`` flags of a kind, under the template's underscore spelling."""
    kind = KINDS.get(pipeline)
    if kind is None:
        return set()  # the CLI says the kind is unknown
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(kind.options, parser)
    return {s for a in parser._actions if isinstance(a, argparse.BooleanOptionalAction)
            for s in a.option_strings if not s.startswith("--no-")}


def launch_argv(argv: list[str]) -> list[str]:
    """The launcher's ``--name=value`` arguments → ``python -m run``'s."""
    pipeline, rest = DEFAULT, []
    streaming = False
    pairs = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "--pipeline":
            pipeline = value
        elif key == "--streaming":
            streaming = value.lower() in ("", "true", "1", "yes")
        else:
            pairs.append((arg, key, value))
    switches = _switches(pipeline)
    for arg, key, value in pairs:
        if key in switches:  # a template passes --name=true|false; the CLI wants the flag
            on = value.lower() in ("", "true", "1", "yes")
            rest.append(key if on else f"--no-{key[2:]}")
        else:
            rest.append(arg)
    keys = {a.partition("=")[0] for a in rest}
    defaults = {"--runner": "DataflowRunner", "--sink": "bigquery"}
    if "--sdk_container_image" not in keys and SETUP_FILE.exists():
        # Workers given no image (the default Beam one) install the code from setup.py.
        defaults["--setup_file"] = str(SETUP_FILE)
    rest += [f"{key}={value}" for key, value in defaults.items() if key not in keys]
    return [pipeline, *(["--streaming"] if streaming else []), *rest, "--no-wait"]


def main(argv: list[str] | None = None,
         prog: str = "python -m beam_pipelines.ops.flex_template") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(f"usage: {prog} metadata | PIPELINE [options]\n\n{__doc__}")
        return 0
    if argv[:1] == ["metadata"]:
        print(json.dumps(metadata(), indent=2))
        return 0
    from beam_pipelines.cli import main as run_main

    return run_main(launch_argv(argv), prog=prog)


if __name__ == "__main__":
    raise SystemExit(main())
