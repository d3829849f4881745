# securecomm: `docker-compose up web` (relay and custodians, each in its own home),
# `docker-compose run --rm tests`.
# Stages: base (user, workdir), test (`make test` on a ready .venv), runtime (the default).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# /data is a party's home, /exchange where compose's parties hand on their cards: a new
# named volume takes the owner of the directory it is mounted on, so both are the user's.
RUN groupadd --gid 10001 securecomm \
    && useradd --uid 10001 --gid 10001 --create-home securecomm \
    && mkdir /app /data /exchange \
    && chown 10001:10001 /app /data /exchange
WORKDIR /app

# The README's test command in a copy of the tree; the venv is made here, the way the
# Makefile makes it, so `make test` runs ruff, mypy and pytest without installing.
FROM base AS test
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends make chromium nginx-light postgresql \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001
COPY --chown=10001:10001 pyproject.toml README.md ./
COPY --chown=10001:10001 src ./src
RUN python -m venv .venv && .venv/bin/pip install --quiet -e '.[test]'
COPY --chown=10001:10001 . .
RUN touch .venv/.installed
CMD ["make", "test"]

# The services: one image, the relay by default; compose runs every party's steps from it.
FROM base AS runtime
COPY pyproject.toml README.md ./
COPY src ./src
# With the PostgreSQL driver: compose's relay keeps its database there.
RUN pip install --quiet '.[postgres]' && rm -rf build src/*.egg-info
ENV SECURECOMM_HOME=/data
USER 10001:10001
VOLUME /data
EXPOSE 5000 5101 5102 5103 5104 5105
CMD ["securecomm", "relay", "serve", "--host", "0.0.0.0", "--port", "5000", "--home", "/data", "--insecure-http"]
