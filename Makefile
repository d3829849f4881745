# make test  - create .venv if missing, install securecomm with its test extras, run ruff, mypy, pytest
# make demo  - the main job: a narrated walk through encrypt -> split -> combine -> decrypt
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test demo lint vectors clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

demo: $(VENV)/.installed
	$(BIN)/securecomm demo

# Regenerate vectors/*.json from the seeded script (the tests check they match).
vectors: $(VENV)/.installed
	$(BIN)/python tools/generate_vectors.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build src/*.egg-info
