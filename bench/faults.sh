#!/usr/bin/env bash
# Faults under load, one run on one machine: the release `marketgate serve` with a Redis
# store (a redis-server this script starts on a free loopback port, AOF on), its own
# copy of the rules and a GeoIP file on disk, under wrk load on `GET /v1/gate` (a US
# client behind the trusted proxy: every answer is a 200). Each phase runs wrk for
# PHASE seconds and injects its fault a third of the way in:
#
#   baseline        no fault
#   rules-valid     a rules file edited (the watch reloads; the version must change)
#   rules-broken    a rules file broken (refused; the last good version must stay)
#   geoip-rename    the GeoIP file replaced by rename (reloaded)
#   geoip-truncate  the GeoIP file truncated in place (refused; the old one stays)
#   redis-kill      redis-server SIGKILLed, restarted PHASE/3 s later (decisions go on
#                   from the snapshot; /readyz says DISCONNECTED meanwhile; an override
#                   set before is still in force after)
#   sigterm         SIGTERM to marketgate (drain: /readyz 503 and `Connection: close`
#                   for drain_delay, then the listener closes and in-flight requests
#                   finish; connections refused after the close are counted apart)
#
# Per phase: requests answered, failed (non-2xx answers plus read/write/timeout socket
# errors), refused connections, p99 during the fault vs the baseline, and the phase's
# own check. Pass: no failed request in any phase and every check holds. Traffic stays
# on 127.0.0.1; the whole run takes about 7 x PHASE seconds plus the build.
#
#   bench/faults.sh [PHASE_SECONDS] [CONNECTIONS]      (defaults: 6 32)
#
# WORKERS (default 1) sets marketgate's workers; MARKETGATE_BIN a binary to use instead
# of building the release one.
# Needs wrk, redis-server, curl and python3 (Debian: apt-get install -y wrk redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
PHASE=${1:-6}
CONNS=${2:-32}
WORKERS=${WORKERS:-1}
for tool in wrk redis-server curl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 2; }
done

if [ -n "${MARKETGATE_BIN:-}" ]; then
    BIN=$MARKETGATE_BIN # e.g. to try the script itself on a debug build
