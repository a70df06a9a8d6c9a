#!/usr/bin/env bash
# Decision throughput with the Redis override store attached vs the embedded store, in
# one run on one machine: two `marketgate serve` instances (same workers, same rules, one
# with `--redis` to a redis-server this script starts on a free loopback port), wrk
# rounds alternating between them. The hot path reads an in-memory snapshot in both
# cases, so the target is no measurable difference. Traffic stays on 127.0.0.1.
#
#   bench/store.sh [WORKERS] [CONNECTIONS] [DURATION]      (defaults: 1 64 5s)
#
# Needs wrk and redis-server (Debian: apt-get install -y wrk redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-1}
CONNS=${2:-64}
DURATION=${3:-5s}
ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "redis-server is missing" >&2; exit 2; }

cargo build --release --quiet --bin marketgate
BIN=${CARGO_TARGET_DIR:-target}/release/marketgate
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT=$(free_port); EPORT=$(free_port); SPORT=$(free_port)
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >/dev/null &
pids+=($!)
"$BIN" serve --listen "127.0.0.1:$EPORT" --workers "$WORKERS" --trusted-proxy 127.0.0.1/32 \
    --state-dir "$tmp/embedded" --log-level warn 2>/dev/null &
pids+=($!)
"$BIN" serve --listen "127.0.0.1:$SPORT" --workers "$WORKERS" --trusted-proxy 127.0.0.1/32 \
    --state-dir "$tmp/redis" --redis "redis://127.0.0.1:$RPORT" --log-level warn 2>/dev/null &
pids+=($!)
wait_up() { for _ in $(seq 100); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
wait_up "http://127.0.0.1:$EPORT/readyz"
wait_up "http://127.0.0.1:$SPORT/readyz"
curl -fs "http://127.0.0.1:$SPORT/readyz" | grep -q 'redis in sync' || { echo "redis store not in sync" >&2; exit 1; }

HDR="X-Forwarded-For: 8.8.8.8"
run() {
    local out
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "$HDR" "$1")
    if grep -q 'Non-2xx' <<<"$out"; then echo "non-2xx answers: $out" >&2; exit 1; fi
    awk '/^Requests\/sec:/ {r=$2} $1=="99%" {p=$2} END {print r, p}' <<<"$out"
}
wrk -t1 -c8 -d1s -H "$HDR" "http://127.0.0.1:$EPORT/v1/gate" >/dev/null
wrk -t1 -c8 -d1s -H "$HDR" "http://127.0.0.1:$SPORT/v1/gate" >/dev/null
e=(); s=()
for _ in $(seq "$ROUNDS"); do
    e+=("$(run "http://127.0.0.1:$EPORT/v1/gate")")
    s+=("$(run "http://127.0.0.1:$SPORT/v1/gate")")
done
median() { printf '%s\n' "$@" | sort -n -k1,1 | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
read -r e_rps e_p99 <<<"$(median "${e[@]}")"
read -r s_rps s_p99 <<<"$(median "${s[@]}")"
printf 'workers=%s connections=%s duration=%s rounds=%s (median round)\n' "$WORKERS" "$CONNS" "$DURATION" "$ROUNDS"
printf '%-18s %12s req/s  p99 %s\n' "embedded store" "$e_rps" "$e_p99"
printf '%-18s %12s req/s  p99 %s\n' "redis store" "$s_rps" "$s_p99"
awk -v s="$s_rps" -v e="$e_rps" 'BEGIN {printf "ratio redis/embedded: %.1f%%\n", 100*s/e}'
