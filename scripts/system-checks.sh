#!/usr/bin/env bash
# The system as an operator and an attacker meet it, against the real binary in embedded
# mode (a temp data dir, a free port):
#   1. the load generator's smoke run, as a gate: no error, no 5xx;
#   2. schemathesis (`--checks all`) on /api/openapi.json, a bounded number of examples;
#   3. the consistency audit, once expiries are due (it must report 0);
#   4. SIGTERM: a clean exit (0).
# Usage: scripts/system-checks.sh [--run-time SECONDS] [--max-examples N]
set -euo pipefail
cd "$(dirname "$0")/.."

run_time=30
max_examples=30
while [ $# -gt 0 ]; do
  case "$1" in
    --run-time) run_time="$2"; shift 2 ;;
    --max-examples) max_examples="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

# Pinned: a new release may bring new checks; upgrade on purpose.
schemathesis_version=4.32.5
venv=target/schemathesis-venv

cargo build --locked -p ticketing -p ticketing-loadgen
bin=target/debug

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$schemathesis_version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$schemathesis_version"
fi

data=$(mktemp -d)
log="$data/ticketing.log"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
# Reservations last 10 s, so the abandon journey's orders expire during the run.
order_ttl=10

"$bin/ticketing" --data-dir "$data" --listen "127.0.0.1:$port" \
  --order-ttl-seconds "$order_ttl" >"$log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "ticketing died" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null

echo "== loadgen smoke: ${run_time} s"
"$bin/loadgen" --host "$base" --run-time "$run_time" --max-errors 0

echo "== schemathesis ($max_examples examples per operation)"
# A user for the operations that need a session; schemathesis signs up its own too.
TICKETING_TOKEN=$(curl -fsS -X POST "$base/api/users/signup" -H 'content-type: application/json' \
  -d '{"email":"schemathesis@checks.test","password":"schemathesis-1"}' -D - -o /dev/null |
  sed -n 's/^[Ss]et-[Cc]ookie: session=\([^;]*\).*/\1/p' | base64 -d |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["jwt"])')
export TICKETING_TOKEN
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "$base/api/openapi.json" \
  --url "$base" --checks all --exclude-checks use_after_free \
  --max-examples "$max_examples" --seed 1

echo "== audit"
# Every reservation of the run has expired (TTL, plus the orders service's 2 s grace);
# events still in flight get --settle-seconds to land.
sleep $((order_ttl + 3))
"$bin/ticketing" audit --data-dir "$data" --settle-seconds 30

echo "== SIGTERM"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
if [ "$status" -ne 0 ]; then
  cat "$log"
  echo "ticketing exited with $status after SIGTERM" >&2
  exit 1
fi
grep -q 'stopped' "$log"
echo "system checks passed"
