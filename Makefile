# make run   — create the virtualenv, install, run the local pipeline on a generated sample
# make test  — the whole test suite (starts and stops any service it needs itself)
# make run-streaming         — the same medallion, streaming from a live generator (2 minutes)
# make run-streaming-pubsub  — streaming from the Pub/Sub emulator, publisher included
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: all venv run run-streaming run-streaming-pubsub test bench lint schema-docs clean \
	distclean
all: test

venv: $(STAMP)
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps $$($(BIN)/python setup.py --no-deps-pins)
	touch $@

run: $(STAMP)          ## the server-metrics medallion on a generated sample (ARGS="..." for flags)
	$(BIN)/python -m run $(ARGS)

run-streaming: $(STAMP)         ## streaming from the in-pipeline generator, drained after 2m
	$(BIN)/python -m run --streaming --duration 2m $(ARGS)

run-streaming-pubsub: $(STAMP)  ## emulator + publisher + streaming pipeline, stopped after 2m
	$(BIN)/python -m beam_pipelines.demo pubsub --duration 2m $(ARGS)

test: $(STAMP)         ## unit, transform, streaming and end-to-end tests
	$(BIN)/python -m pytest

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
	rm -rf $(VENV)
