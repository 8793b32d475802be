#!/usr/bin/env bash
# Runs FundedFlow locally: installs, starts the stack, migrates, seeds the tiers and runs one
# worker in the foreground (Ctrl-C stops it; `scripts/stack.sh down` stops the stack).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
export JWT_SECRET=${JWT_SECRET:-dev-secret-change-me}
export STRIPE_API_KEY=${STRIPE_API_KEY:-sk_test_123}
export STRIPE_WEBHOOK_SECRET=${STRIPE_WEBHOOK_SECRET:-whsec_dev}
.venv/bin/fundedflow migrate
.venv/bin/fundedflow tiers seed
exec .venv/bin/fundedflow worker --web-port "${WEB_PORT:-6066}" --data-dir "${DATA_DIR:-var/worker1}"
