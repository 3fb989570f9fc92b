"""Telemetry medallion pipelines on Apache Beam.

Every dependency is pinned here, and only here: the Makefile installs from this file and
Dataflow workers install from it (``--setup_file ./setup.py``).
"""
from setuptools import find_packages, setup

RUNTIME = [
    "apache-beam[gcp]==2.77.0",
    "duckdb==1.5.6",        # the local lakehouse catalog and the run summary
    "faker==40.54.0",       # stable fake identities for the generators
    "numpy==2.4.6",         # vectorised, seeded value generation
    "orjson==3.13.0",       # JSON parsing on the hot path of bronze
    "pyarrow==25.0.1",      # Parquet schemas and files
    "pyyaml==6.0.3",        # rules files in configs/
    "tqdm==4.70.1",         # progress bars of the generators
]

DEV = [
    "duckdb-cli==1.5.6",    # the `duckdb` command the README shows, same version as above
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    "ruff==0.17.6",
]

setup(
    name="telemetry-medallion",
    version="0.1.0",
    description="Apache Beam medallion pipelines for server telemetry and web logs",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["beam_pipelines*", "generators*", "transforms*",
                                    "schemas*", "configs*"]),
    package_data={"configs": ["*.yaml"]},
    install_requires=RUNTIME,
    extras_require={"dev": DEV},
)