else
    cargo build --release --quiet --bin marketgate
    BIN=${CARGO_TARGET_DIR:-target}/release/marketgate
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); APORT=$(free_port); RPORT=$(free_port)
TOKEN=faults-token-$RANDOM$RANDOM$RANDOM
tmp=$(mktemp -d)
mg_pid=; redis_pid=
cleanup() {
    for p in $mg_pid $redis_pid; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/regions" "$tmp/geo" "$tmp/redis" "$tmp/state"
cp regions/*.yaml "$tmp/regions/"
gzip -dc data/geoip/iptoasn-country.mmdb.gz >"$tmp/geo/country.mmdb"
cp "$tmp/geo/country.mmdb" "$tmp/country.mmdb.good"

start_redis() {
    redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$tmp/redis" --save "" \
        --appendonly yes --appendfsync always >>"$tmp/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 100); do
        redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "redis-server did not start" >&2; exit 1
}
start_marketgate() {
    "$BIN" serve --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$APORT" \
        --admin-token "$TOKEN" --workers "$WORKERS" --trusted-proxy 127.0.0.1/32 \
        --regions "$tmp/regions" --geoip "$tmp/geo/country.mmdb" --state-dir "$tmp/state" \
        --redis "redis://127.0.0.1:$RPORT" --reload-debounce 100ms --drain-delay 1s \
        --log-format json >>"$tmp/serve.log" 2>&1 &
    mg_pid=$!
    for _ in $(seq 200); do
        curl -fs "http://127.0.0.1:$PORT/readyz" 2>/dev/null | grep -q 'in sync' && return 0
        sleep 0.05
    done
    echo "marketgate did not start:" >&2; tail -5 "$tmp/serve.log" >&2; exit 1
}
start_redis
start_marketgate

URL="http://127.0.0.1:$PORT"
HDR="X-Forwarded-For: 8.8.8.8"
metric() { curl -fs "$URL/metrics" | awk -v m="$1" 'index($0, m) == 1 {print $NF}'; }
version() { curl -fs "$URL/v1/decision?country=US" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rules_version"])'; }
status_of() { curl -fs "$URL/v1/decision?country=$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
admin() { curl -s -o /dev/null -w '%{http_code}' -X "$1" "http://127.0.0.1:$APORT$2" \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' ${3:+-d "$3"}; }

# wrk for PHASE seconds in the background; its report lands in $tmp/wrk.$1.
load() { wrk -t1 -c"$CONNS" -d"${PHASE}s" --latency -H "$HDR" "$URL/v1/gate" >"$tmp/wrk.$1" 2>&1 & }
# "answered failed refused p99_ms" from a wrk report.
parse() {
    awk '
        / requests in / {answered = $1}
        /^  Non-2xx or 3xx responses:/ {non2xx = $NF}
        /Socket errors:/ {gsub(",", ""); connect = $4; read = $6; write = $8; timeout = $10}
        $1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v = v / 1000}
                     else if (v ~ /ms$/) {sub(/ms$/, "", v)}
                     else if (v ~ /s$/) {sub(/s$/, "", v); v = v * 1000}; p99 = v}
        END {printf "%d %d %d %.2f\n", answered, non2xx + read + write + timeout, connect, p99}
    ' "$1"
}

rows=()
failed_total=0
checks_ok=1
# record NAME CHECK: a table row from $tmp/wrk.NAME (or $tmp/line.NAME, already parsed).
record() {
    local name=$1 check=$2 answered failed refused p99 line
    if [ -f "$tmp/line.$name" ]; then line=$(cat "$tmp/line.$name"); else line=$(parse "$tmp/wrk.$name"); fi
    read -r answered failed refused p99 <<<"$line"
    failed_total=$((failed_total + failed))
    case $check in ok*) ;; *) checks_ok=0 ;; esac
    rows+=("$(printf '| %-14s | %9s | %6s | %7s | %8s | %8s | %s |' \
        "$name" "$answered" "$failed" "$refused" "$p99" "${base_p99:-$p99}" "$check")")
}

# Warm up, then the baseline.
wrk -t1 -c8 -d1s -H "$HDR" "$URL/v1/gate" >/dev/null
load baseline; wait "$!"
read -r _ _ _ base_p99 <<<"$(parse "$tmp/wrk.baseline")"
record baseline "ok"

third=$(awk -v p="$PHASE" 'BEGIN {print p / 3}')

# A valid rules change: the version must change, decisions go on.
v0=$(version)
load rules-valid; w=$!
sleep "$third"
printf '\n# edited under load\n' >>"$tmp/regions/in.yaml"
wait "$w"
v1=$(version)
[ "$v1" != "$v0" ] && c="ok: version ${v0:7:12} -> ${v1:7:12}" || c="FAILED: version unchanged"
record rules-valid "$c"

# A broken rules file: refused, the last good version stays.
fail0=$(metric 'marketgate_rules_reload_total{result="failure"}')
cp "$tmp/regions/gb.yaml" "$tmp/gb.yaml.good"
load rules-broken; w=$!
sleep "$third"
printf 'jurisdiction: GB\nstatus: sideways\n' >"$tmp/regions/gb.yaml"
wait "$w"
v2=$(version); fail1=$(metric 'marketgate_rules_reload_total{result="failure"}')
if [ "$v2" = "$v1" ] && [ "$fail1" -gt "$fail0" ]; then c="ok: refused, kept ${v1:7:12}"; else c="FAILED: version $v2, failures $fail0 -> $fail1"; fi
record rules-broken "$c"
cp "$tmp/gb.yaml.good" "$tmp/regions/gb.yaml"
sleep 1

# The GeoIP file replaced by rename, as geoipupdate does.
ok0=$(metric 'marketgate_geoip_reload_total{result="success"}')
load geoip-rename; w=$!
sleep "$third"
cp "$tmp/country.mmdb.good" "$tmp/geo/.country.mmdb.new"
mv "$tmp/geo/.country.mmdb.new" "$tmp/geo/country.mmdb"
wait "$w"
# The new file is read and verified in full before the swap: give it a bounded time.
for _ in $(seq 100); do
    ok1=$(metric 'marketgate_geoip_reload_total{result="success"}')
    [ "$ok1" -gt "$ok0" ] && break
    sleep 0.2
done
[ "$ok1" -gt "$ok0" ] && c="ok: reloaded ($ok0 -> $ok1)" || c="FAILED: not reloaded"
record geoip-rename "$c"

# The GeoIP file truncated in place: refused, the database in service stays.
gf0=$(metric 'marketgate_geoip_reload_total{result="failure"}')
load geoip-truncate; w=$!
sleep "$third"
truncate -s 4096 "$tmp/geo/country.mmdb"
wait "$w"
for _ in $(seq 100); do
    gf1=$(metric 'marketgate_geoip_reload_total{result="failure"}')
    [ "$gf1" -gt "$gf0" ] && break
    sleep 0.2
done
us=$(curl -s -o /dev/null -w '%{http_code}' -H "$HDR" "$URL/v1/gate")
if [ "$gf1" -gt "$gf0" ] && [ "$us" = 200 ]; then c="ok: refused, old database answers"; else c="FAILED: failures $gf0 -> $gf1, gate $us"; fi
record geoip-truncate "$c"
cp "$tmp/country.mmdb.good" "$tmp/geo/.country.mmdb.new"
mv "$tmp/geo/.country.mmdb.new" "$tmp/geo/country.mmdb"
ok0=$(metric 'marketgate_geoip_reload_total{result="success"}')
for _ in $(seq 100); do
    [ "$(metric 'marketgate_geoip_reload_total{result="success"}')" -gt "$ok0" ] && break
    sleep 0.2
done

# Redis killed and restarted: decisions go on from the snapshot; an override set before
# is still in force after; a write during the outage is refused (503) by design.
put=$(admin PUT /admin/v1/overrides/BR '{"status":"withdrawn","reason":"faults drill","actor":"faults.sh"}')
load redis-kill; w=$!
sleep "$third"
kill -9 "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
sleep 0.5
down=$(curl -fs "$URL/readyz" | grep -c DISCONNECTED || true)
during=$(admin PUT /admin/v1/overrides/AR '{"status":"withdrawn","reason":"during outage"}')
sleep "$third"
start_redis
wait "$w"
synced=0
for _ in $(seq 100); do
    curl -fs "$URL/readyz" | grep -q 'in sync' && { synced=1; break; }
    sleep 0.1
done
br=$(status_of BR)
if [ "$put" = 200 ] && [ "$down" = 1 ] && [ "$during" = 503 ] && [ "$synced" = 1 ] && [ "$br" = withdrawn ]; then
    c="ok: readyz DISCONNECTED then in sync, write during outage 503, override kept"
else
    c="FAILED: put $put, readyz-down $down, write-during $during, synced $synced, BR $br"
fi
record redis-kill "$c"

# SIGTERM under load: drain, close, exit 0; then a restart still has the override. wrk
# counts a refused reconnect as a read or write error, so this phase uses
# bench/drain_client.py, which tells a request lost on an accepted connection (a
# failure) from a new connection refused after the listener closed (by design).
python3 bench/drain_client.py 127.0.0.1 "$PORT" "$PHASE" 8 "$tmp/drain.ready" \
    >"$tmp/line.sigterm" 2>"$tmp/drain.err" &
w=$!
for _ in $(seq 100); do [ -f "$tmp/drain.ready" ] && break; sleep 0.05; done
sleep "$third"
kill -TERM "$mg_pid"
rc=0; wait "$mg_pid" || rc=$?
mg_pid=
wait "$w"
start_marketgate
br=$(status_of BR)
read -r _ _ refused _ <"$tmp/line.sigterm"
if [ "$rc" = 0 ] && [ "$br" = withdrawn ]; then
    c="ok: exit 0; $refused new connections refused after the close (by design); override kept across restart"
else
    c="FAILED: exit $rc, BR after restart $br"
fi
record sigterm "$c"

if grep -q '"level":"ERROR"' "$tmp/serve.log"; then
    errors=$(grep -c '"level":"ERROR"' "$tmp/serve.log")
else
    errors=0
fi

printf '\nworkers=%s connections=%s phase=%ss, wrk -t1 on GET /v1/gate (US client, 200 expected; sigterm: drain_client.py, 8 keep-alive clients)\n\n' "$WORKERS" "$CONNS" "$PHASE"
echo '| phase          |  answered | failed | refused |  p99 ms  | base p99 | check |'
echo '| -------------- | --------: | -----: | ------: | -------: | -------: | ----- |'
printf '%s\n' "${rows[@]}"
printf '\nerror log lines (refused rules and GeoIP files log at error by design): %s\n' "$errors"
if [ "$failed_total" = 0 ] && [ "$checks_ok" = 1 ]; then
    echo "faults: PASS (no failed request, every check held)"
else
    echo "faults: FAIL ($failed_total failed requests)"
    exit 1
fi
