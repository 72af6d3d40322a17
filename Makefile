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

# llama.cpp's native CPU build uses AMX wherever the CPU lists it, but some virtual machines list
# AMX and then fault on its first tile instruction (a segfault in the first llama_decode of a
# quantized model). .ci/amx_probe.c runs one tile instruction; where it does not work, llama.cpp
# is built without AMX (GCC's -mno-amx-* win over -march=native whatever their order).
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
AMX_WORKS := $(shell d=$$(mktemp -d) && cc -O1 -mamx-tile -o $$d/probe .ci/amx_probe.c \
	2>/dev/null && $$d/probe 2>/dev/null && echo yes; rm -rf $$d)
LLAMA_CMAKE_ARGS := $(CMAKE_ARGS) $(if $(AMX_WORKS),,'-DCMAKE_C_FLAGS=$(NO_AMX)' '-DCMAKE_CXX_FLAGS=$(NO_AMX)')

.PHONY: venv install serve test lint format bench clean distclean

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# One stamp per set of extras ("test+demo" installs '.[test,demo]'); pip runs again only when
# pyproject.toml changes. Not --quiet: a first install compiles llama.cpp for minutes, and pip's
# "still running..." lines show it is alive.
$(STAMP)-%: pyproject.toml | $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --editable '.[$(subst +,$(comma),$*)]'
	@touch $@

install: $(STAMP)-demo

# The demo model is a base model: asked for no max_tokens, it writes up to its whole context
# (minutes on a CPU). `make serve` caps such requests at 256 completion tokens through the
# environment, so LLM_ENGINE_DEFAULT_MAX_TOKENS=1000 make serve, or ARGS="--default-max-tokens
# 1000", changes it, and LLM_ENGINE_DEFAULT_MAX_TOKENS= make serve lifts it (OpenAI's behaviour).
serve: install
	LLM_ENGINE_DEFAULT_MAX_TOKENS="$${LLM_ENGINE_DEFAULT_MAX_TOKENS-256}" $(BIN)/llmserve serve $(ARGS)

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
