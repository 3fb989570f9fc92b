"""A shim: the package's metadata and every pin are in ``pyproject.toml``.

It stays for Beam's ``--setup_file ./setup.py`` (the sdist Dataflow workers install) and
for the pins installed apart from the package: ``python setup.py --no-deps-pins`` and
``--bqemulator-pins`` print them (see ``[tool.telemetry.pins]``).
"""
import sys
from pathlib import Path

_PINS = {"--no-deps-pins": "no-deps", "--bqemulator-pins": "bqemulator"}
if len(sys.argv) == 2 and sys.argv[1] in _PINS:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip's copy of the same parser
        from pip._vendor import tomli as tomllib
    with open(Path(__file__).with_name("pyproject.toml"), "rb") as f:
        print(" ".join(tomllib.load(f)["tool"]["telemetry"]["pins"][_PINS[sys.argv[1]]]))
    sys.exit(0)

from setuptools import setup  # noqa: E402

setup()
