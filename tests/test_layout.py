"""The packages import one way only: the worker-path edges (``beam_pipelines.io``), the
runners and the transforms never import the pipelines, the CLI, the operations tooling or
the dashboard; the dashboard reads tables and never imports the transforms or Beam;
the transforms never import ``beam_pipelines`` at all; and no record kind's package
imports another's."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: package → the prefixes it must not import.
FORBIDDEN = {
    "transforms": ("beam_pipelines", "generators", "bench"),
    "schemas": ("beam_pipelines", "transforms", "generators", "bench"),
    "beam_pipelines/io": ("beam_pipelines.ops", "beam_pipelines.runs",
                          "beam_pipelines.preflight", "beam_pipelines.options",
                          "beam_pipelines.server_metrics", "beam_pipelines.web_logs",
                          "beam_pipelines.cli", "beam_pipelines.kinds", "generators",
                          "beam_pipelines.dashboard"),
    "beam_pipelines/runners": ("beam_pipelines.ops", "beam_pipelines.runs",
                               "beam_pipelines.preflight", "beam_pipelines.options",
                               "beam_pipelines.server_metrics", "beam_pipelines.web_logs",
                               "beam_pipelines.cli", "beam_pipelines.dashboard"),
    # The dashboard reads the tables only: never the transforms, the pipelines or Beam.
    "beam_pipelines/dashboard": ("transforms", "generators", "apache_beam",
                                 "beam_pipelines.io", "beam_pipelines.runs",
                                 "beam_pipelines.runners", "beam_pipelines.server_metrics",
                                 "beam_pipelines.web_logs", "beam_pipelines.cli"),
    "transforms/server_metrics": ("transforms.web_logs",),
    "transforms/web_logs": ("transforms.server_metrics",),
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_against_the_flow(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    wrong = [(str(f.relative_to(ROOT)), name) for f in files for name in _imports(f)
             if name.startswith(FORBIDDEN[package])]
    assert not wrong, wrong


#: The launch layer: the modules that read the parsed options (``opts``); below it,
#: code takes typed values (``preflight.RunPlan``, a sink, a mode, paths).
LAUNCH = ("beam_pipelines/cli.py", "beam_pipelines/runs.py", "beam_pipelines/preflight.py",
          "beam_pipelines/replay.py", "beam_pipelines/server_metrics.py",
          "beam_pipelines/web_logs.py", "beam_pipelines/kinds.py",
          "beam_pipelines/options.py")


def test_the_options_do_not_leave_the_launch_layer():
    """No function outside the launch layer takes the parsed options as a parameter."""
    below = [f for package in ("beam_pipelines", "transforms")
             for f in sorted((ROOT / package).rglob("*.py"))
             if str(f.relative_to(ROOT)) not in LAUNCH]
    assert any("io" in f.parts for f in below)
    taking = []
    for path in below:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in node.args.args + node.args.kwonlyargs]
                if "opts" in names:
                    taking.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not taking, taking


def test_every_package_is_shipped_to_the_workers():
    """Dataflow workers install the package setuptools finds: a folder of modules without
    an ``__init__.py`` would be left out, and its imports fail on the workers only."""
    import tomllib
    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = set(find_packages(str(ROOT), include=include))
    folders = {str(p.parent.relative_to(ROOT)).replace("/", ".")
               for root in ("beam_pipelines", "generators", "transforms", "schemas")
               for p in (ROOT / root).rglob("*.py")}
    assert "transforms.web_logs" in folders
    assert folders <= shipped, sorted(folders - shipped)


def test_the_shared_machinery_imports_no_record_kind():
    """``transforms/`` itself is what every kind shares; a third kind is a new package
    beside ``server_metrics`` and ``web_logs`` (and a registration in
    ``beam_pipelines.kinds``), with no edit here."""
    shared = sorted((ROOT / "transforms").glob("*.py"))
    assert len(shared) > 5
    wrong = [(f.name, name) for f in shared for name in _imports(f)
             if name.startswith(("transforms.server_metrics", "transforms.web_logs"))]
    assert not wrong, wrong


def test_the_graph_of_every_kind_is_built_from_the_plan_not_the_options():
    """A kind's launch reads the options in ``settings``, ``inputs`` and
    ``live_generator`` only; what builds or writes the graph takes the typed plan."""
    import inspect

    from beam_pipelines.kinds import KINDS
    from beam_pipelines.runs import Launch

    graph = ("batch_medallion", "streaming_medallion", "publish", "sample_written",
             "summary_args")
    for kind in KINDS.values():
        launch = kind.launch
        assert isinstance(launch, Launch) and launch.options_class is kind.options, kind
        for name in graph:
            parameters = inspect.signature(getattr(launch, name)).parameters
            assert not {"opts", "options"} & set(parameters), (kind.name, name)
        assert set(launch.appended_tables) <= set(launch.tables)
        assert {launch.bronze, launch.silver} <= set(launch.tables)
