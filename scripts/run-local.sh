#!/usr/bin/env bash
# `make run`: the project on this machine against the local simulators, no credentials needed.
# Migrates both databases, starts the sandbox (Stripe, OrderCloud, ERP) with demo traffic, seeds a
# few orders and runs `airflow standalone` in the foreground. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW_ADMIN_USER:-admin}:admin"
export AIRFLOW__API__PORT="${AIRFLOW_PORT:-8080}"
# The mapping studio may write the mapping files here (off by default in production).
export AIRFLOW__STRIPE_SITECORE__STUDIO_WRITE="${AIRFLOW__STRIPE_SITECORE__STUDIO_WRITE:-true}"

SANDBOX_HOST=127.0.0.1
STRIPE_PORT="${SANDBOX_STRIPE_PORT:-12111}"
ORDERCLOUD_PORT="${SANDBOX_ORDERCLOUD_PORT:-12112}"
ERP_PORT="${SANDBOX_ERP_PORT:-12113}"
# The Stripe simulator signs its webhooks with this (fake) secret; the receiver checks them.
SANDBOX_WEBHOOK_SECRET="whsec_sandbox_fake_not_a_real_secret"
# The OrderCloud simulator signs its webhooks (order submits) with this (fake) hash key.
SANDBOX_OC_HASH_KEY="oc-sandbox-hash-key-not-a-real-secret"

# Connections point at the sandbox unless the caller already set them (e.g. real Stripe test mode).
# The keys below are the sandbox's obviously fake ones.
sandbox_url() { echo "http://$SANDBOX_HOST:$1"; }
if [ -z "${AIRFLOW_CONN_STRIPE_DEFAULT:-}" ]; then
  AIRFLOW_CONN_STRIPE_DEFAULT="{\"conn_type\": \"generic\", \"host\": \"$(sandbox_url "$STRIPE_PORT")\",
    \"password\": \"sk_test_sandbox_fake_0000000000000000\",
    \"extra\": {\"max_network_retries\": 2, \"webhook_secret\": \"$SANDBOX_WEBHOOK_SECRET\"}}"
fi
if [ -z "${AIRFLOW_CONN_ORDERCLOUD_DEFAULT:-}" ]; then
  AIRFLOW_CONN_ORDERCLOUD_DEFAULT="{\"conn_type\": \"http\", \"host\": \"$(sandbox_url "$ORDERCLOUD_PORT")\",
    \"login\": \"sandbox-client\", \"password\": \"sandbox-secret-not-real\",
    \"extra\": {\"buyer_id\": \"sandbox-buyer\", \"webhook_hash_key\": \"$SANDBOX_OC_HASH_KEY\"}}"
fi
if [ -z "${AIRFLOW_CONN_ERP_DEFAULT:-}" ]; then
  AIRFLOW_CONN_ERP_DEFAULT="{\"conn_type\": \"http\", \"host\": \"$(sandbox_url "$ERP_PORT")\",
    \"password\": \"erp-sandbox-token-not-real\"}"
fi
export AIRFLOW_CONN_STRIPE_DEFAULT AIRFLOW_CONN_ORDERCLOUD_DEFAULT AIRFLOW_CONN_ERP_DEFAULT
# SANDBOX_BACKEND=xc make run: the demo against Sitecore XC (docs/xc.md). The sandbox always runs
# the XC simulator; this sets the Variable stripe_sitecore_backend and sitecore_xc_default.
XC_PORT="${SANDBOX_XC_PORT:-12114}"
if [ "${SANDBOX_BACKEND:-ordercloud}" = xc ]; then
  export AIRFLOW_VAR_STRIPE_SITECORE_BACKEND=xc
  if [ -z "${AIRFLOW_CONN_SITECORE_XC_DEFAULT:-}" ]; then
    AIRFLOW_CONN_SITECORE_XC_DEFAULT="{\"conn_type\": \"http\", \"host\": \"$(sandbox_url "$XC_PORT")\",
      \"login\": \"sitecore\\\\admin\", \"password\": \"sandbox-xc-admin-password-not-real\"}"
  fi
  export AIRFLOW_CONN_SITECORE_XC_DEFAULT
fi

