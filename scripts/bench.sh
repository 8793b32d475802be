#!/usr/bin/env bash
# The benchmark suite on a fresh machine: installs what it needs, starts the local stack if it
# is not running, and runs `python -m bench.run` with the given arguments (e.g. `--quick`).
# The stack stays up afterwards (`scripts/stack.sh down` stops it). Never run it beside a test
# run: both share the stack, and the figures need an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
exec .venv/bin/python -m bench.run "$@"
