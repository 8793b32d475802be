#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, starts the local stack
# (Kafka, PostgreSQL, Redis, stripe-mock), runs pytest, and stops the stack again.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/unit -q`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
scripts/stack.sh up
trap 'scripts/stack.sh down' EXIT
eval "$(scripts/stack.sh env)"
# The browser tests' headless Chromium (Debian's package; installed when missing).
FUNDEDFLOW_CHROMIUM=$(scripts/browser.sh)
export FUNDEDFLOW_CHROMIUM
.venv/bin/python -m pytest --cov=domain --cov-report=term "$@"