mkdir -p "$AIRFLOW_HOME/logs" "$AIRFLOW_HOME/config"
# The scheduler imports the tasks' heavy modules once; each forked task inherits them (seconds off
# every fast-path run, docs/realtime.md). A local-settings file of your own is left alone.
[ -e "$AIRFLOW_HOME/config/airflow_local_settings.py" ] || printf '%s\n' \
  "from stripe_sitecore.realtime.preload import preload_for_task_forks" "" \
  "preload_for_task_forks()" >"$AIRFLOW_HOME/config/airflow_local_settings.py"
pids=()
cleanup() {
  # Ignore a closed terminal or pipe: a failed echo must not stop the cleanup half way.
  trap '' INT TERM EXIT PIPE
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 1 20); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
  echo "stopped the sandbox and Airflow" 2>/dev/null || true
}
trap cleanup INT TERM EXIT

echo "==> migrating the Airflow metadata database ($AIRFLOW_HOME)"
airflow db migrate >"$AIRFLOW_HOME/logs/db-migrate.log" 2>&1 || {
  tail -n 40 "$AIRFLOW_HOME/logs/db-migrate.log"; exit 1; }
if [ -z "${AIRFLOW_CONN_STRIPE_SITECORE_STATE:-}" ] \
  && [[ "$AIRFLOW_CONN_STRIPE_DEFAULT" == *"$SANDBOX_WEBHOOK_SECRET"* ]]; then
  # The simulators start empty every time: last run's links would name PaymentIntents that no
  # longer exist, so the default state database starts afresh with them (the reports' files and
  # Airflow's run history stay).
  rm -f "$AIRFLOW_HOME/stripe_sitecore_state.db"
fi
echo "==> migrating the integration's state database"
python -m stripe_sitecore.store migrate
echo "==> creating the pools (include/stripe_sitecore/pools.py)"
python -m stripe_sitecore.pools >"$AIRFLOW_HOME/pools.json"
airflow pools import "$AIRFLOW_HOME/pools.json" >"$AIRFLOW_HOME/logs/pools.log" 2>&1 || {
  tail -n 40 "$AIRFLOW_HOME/logs/pools.log"; exit 1; }

echo "==> starting the sandbox: Stripe :$STRIPE_PORT, OrderCloud :$ORDERCLOUD_PORT, ERP :$ERP_PORT"
# Demo traffic waits for the demo history below (which moves the simulators' clocks to past days).
traffic_gate="$AIRFLOW_HOME/demo-history.done"
rm -f "$traffic_gate"
setsid python -m sandbox --host "$SANDBOX_HOST" --stripe-port "$STRIPE_PORT" \
  --ordercloud-port "$ORDERCLOUD_PORT" --erp-port "$ERP_PORT" --xc-port "$XC_PORT" --demo-traffic \
  --demo-traffic-after "$traffic_gate" \
  >"$AIRFLOW_HOME/logs/sandbox.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
  curl -fsS "http://$SANDBOX_HOST:$ORDERCLOUD_PORT/_sandbox/clock" >/dev/null 2>&1 && break
  sleep 0.2
done
python -m sandbox.seed --ordercloud-url "http://$SANDBOX_HOST:$ORDERCLOUD_PORT" --count 5
if [ "${AIRFLOW_VAR_STRIPE_SITECORE_BACKEND:-}" = xc ]; then
  echo "==> seeding 5 XC orders awaiting payment (XC simulator :$XC_PORT)"
  for i in 1 2 3 4 5; do
    curl -fsS -X POST "$(sandbox_url "$XC_PORT")/_sandbox/orders" -H 'Content-Type: application/json' \
      -d "{\"Currency\": \"USD\", \"Status\": \"WaitingForPayment\",
           \"Lines\": [{\"ItemId\": \"Habitat_Master|MUG-CLASSIC|MUG-CLASSIC\", \"Quantity\": $i,
                       \"UnitListPrice\": 12.50}], \"Customer\": {\"Email\": \"xc-shopper-$i@example.com\"}}" \
      >/dev/null
  done
