# Developer entry points. Every target works from a fresh clone: the virtualenv is created on
# first use, and each set of extras is installed once per change of pyproject.toml (a stamp
# file under .venv records it), so running `make test` twice does not reinstall.
# A fresh machine builds llama-cpp-python from source (about 6 minutes on 2 cores);
# set CMAKE_ARGS (e.g. -DGGML_CUDA=on) to build it for a GPU.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.llmserve-installed
comma := ,

.PHONY: venv install serve test lint format bench clean distclean

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# One stamp per set of extras ("test+demo" installs '.[test,demo]'); pip runs again only when
# pyproject.toml changes. Not --quiet: a first install compiles llama.cpp for minutes, and pip's
# "still running..." lines show it is alive.
$(STAMP)-%: pyproject.toml | $(BIN)/python
	$(PIP) install --editable '.[$(subst +,$(comma),$*)]'
	@touch $@

install: $(STAMP)-demo

serve: install
	$(BIN)/llmserve serve $(ARGS)

test: $(STAMP)-test+demo
	$(BIN)/pytest -q
	$(BIN)/ruff check .

lint: $(STAMP)-test+demo
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)-test+demo
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)-bench+demo
	$(BIN)/python perf/bench.py $(ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
