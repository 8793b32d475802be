# One FundedFlow process (worker or `fundedflow migrate`) for docker-compose.yml.
# Development and CI run without Docker (scripts/stack.sh + .venv); keep this
# file in step with pyproject.toml by hand.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what `pip install .` reads, named one by one: the build context also
# holds .venv and .stack (a PostgreSQL data dir the builder may not even be
# allowed to read), which must not end up in the image.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY tables ./tables
COPY views ./views
COPY domain ./domain
COPY migrations ./migrations
RUN pip install . && rm -rf /src

# Not root; /data is the worker's table state (DATA_DIR), a volume per worker.
# A fresh named volume takes this directory's owner.
RUN useradd --system --uid 10001 --home-dir /data fundedflow \
    && mkdir -p /data && chown fundedflow /data
USER fundedflow
WORKDIR /data
ENV DATA_DIR=/data
EXPOSE 6066 6067

CMD ["fundedflow", "worker", "--web-port", "6066"]