fi
if [[ "$AIRFLOW_CONN_STRIPE_DEFAULT" == *"$SANDBOX_WEBHOOK_SECRET"* ]]; then
  # Three past days through the flows, with planted problems, and both daily reports on each
  # (docs/demo.md), so the reports and dead letters have content from the first minute.
  echo "==> seeding the demo history (sandbox/demo_history.py) and reporting on its days"
  python -m sandbox.demo_history --stripe-url "$(sandbox_url "$STRIPE_PORT")" \
    --ordercloud-url "$(sandbox_url "$ORDERCLOUD_PORT")" --erp-url "$(sandbox_url "$ERP_PORT")" \
    --run-reports "$AIRFLOW__CORE__DAGS_FOLDER" >"$AIRFLOW_HOME/logs/demo-history.log" 2>&1 \
    || echo "(demo history incomplete: see $AIRFLOW_HOME/logs/demo-history.log)"
  grep -E '^(seeded|reported|  [0-9a-z])' "$AIRFLOW_HOME/logs/demo-history.log" || true
fi
touch "$traffic_gate"

echo "==> starting airflow standalone (UI on http://localhost:$AIRFLOW__API__PORT)"
setsid airflow standalone >"$AIRFLOW_HOME/logs/standalone.log" 2>&1 &
pids+=($!)
passwords="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
for _ in $(seq 1 120); do
  curl -fsS "http://localhost:$AIRFLOW__API__PORT/api/v2/monitor/health" >/dev/null 2>&1 && break
  sleep 1
done
if [[ "$AIRFLOW_CONN_STRIPE_DEFAULT" == *"$SANDBOX_WEBHOOK_SECRET"* ]]; then
  # The simulator delivers its events to the plugin's receiver, as Stripe would (docs/webhooks.md).
  curl -fsS -X POST "$(sandbox_url "$STRIPE_PORT")/_sandbox/stripe/webhook_endpoints" \
    -H 'Content-Type: application/json' \
    -d "{\"url\": \"http://127.0.0.1:$AIRFLOW__API__PORT/stripe-sitecore/webhooks/stripe\",
         \"secret\": \"$SANDBOX_WEBHOOK_SECRET\"}" >/dev/null || echo "(no webhook endpoint registered)"
fi
if [[ "$AIRFLOW_CONN_ORDERCLOUD_DEFAULT" == *"$SANDBOX_OC_HASH_KEY"* ]]; then
  # OrderCloud announces order submits: realtime_order_to_cash links their PaymentIntents at once.
  curl -fsS -X POST "$(sandbox_url "$ORDERCLOUD_PORT")/_sandbox/ordercloud/webhooks" \
    -H 'Content-Type: application/json' \
    -d "{\"url\": \"http://127.0.0.1:$AIRFLOW__API__PORT/stripe-sitecore/webhooks/ordercloud\",
         \"hash_key\": \"$SANDBOX_OC_HASH_KEY\",
         \"routes\": [{\"Verb\": \"POST\", \"Route\": \"v1/orders/{direction}/{orderID}/submit\"}]}" \
    >/dev/null || echo "(no OrderCloud webhook registered)"
fi
cat <<MSG

  Airflow UI:  http://localhost:$AIRFLOW__API__PORT
  Log in as:   ${AIRFLOW_ADMIN_USER:-admin}, password in $passwords
               $(cat "$passwords" 2>/dev/null || echo "(not written yet: see $AIRFLOW_HOME/logs/standalone.log)")
  Sandbox:     Stripe http://$SANDBOX_HOST:$STRIPE_PORT, OrderCloud http://$SANDBOX_HOST:$ORDERCLOUD_PORT,
               ERP http://$SANDBOX_HOST:$ERP_PORT (logs in $AIRFLOW_HOME/logs/)
  Webhooks:    the Stripe simulator posts its events to
               http://localhost:$AIRFLOW__API__PORT/stripe-sitecore/webhooks/stripe
  Real time:   a new order gets its PaymentIntent, and a payment marks it Paid and sends it to the
               ERP, seconds after the webhook arrives (DAG realtime_order_to_cash; measured on 2
               cores: docs/realtime.md). The 5-minute DAGs stay the safety net; trigger them from
               the UI to see the seeded orders paid sooner.
  Ctrl-C stops everything.

MSG
tail -n +1 -f "$AIRFLOW_HOME/logs/standalone.log" &
pids+=($!)
wait "${pids[1]}"
