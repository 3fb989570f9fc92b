"""Every command behaves alike: ``--help`` anywhere on the line prints help and exits 0, a
usage error is one line and exit status 2, and everything is reachable under one installed
name (``telemetry``) as well as by ``python -m`` from any directory."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from beam_pipelines import console

#: A command line of each command with --help last, after other flags.
HELP_LATE = {
    "run": ["logs", "--streaming", "--input", "x.log", "--help"],
    "generate": ["metrics", "--servers", "3", "--help"],
    "pubsub": ["setup", "--topic", "projects/p/topics/t", "--help"],
    "bigquery": ["setup", "--project", "p", "--help"],
    "gcp": ["setup", "--project", "p", "--help"],
    "services": ["pubsub", "--port", "1", "--help"],
    "demo": ["pubsub", "--run-for", "1m", "--help"],
    "template": ["--help"],
    "dashboard": ["--lakehouse", "nowhere", "--help"],
}
#: A usage mistake for each command.
MISTAKE = {
    "run": ["metrics", "--no-such-flag"],
    "generate": ["metrics", "--no-such-flag"],
    "pubsub": ["setup", "--no-such-flag"],
    "bigquery": ["setup", "--no-such-flag"],
    "gcp": ["setup", "--no-such-flag"],
    "services": ["zookeeper"],
    "demo": ["no-such-demo"],
    "template": ["no-such-pipeline"],
    "dashboard": ["--refresh", "0.5"],
}


def test_every_command_is_covered():
    assert set(HELP_LATE) == set(console.COMMANDS) == set(MISTAKE)


@pytest.mark.parametrize("command", sorted(console.COMMANDS))
def test_help_anywhere_exits_0(command, capsys):
    assert console.main([command, "--help"]) == 0
    assert console.main([command, *HELP_LATE[command]]) == 0
    out = capsys.readouterr().out
    assert f"telemetry {command}" in out and "usage" in out.lower()


@pytest.mark.parametrize("command", sorted(console.COMMANDS))
def test_a_usage_error_is_one_line_and_exit_2(command, capsys):
    assert console.main([command, *MISTAKE[command]]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"telemetry {command}: error: ") and err.count("\n") == 1, err


def test_help_and_unknown_commands(capsys):
    assert console.main([]) == 0 and console.main(["help"]) == 0
    assert "Commands:" in capsys.readouterr().out
    assert console.main(["help", "run"]) == 0
    assert "--output-dir" in capsys.readouterr().out
    assert console.main(["bogus"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("argv", [["--streaming", "--help"], ["help"], ["help", "logs"],
                                  ["logs", "--input", "x", "-h"]])
def test_python_m_run_help_anywhere(argv, capsys):
    from beam_pipelines.cli import main

    assert main(argv) == 0
    assert "--output-dir" in capsys.readouterr().out


def test_the_installed_commands_work_from_any_directory(tmp_path):
    """The console script, and ``python -m run`` outside the checkout."""
    telemetry = os.path.join(os.path.dirname(sys.executable), "telemetry")
    done = subprocess.run([telemetry, "run", "logs", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "telemetry run logs" in done.stdout, done.stderr
    done = subprocess.run([sys.executable, "-m", "run", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "python -m run" in done.stdout, done.stderr
    # A reader that goes away is not an error, nor a traceback.
    done = subprocess.run(f"'{telemetry}' run --help | head -1", shell=True, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and done.stdout.startswith("usage")


def _help(capsys, *argv) -> str:
    assert console.main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def test_one_name_per_idea_across_commands(capsys):
    """Event time is --duration (the generators; the sample's --sample-duration), wall-clock
    time --run-for; a folder to write into is --output-dir; a sample's flags are the
    generator's with sample- in front; the warehouse is --bq-project/--bq-dataset-prefix."""
    run = _help(capsys, "run", "metrics") + _help(capsys, "run", "logs")
    for flag in ("--run-for", "--output-dir", "--sample-duration", "--sample-servers",
                 "--bq-project", "--bq-dataset-prefix"):
        assert flag in run, flag
    assert "--duration" not in run.replace("--sample-duration", "")  # not wall-clock here
    generate = (_help(capsys, "generate", "metrics") + _help(capsys, "generate", "logs")
                + _help(capsys, "generate", "regional"))
    for flag in ("--duration", "--servers", "--output-dir"):
        assert flag in generate, flag
    assert "--run-for" not in generate and "--out-dir" not in generate
    assert "--run-for" in _help(capsys, "demo", "pubsub")
    for command in ("setup", "schedule", "run-scheduled"):
        text = _help(capsys, "bigquery", command)
        assert "--bq-project" in text and "--bq-dataset-prefix" in text, command
    assert "--bq-layers" in _help(capsys, "bigquery", "schedule")
