#!/usr/bin/env bash
# Every cluster process's Prometheus metrics, kept as last scraped (every 5 s) until
# killed: the counters and histograms are cumulative, so the last scrape before the
# cluster goes down holds the whole run (the arrival waits, the bus's lags, ...).
# Usage: scripts/profile/metrics.sh OUT_DIR [BASE_PORT]   (ports as scripts/cluster's)
set -uo pipefail
out=${1:?usage: metrics.sh OUT_DIR [BASE_PORT]}
base=${2:-${DROP_BASE_PORT:-4800}}
services=(auth tickets orders payments expiration web webhooks checkin)
mkdir -p "$out"
while true; do
  for slot in "${!services[@]}"; do
    for n in 1 2; do
      port=$((base + 10 * slot + n - 1))
      if curl -fsS -m 2 -o "$out/.scrape" "http://127.0.0.1:$port/metrics" 2>/dev/null; then
        mv "$out/.scrape" "$out/${services[$slot]}-$n.prom"
      fi
    done
  done
  sleep 5
done
