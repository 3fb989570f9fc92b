# make run   — create the virtualenv, install, run the local pipeline on a generated sample
# make test  — the whole test suite (starts and stops any service it needs itself)
# make run-streaming         — the same medallion, streaming from a live generator (2 minutes)
# make run-streaming-pubsub  — streaming from the Pub/Sub emulator, publisher included
# make run-bigquery-local    — both pipelines into a local BigQuery emulator, with the SQL
# make dashboard             — the dashboard over the lakehouse (after make run) in a browser
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The BigQuery emulator of the tests pins its own dependencies: a virtualenv of its own.
BQ_VENV  ?= .venv-bqemulator
BQ_STAMP := $(BQ_VENV)/.installed-stamp
ARGS   ?=

.PHONY: all venv bqemulator dashboard dashboard-screenshots run-bigquery-local dataflow-metrics dataflow-metrics-streaming \
	dataflow-logs dataflow-logs-streaming template template-metadata template-run run run-streaming run-streaming-pubsub test bench check-python lint schema-docs clean \
	distclean
all: test

venv: $(STAMP)
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps $$($(BIN)/python setup.py --no-deps-pins)
	touch $@

# DuckDB cannot download its extensions here: install the PyPI copies into a HOME of the
# emulator's own, where DuckDB looks for installed extensions.
bqemulator: $(BQ_STAMP)
$(BQ_STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(BQ_VENV)
	$(BQ_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BQ_VENV)/bin/python -m pip install --quiet $$($(PYTHON) setup.py --bqemulator-pins)
	mkdir -p $(BQ_VENV)/home
	HOME=$(abspath $(BQ_VENV))/home $(BQ_VENV)/bin/python -c "import duckdb, glob; \
	  con = duckdb.connect(); \
	  [con.install_extension(p) for p in glob.glob('$(BQ_VENV)/lib/python*/site-packages/duckdb_extension_*/extensions/*/*.duckdb_extension')]; \
	  con.execute('LOAD spatial')"
	touch $@

run: $(STAMP)          ## the server-metrics medallion on a generated sample (ARGS="..." for flags)
	$(BIN)/python -m run $(ARGS)

run-streaming: $(STAMP)         ## streaming from the in-pipeline generator, drained after 2m
	$(BIN)/python -m run --streaming --run-for 2m $(ARGS)

run-streaming-pubsub: $(STAMP)  ## emulator + publisher + streaming pipeline, stopped after 2m
	$(BIN)/python -m beam_pipelines.ops.demo pubsub --run-for 2m $(ARGS)

# The browser tests drive Debian's Chromium; installed here when missing (a failure stops
# make test: a missing prerequisite fails, it does not skip).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	$$(command -v sudo) apt-get install -y chromium || \
	  ($$(command -v sudo) apt-get update && $$(command -v sudo) apt-get install -y chromium)

dashboard: $(STAMP)     ## the dashboard over the lakehouse (ARGS="--lakehouse DIR", ...)
	$(BIN)/python -m beam_pipelines.dashboard $(ARGS)

SHOTS_LAKEHOUSE := build/screenshots-lakehouse
dashboard-screenshots: $(STAMP) $(CHROMIUM)  ## docs/screenshots: every page over both samples
	$(BIN)/python -m run --output-dir $(SHOTS_LAKEHOUSE) --sample-servers 20 --no-summary
	$(BIN)/python -m run logs --output-dir $(SHOTS_LAKEHOUSE) --no-summary
	$(BIN)/python -m beam_pipelines.dashboard.browser --lakehouse $(SHOTS_LAKEHOUSE) \
	  --output-dir docs/screenshots

run-bigquery-local: $(STAMP) $(BQ_STAMP)  ## both pipelines into a local BigQuery emulator, SQL, views
	$(BIN)/python -m beam_pipelines.ops.demo bigquery $(ARGS)

# Dataflow: PROJECT, BUCKET (and REGION, PREFIX, INPUT, SUBSCRIPTION) as make variables.
# Workers install the code from setup.py; the tables go to BigQuery (see docs/DEPLOY.md).
REGION ?= europe-west1
PREFIX ?= telemetry
DATAFLOW = --runner DataflowRunner --project $(PROJECT) --region $(REGION) \
	--temp_location gs://$(BUCKET)/tmp --staging_location gs://$(BUCKET)/staging \
	--setup_file ./setup.py --sink bigquery --bq-dataset-prefix $(PREFIX)

dataflow-metrics: $(STAMP)            ## batch: INPUT (default gs://BUCKET/metrics/*.jsonl)
	$(BIN)/python -m run metrics $(DATAFLOW) --input $(or $(INPUT),gs://$(BUCKET)/metrics/*.jsonl) $(ARGS)

dataflow-metrics-streaming: $(STAMP)  ## streaming: SUBSCRIPTION (default .../server-metrics)
	$(BIN)/python -m run metrics --streaming $(DATAFLOW) --subscription $(or $(SUBSCRIPTION),projects/$(PROJECT)/subscriptions/server-metrics) $(ARGS)

dataflow-logs: $(STAMP)               ## batch: INPUT (default gs://BUCKET/logs/*.log)
	$(BIN)/python -m run logs $(DATAFLOW) --input $(or $(INPUT),gs://$(BUCKET)/logs/*.log) $(ARGS)

dataflow-logs-streaming: $(STAMP)     ## streaming: SUBSCRIPTION (default .../web-logs)
	$(BIN)/python -m run logs --streaming $(DATAFLOW) --subscription $(or $(SUBSCRIPTION),projects/$(PROJECT)/subscriptions/web-logs) $(ARGS)

# Flex Template: one image (Dockerfile) for launcher and workers, built by Cloud Build and
# registered with deploy/metadata.json. PROJECT, BUCKET (and REGION, AR_REPO, TAG).
AR_REPO  ?= telemetry
# one image tag per commit (never a moving :latest)
TAG      ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
IMAGE    ?= $(REGION)-docker.pkg.dev/$(PROJECT)/$(AR_REPO)/telemetry-medallion:$(TAG)
TEMPLATE ?= gs://$(BUCKET)/templates/telemetry-medallion.json
PIPELINE ?= metrics
PARAMS   ?= input=gs://$(BUCKET)/metrics/*.jsonl

template-metadata: $(STAMP)  ## regenerate deploy/metadata.json from the pipeline options
	$(BIN)/python -m beam_pipelines.ops.flex_template metadata > deploy/metadata.json.tmp
	mv deploy/metadata.json.tmp deploy/metadata.json  # a failed run leaves the file as it was

template: template-metadata  ## build the image and register the flex template (needs gcloud)
	gcloud builds submit --project $(PROJECT) --tag $(IMAGE) .
	gcloud dataflow flex-template build $(TEMPLATE) --project $(PROJECT) --image $(IMAGE) \
	  --sdk-language PYTHON --metadata-file deploy/metadata.json

template-run:  ## launch it: PIPELINE=metrics|logs PARAMS="input=gs://...,streaming=false"
	gcloud dataflow flex-template run telemetry-$(PIPELINE)-$$(date +%Y%m%d-%H%M%S) \
	  --project $(PROJECT) --region $(REGION) --template-file-gcs-location $(TEMPLATE) \
	  --temp-location gs://$(BUCKET)/tmp --staging-location gs://$(BUCKET)/staging \
	  --parameters pipeline=$(PIPELINE),sdk_container_image=$(IMAGE),bq_dataset_prefix=$(PREFIX) \
	  --parameters "$(PARAMS)"

test: $(STAMP) $(BQ_STAMP) $(CHROMIUM)  ## unit, transform, streaming and end-to-end tests
	$(BIN)/python -m pytest

# Another Python installs the package (not editable, from a clean export of HEAD) and runs
# the pipeline from another directory: PY=python3.13 (or a path; pyenv's is found too).
PY ?= python3.13
check-python:  ## install into a fresh virtualenv of PY and run the sample (PY=python3.13)
	@py=; for c in $(PY) $$(ls -d $$HOME/.pyenv/versions/$(PY:python%=%)*/bin/python 2>/dev/null); do \
	    if $$c --version >/dev/null 2>&1; then py=$$c; break; fi; done; \
	  if [ -z "$$py" ]; then echo "check-python: no $(PY) on this machine (PY=path/to/python)"; exit 2; fi; \
	  work=$$(mktemp -d); trap 'rm -rf "$$work"' EXIT; \
	  git archive HEAD | tar -x -C "$$work" && mkdir "$$work/elsewhere" && \
	  "$$py" -m venv "$$work/venv" && "$$work/venv/bin/python" -m pip install --quiet "$$work[local]" && \
	  cd "$$work/elsewhere" && "$$work/venv/bin/python" -m run --sample-servers 4 \
	    --sample-duration 30m --output-dir lake --no-summary && \
	  echo "check-python: $$("$$work/venv/bin/python" --version) installs the package and runs the sample"

bench: $(STAMP)        ## throughput benchmarks (figures are ratios against a reference)
	$(BIN)/python -m bench $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

schema-docs: $(STAMP)  ## regenerate docs/SCHEMAS.md and the BigQuery schema files from schemas/
	$(BIN)/python -m schemas.render

clean:
	rm -rf lakehouse bench/out .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(BQ_VENV)
