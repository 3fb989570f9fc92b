# make run   — create the virtualenv, install, run the local pipeline on a generated sample
# make test  — the whole test suite (starts and stops any service it needs itself)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: all venv run test bench lint schema-docs clean distclean
all: test

venv: $(STAMP)
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(STAMP)          ## the server-metrics medallion on a generated sample (ARGS="..." for flags)
	$(BIN)/python -m run $(ARGS)

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
