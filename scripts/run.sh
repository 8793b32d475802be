#!/usr/bin/env bash
# Runs FundedFlow locally and plays the demo: installs, starts the stack, migrates, seeds the
# tiers, starts two workers (ports 6066 and 6067), plays a scenario through them, then keeps the
# workers running until Ctrl-C. `scripts/stack.sh down` stops the stack afterwards.
# With DEMO_EXIT=1 the workers are stopped as soon as the demo has played.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
export JWT_SECRET=${JWT_SECRET:-dev-secret-change-me-at-least-32-bytes}
export STRIPE_API_KEY=${STRIPE_API_KEY:-sk_test_123}
export STRIPE_WEBHOOK_SECRET=${STRIPE_WEBHOOK_SECRET:-whsec_dev}
export WEB_HOST=${WEB_HOST:-127.0.0.1}
mkdir -p var
.venv/bin/fundedflow migrate
.venv/bin/fundedflow tiers seed

pids=()
stop_workers() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_workers EXIT INT TERM

for i in 1 2; do
  port=$((6065 + i))
  .venv/bin/fundedflow worker --web-port "$port" --data-dir "var/worker$i" \
    >"var/worker$i.log" 2>&1 &
  pids+=($!)
  echo "worker $i: http://127.0.0.1:$port (log var/worker$i.log)"
done

echo "waiting for both workers to be healthy..."
for _ in $(seq 1 240); do
  if curl -fs http://127.0.0.1:6066/health >/dev/null && curl -fs http://127.0.0.1:6067/health >/dev/null; then
    break
  fi
  sleep 0.5
done
# A just-formed group may still rebalance once; give it a moment to settle.
sleep 3

# The demo's trader, and a token to watch their accounts live on the trader page.
DEMO_USER=${DEMO_USER:-usr_demo_$(date +%s)}
TRADER_TOKEN=$(DEMO_USER=$DEMO_USER .venv/bin/python -c 'import os, time, jwt
print(jwt.encode({"sub": os.environ["DEMO_USER"], "roles": [], "exp": int(time.time()) + 8 * 3600},
                 os.environ["JWT_SECRET"], algorithm="HS256"))')
ADMIN_TOKEN=$(.venv/bin/python -c 'import os, time, jwt
print(jwt.encode({"sub": "adm_demo", "roles": ["admin"], "exp": int(time.time()) + 8 * 3600},
                 os.environ["JWT_SECRET"], algorithm="HS256"))')
echo
echo "Trader page: http://127.0.0.1:6066/app/  (sign in with the trader token below)"
echo "Admin page:  http://127.0.0.1:6066/app/admin  (admin token below)"
echo "trader token ($DEMO_USER): $TRADER_TOKEN"
echo "admin token (adm_demo):    $ADMIN_TOKEN"
if [ "${DEMO_EXIT:-0}" = 1 ]; then
  wait_s=${DEMO_WAIT:-0}
  pace=${DEMO_PACE:-0}
else
  wait_s=${DEMO_WAIT:-15}
  pace=${DEMO_PACE:-2}
fi
if [ "$wait_s" -gt 0 ]; then
  echo "the demo starts in ${wait_s}s: open the trader page now to watch it live"
  sleep "$wait_s"
fi

DEMO_USER=$DEMO_USER DEMO_PACE=$pace DEMO_WORKERS=http://127.0.0.1:6066,http://127.0.0.1:6067 \
  .venv/bin/python scripts/demo.py

if [ "${DEMO_EXIT:-0}" = 1 ]; then
  exit 0
fi
echo
echo "Workers keep running (Ctrl-C to stop them; then 'scripts/stack.sh down')."
wait
