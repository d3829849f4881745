# make test  - create .venv if missing, install securecomm with its test extras, run ruff, mypy, pytest
# make demo  - the main job: the whole system on loopback, narrated (securecomm demo)
# make bench - every benchmark beside its peers; writes bench/results.md and bench/chart.png
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test demo bench lint browser postgres nginx vectors clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@# Bytecode for our own modules, as pip writes it for an installed package: an editable
	@# install leaves it to the first run, which writes none where PYTHONDONTWRITEBYTECODE is set.
	$(BIN)/python -m compileall -q src/securecomm >/dev/null
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The browser tests drive Debian's Chromium (tests/browser); installed here when missing.
browser:
	@test -x /usr/bin/chromium || (export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q chromium) >/dev/null \
		|| (echo "make test needs Debian's chromium: apt-get install chromium (as root)" && false)

# The PostgreSQL tests start a throwaway cluster of Debian's server (tests/postgres.py).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q postgresql) >/dev/null \
		|| (echo "make test needs Debian's postgresql: apt-get install postgresql (as root)" && false)

# The relay replicas' tests run Debian's nginx as their front (securecomm up --relay-replicas).
nginx:
	@test -x /usr/sbin/nginx || command -v nginx >/dev/null 2>&1 \
		|| (export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q nginx-light) >/dev/null \
		|| (echo "make test needs Debian's nginx: apt-get install nginx-light (as root)" && false)

test: lint browser postgres nginx
	$(BIN)/pytest

demo: $(VENV)/.installed
	$(BIN)/securecomm demo

# Peers come from bench/requirements.txt; Debian's ssss is installed when apt can (as root).
# The storage benchmark runs Debian's PostgreSQL (a throwaway cluster, as the tests
# do) and the relay replicas' nginx front: both are installed when missing, as for make test.
bench: $(VENV)/.installed postgres nginx
	$(BIN)/python -m pip install --quiet -e '.[bench]' -r bench/requirements.txt
	@command -v ssss-split >/dev/null 2>&1 || apt-get install -y -q ssss >/dev/null 2>&1 \
		|| (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q ssss >/dev/null 2>&1) \
		|| echo "note: Debian's ssss could not be installed; that peer is skipped"
	$(BIN)/python -m bench.run

# Regenerate vectors/*.json from the seeded script (the tests check they match).
vectors: $(VENV)/.installed
	$(BIN)/python tools/generate_vectors.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
