#!/usr/bin/env bash
# Load comparison, one run on one machine: `GET /v1/gate` of `marketgate serve` against an
# actix-web handler that returns an empty 200 (examples/empty200.rs), same worker count,
# same wrk threads and connections, HTTP/1.1 keep-alive. Prints req/s, p99 and the ratio
# (target: gate >= 85% of empty). Traffic stays on 127.0.0.1.
#
#   bench/load.sh [WORKERS] [CONNECTIONS] [DURATION]      (defaults: 1 64 10s)
#
# Needs wrk (Debian: apt-get install -y wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-1}
CONNS=${2:-64}
DURATION=${3:-10s}
THREADS=${WRK_THREADS:-1}
GATE_PORT=${GATE_PORT:-18181}
EMPTY_PORT=${EMPTY_PORT:-18182}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }

cargo build --release --quiet --bin marketgate --example empty200
TARGET=${CARGO_TARGET_DIR:-target}/release

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$TARGET/examples/empty200" "127.0.0.1:$EMPTY_PORT" "$WORKERS" 2>/dev/null &
pids+=($!)
"$TARGET/marketgate" serve --listen "127.0.0.1:$GATE_PORT" --workers "$WORKERS" \
    --trusted-proxy 127.0.0.1/32 --log-level warn 2>/dev/null &
pids+=($!)

wait_up() { for _ in $(seq 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
wait_up "http://127.0.0.1:$EMPTY_PORT/"
wait_up "http://127.0.0.1:$GATE_PORT/readyz"

# A client in the US behind the trusted proxy: the full path (client address, GeoIP
# lookup, decision, headers) and a 200.
HDR="X-Forwarded-For: 8.8.8.8"
curl -fsi -H "$HDR" "http://127.0.0.1:$GATE_PORT/v1/gate" | grep -i '^x-marketgate' >&2

run() { # url -> "rps p99_ms"
    local out rps p99
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "$HDR" "$1")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' <<<"$out")
    if grep -q 'Non-2xx' <<<"$out"; then echo "non-2xx answers: $out" >&2; exit 1; fi
    echo "$rps $p99"
}
# Warm up both, then measure.
wrk -t1 -c8 -d1s "http://127.0.0.1:$EMPTY_PORT/" >/dev/null
wrk -t1 -c8 -d1s -H "$HDR" "http://127.0.0.1:$GATE_PORT/v1/gate" >/dev/null
# Alternate the two ROUNDS times (noise from other processes hits both alike) and
# report each one's median round.
ROUNDS=${ROUNDS:-3}
e_runs=(); g_runs=()
for _ in $(seq "$ROUNDS"); do
    e_runs+=("$(run "http://127.0.0.1:$EMPTY_PORT/")")
    g_runs+=("$(run "http://127.0.0.1:$GATE_PORT/v1/gate")")
done
median() { printf '%s\n' "$@" | sort -n -k1,1 | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
read -r e_rps e_p99 <<<"$(median "${e_runs[@]}")"
read -r g_rps g_p99 <<<"$(median "${g_runs[@]}")"
ratio=$(awk -v g="$g_rps" -v e="$e_rps" 'BEGIN {printf "%.1f", 100*g/e}')
printf 'rounds (req/s p99_ms): empty: %s | gate: %s\n' "$(IFS=,; echo "${e_runs[*]}")" "$(IFS=,; echo "${g_runs[*]}")"
printf 'workers=%s connections=%s wrk_threads=%s duration=%s rounds=%s (median round shown)\n' "$WORKERS" "$CONNS" "$THREADS" "$DURATION" "$ROUNDS"
printf '%-22s %12s req/s  p99 %8s ms\n' "empty 200 (actix-web)" "$e_rps" "$e_p99"
printf '%-22s %12s req/s  p99 %8s ms\n' "marketgate /v1/gate" "$g_rps" "$g_p99"
printf 'ratio gate/empty: %s%% (target >= 85%%)\n' "$ratio"
