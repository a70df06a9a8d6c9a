#!/usr/bin/env bash
# The benchmark suite of marketgate, in one run on one machine (docs/BENCHMARKS.md).
#
#   bench/run.sh [all|load|reload|inprocess|profile] [--quick]
#
# load       `GET /v1/gate` of `marketgate serve` for a served, a limited and a withdrawn
#            client address, next to the floor (examples/empty200.rs, an actix-web handler
#            answering an empty 200) and to nginx with the geoip2 module and a `map`
#            answering 200 or 451 for the same addresses from the same GeoIP file. Every
#            server gets one worker, pinned to CPU $SERVER_CPU; wrk runs on $LOAD_CPU with
#            the same threads, connections and duration for all. Rounds alternate the
#            servers (noise from other processes hits all alike); the median round counts.
#            Also the resident memory of each server after its load.
# reload     A mixed load over the three addresses while rules reloads (file edit, SIGHUP,
#            admin API) and GeoIP swaps (file replaced by rename) run: counts every answer
#            by jurisdiction and status, socket errors and reload results.
# inprocess  The criterion benches: GeoIP lookup and decide next to the bare maxminddb
#            lookup (benches/geoip.rs) and decision and reload cost as rules grow
#            (benches/scaling.rs), with their ratios.
# all        load + reload + inprocess (the default): about 4-5 minutes once built.
# profile    Instructions per request under callgrind for the floor and the gate (not in
#            `all`; independent of machine noise). Needs valgrind.
#
# --quick    short runs (1 round of 3 s, short criterion times) to check the script.
#
# Settings (environment): CONNS (64), DURATION (8, seconds per wrk run), ROUNDS (3),
# WRK_THREADS (1), SERVER_CPU (0), LOAD_CPU (1), RELOAD_DURATION (10), NGINX (1; 0
# skips nginx), BUILD (1; 0 uses the release binaries already built), OUT_DIR ($CARGO_TARGET_DIR/bench or target/bench), and the client
# addresses SERVED_IP, LIMITED_IP, WITHDRAWN_IP.
#
# Writes $OUT_DIR/report.md (and prints it). Exits 1 when a check fails (a wrong answer,
# a socket error, a failed reload); a missed performance target is reported, not fatal.
# Missing tools (wrk, nginx and its geoip2 module, valgrind) are installed with apt-get
# when running as root; nginx is skipped with a message where that is impossible.
# Traffic stays on 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=all
QUICK=0
for arg in "$@"; do
    case "$arg" in
        all | load | reload | inprocess | profile) MODE=$arg ;;
        --quick) QUICK=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) echo "bench: unknown argument \`$arg\` (see --help)" >&2; exit 2 ;;
    esac
done

CONNS=${CONNS:-64}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
WRK_THREADS=${WRK_THREADS:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
RELOAD_DURATION=${RELOAD_DURATION:-10}
PROFILE_DURATION=${PROFILE_DURATION:-4}
NGINX=${NGINX:-1}
CRITERION_ARGS=(--warm-up-time 1 --measurement-time 3)
if [ "$QUICK" = 1 ]; then
    DURATION=3 ROUNDS=1 RELOAD_DURATION=5 PROFILE_DURATION=2
    CRITERION_ARGS=(--warm-up-time 0.5 --measurement-time 1)
fi
# A DE network (served), IN (limited: `payments` off), RU (withdrawn: a red line), in
# the bundled database and the example rules in regions/.
SERVED_IP=${SERVED_IP:-5.9.0.1}
LIMITED_IP=${LIMITED_IP:-14.139.0.1}
WITHDRAWN_IP=${WITHDRAWN_IP:-194.67.1.1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT_DIR=${OUT_DIR:-$TARGET_DIR/bench}
REPORT=$OUT_DIR/report.md
GEOIP_GZ=$ROOT/data/geoip/iptoasn-country.mmdb.gz

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
FAILED=()
fail_check() { FAILED+=("$*"); log "CHECK FAILED: $*"; }

# --- processes: everything started here is recorded and stopped on exit -------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/marketgate-bench.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID: stop one process started here, and forget it.
stop() {
    local p=$1 keep=() q
    kill -INT "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    PIDS=("${keep[@]}")
}

# A port nothing listens on (the kernel's ephemeral range is avoided).
free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

# wait_up URL PID NAME: until URL answers 2xx, at most 30 s (and not after PID died).
wait_up() {
    for _ in $(seq 300); do
        curl -fs -o /dev/null "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited at start (see $TMP/$3.log): $(tail -n 5 "$TMP/$3.log" 2>/dev/null)"
        sleep 0.1
    done
    die "$3 not up at $1 after 30 s"
}

# --- tools ---------------------------------------------------------------------------

APT_UPDATED=0
apt_install() {
    [ "$(id -u)" = 0 ] && have apt-get || return 1
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq >/dev/null || return 1
        APT_UPDATED=1
    fi
    log "installing $* (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
need() { # COMMAND PACKAGE
    have "$1" || apt_install "$2" || die "$1 is missing and cannot be installed here: apt-get install $2"
}
NGINX_BIN=
GEOIP2_MODULE=
NGINX_SKIPPED=
find_nginx() {
    [ "$NGINX" = 1 ] || { NGINX_SKIPPED="NGINX=0"; return; }
    local m=/usr/lib/nginx/modules/ngx_http_geoip2_module.so
    if ! { have nginx || [ -x /usr/sbin/nginx ]; } || [ ! -f "$m" ]; then
        apt_install nginx libnginx-mod-http-geoip2 || true
    fi
    NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
    if [ ! -x "$NGINX_BIN" ]; then
        NGINX_SKIPPED="nginx is not installed and cannot be installed here (apt-get install nginx libnginx-mod-http-geoip2)"
    elif [ ! -f "$m" ]; then
        NGINX_SKIPPED="nginx's geoip2 module ($m) is not installed and cannot be installed here (apt-get install libnginx-mod-http-geoip2)"
    elif ! "$NGINX_BIN" -V 2>&1 | grep -q with-http_realip_module; then
        NGINX_SKIPPED="$NGINX_BIN lacks the realip module"
    else
        GEOIP2_MODULE=$m
        return
    fi
    NGINX_BIN=
    log "SKIPPING nginx: $NGINX_SKIPPED"
}

NCPU=$(nproc)
if [ "$NCPU" -lt 2 ]; then
    die "pinning needs 2 CPUs (server and load tool apart); this machine has $NCPU"
fi
need curl curl
need taskset util-linux
case "$MODE" in all | load | reload | profile) need wrk wrk ;; esac
case "$MODE" in all | load | reload) need python3 python3-minimal ;; esac
[ "$MODE" = profile ] && need valgrind valgrind
case "$MODE" in all | load) find_nginx ;; esac
need cargo cargo
CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$OUT_DIR"

# --- build ---------------------------------------------------------------------------

if [ "${BUILD:-1}" = 1 ]; then
    log "building release binaries (cargo build --release)"
    cargo build --release --locked --quiet --bin marketgate --example empty200
fi
BIN=$TARGET_DIR/release/marketgate
EMPTY_BIN=$TARGET_DIR/release/examples/empty200
GEOIP_FILE=$TMP/geo/iptoasn-country.mmdb
mkdir -p "$TMP/geo"
gunzip -c "$GEOIP_GZ" >"$GEOIP_FILE"

# --- measuring -----------------------------------------------------------------------

# CPU time (clock ticks) used so far by the given processes, all threads.
cpu_ticks() {
    local t=0 p s
    for p in "$@"; do
        s=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        t=$((t + $(awk '{print $12 + $13}' <<<"$s")))
    done
    echo "$t"
}
children() { cat "/proc/$1/task/$1/children" 2>/dev/null || true; }
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status" 2>/dev/null; }

# wrk_to_ms VALUE: wrk's 1.23ms / 456.78us / 1.20s as milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v) }
        else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 }
        printf "%.3f", v }'
}

# run_wrk NAME URL CLIENT_IP EXPECT PIDS...: one wrk run; appends
# "NAME rps p50_ms p99_ms server_cpu_pct cpu_us_per_req wrk_cpu_pct socket_errors" to
# $TMP/rounds. EXPECT is the status every answer must have (200 or 451).
run_wrk() {
    local name=$1 url=$2 ip=$3 expect=$4
    shift 4
    local out t0 t1 times
    t0=$(cpu_ticks "$@")
    out=$(
        TIMEFORMAT='%U %S'
        { time timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" \
            wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency \
            -H "X-Forwarded-For: $ip" "$url" 2>&1; } 2>"$TMP/wrk.time"
    ) || die "wrk failed against $name: $out"
    t1=$(cpu_ticks "$@")
    times=$(tail -n 1 "$TMP/wrk.time")
    printf '%s\n' "$out" >"$TMP/wrk-$name.last"
    awk -v name="$name" -v expect="$expect" -v ticks=$((t1 - t0)) -v hz="$CLK_TCK" \
        -v times="$times" -v dur="$DURATION" '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 }
            return v + 0
        }
        $2 == "requests" && $3 == "in" { total = $1 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        /^  Socket errors:/ { gsub(/,/, ""); errors = $4 + $6 + $8 + $10 }
        /^  Non-2xx or 3xx responses:/ { non2xx = $5 }
        END {
            if (total == "" || rps == "") { print "unparsable wrk output" > "/dev/stderr"; exit 3 }
            bad = (expect == 200) ? non2xx + 0 : total - non2xx
            if (bad > 0) { printf "%d of %d answers were not %s\n", bad, total, expect > "/dev/stderr"; exit 4 }
            split(times, t, " ")
            cpu = ticks / hz
            printf "%s %.0f %.3f %.3f %.0f %.2f %.0f %d\n", name, rps, p50, p99,
                100 * cpu / dur, 1e6 * cpu / total, 100 * (t[1] + t[2]) / dur, errors + 0
        }' <<<"$out" >>"$TMP/rounds" || die "wrong answers from $name (wrk output in $TMP/wrk-$name.last): $out"
}

# check_answer NAME URL CLIENT_IP STATUS MARKET: one request, exact status and, for
# marketgate, its market status header.
check_answer() {
    local name=$1 url=$2 ip=$3 status=$4 market=$5 head code
    head=$(curl -s -o /dev/null -D - -H "X-Forwarded-For: $ip" "$url") || die "$name: no answer"
    code=$(awk 'NR == 1 {print $2}' <<<"$head")
    [ "$code" = "$status" ] || die "$name: $ip answered $code, expected $status"
    if [ -n "$market" ]; then
        grep -qi "^x-market.*status: $market" <<<"$head" ||
            die "$name: $ip is not $market: $(tr -d '\r' <<<"$head" | tr '\n' ' ')"
    fi
}

# --- servers -------------------------------------------------------------------------

GATE_PID= GATE_PORT= EMPTY_PID= EMPTY_PORT= NGINX_PID= NGINX_PORT=
start_gate() { # extra args...
    GATE_PORT=$(free_port)
    taskset -c "$SERVER_CPU" "$BIN" serve --listen "127.0.0.1:$GATE_PORT" --workers 1 \
        --trusted-proxy 127.0.0.1/32 --geoip "$GEOIP_FILE" --state-dir "$TMP/state-gate" \
        --log-level warn "$@" >"$TMP/gate.log" 2>&1 &
    GATE_PID=$!
    PIDS+=("$GATE_PID")
    wait_up "http://127.0.0.1:$GATE_PORT/readyz" "$GATE_PID" gate
}
start_empty() {
    EMPTY_PORT=$(free_port)
    taskset -c "$SERVER_CPU" "$EMPTY_BIN" "127.0.0.1:$EMPTY_PORT" 1 >"$TMP/empty.log" 2>&1 &
    EMPTY_PID=$!
    PIDS+=("$EMPTY_PID")
    wait_up "http://127.0.0.1:$EMPTY_PORT/" "$EMPTY_PID" empty
}

# The nginx map: the market status of every country as the rules in service decide it
# (read from the admin API of a marketgate started for that), so that nginx answers
# exactly what marketgate answers.
write_nginx_map() {
    local port admin token pid
    port=$(free_port)
    admin=$(free_port)
    token=bench-$RANDOM$RANDOM$RANDOM$RANDOM
    "$BIN" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
        --admin-token "$token" --workers 1 --state-dir "$TMP/state-map" --log-level warn \
        >"$TMP/map.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_up "http://127.0.0.1:$port/readyz" "$pid" map
    curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$admin/admin/v1/rules" |
        python3 -c '
import json, sys
rows = json.load(sys.stdin)["jurisdictions"]
for r in rows:
    if "status" in r and r["status"] != "served":
        print(r["jurisdiction"], r["status"] + ";")
' >"$1" || die "cannot read the rules table for the nginx map"
    stop "$pid"
    grep -q '^RU withdrawn;' "$1" || die "nginx map: RU is not withdrawn: $(cat "$1")"
}

start_nginx() {
    local d=$TMP/nginx
    mkdir -p "$d/tmp"
    NGINX_PORT=$(free_port)
    write_nginx_map "$d/market.map"
    cat >"$d/nginx.conf" <<EOF
# One worker, like the other servers; no access log, like marketgate at --log-level warn.
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
load_module $GEOIP2_MODULE;
events { worker_connections 4096; }
http {
    access_log off;
    # actix keeps a connection open for any number of requests; nginx's default closes
    # it after 1000, which would make wrk reconnect and nginx pay for it.
    keepalive_requests 100000000;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    # The client behind the trusted loopback proxy, as marketgate is configured.
    set_real_ip_from 127.0.0.1/32;
    real_ip_header X-Forwarded-For;
    # The same file marketgate reads; the bundled database is flat (country_code).
    geoip2 $GEOIP_FILE {
        \$market_country default=unknown country_code;
    }
    map \$market_country \$market_status {
        default served;
        include $d/market.map;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            add_header X-Market-Status \$market_status always;
            if (\$market_status = withdrawn) {
                return 451;
            }
            return 200;
        }
    }
}
EOF
    taskset -c "$SERVER_CPU" "$NGINX_BIN" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" \
        >"$TMP/nginx.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_up "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" nginx
}

# --- load ------------------------------------------------------------------------------

median_round() { # NAME -> the median round of NAME by req/s
    awk -v n="$1" '$1 == n' "$TMP/rounds" | sort -n -k2,2 | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}'
}

LOAD_MD=
load_bench() {
    : >"$TMP/rounds"
    start_empty
    start_gate
    local gate=http://127.0.0.1:$GATE_PORT/v1/gate empty=http://127.0.0.1:$EMPTY_PORT/
    check_answer gate "$gate" "$SERVED_IP" 200 served
    check_answer gate "$gate" "$LIMITED_IP" 200 limited
    check_answer gate "$gate" "$WITHDRAWN_IP" 451 withdrawn
    check_answer empty "$empty" "$SERVED_IP" 200 ""
    local targets=(
        "empty|$empty|$SERVED_IP|200|$EMPTY_PID"
        "gate-served|$gate|$SERVED_IP|200|$GATE_PID"
        "gate-limited|$gate|$LIMITED_IP|200|$GATE_PID"
        "gate-withdrawn|$gate|$WITHDRAWN_IP|451|$GATE_PID"
    )
    local nginx_pids=
    if [ -n "$NGINX_BIN" ]; then
        start_nginx
        nginx_pids="$NGINX_PID $(children "$NGINX_PID")"
        local ng=http://127.0.0.1:$NGINX_PORT/
        check_answer nginx "$ng" "$SERVED_IP" 200 served
        check_answer nginx "$ng" "$LIMITED_IP" 200 limited
        check_answer nginx "$ng" "$WITHDRAWN_IP" 451 withdrawn
        targets+=(
            "nginx-served|$ng|$SERVED_IP|200|$nginx_pids"
            "nginx-limited|$ng|$LIMITED_IP|200|$nginx_pids"
            "nginx-withdrawn|$ng|$WITHDRAWN_IP|451|$nginx_pids"
        )
    fi
    local t name url ip expect pids
    log "warm-up: 1 s per target"
    for t in "${targets[@]}"; do
        IFS='|' read -r name url ip expect pids <<<"$t"
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s -H "X-Forwarded-For: $ip" "$url" >/dev/null
    done
    local r
    for r in $(seq "$ROUNDS"); do
        for t in "${targets[@]}"; do
            IFS='|' read -r name url ip expect pids <<<"$t"
            log "round $r/$ROUNDS: $name (${DURATION}s)"
            # shellcheck disable=SC2086 # pids is a list
            run_wrk "$name" "$url" "$ip" "$expect" $pids
        done
    done
    # Memory after the load: resident now and at peak.
    local mem="| server | VmRSS | VmHWM (peak) |"$'\n'"| --- | ---: | ---: |"
    mem+=$'\n'"| marketgate serve (full country database) | $(($(rss_kib "$GATE_PID" VmRSS) / 1024)) MiB | $(($(rss_kib "$GATE_PID" VmHWM) / 1024)) MiB |"
    mem+=$'\n'"| empty 200 (actix-web) | $(($(rss_kib "$EMPTY_PID" VmRSS) / 1024)) MiB | $(($(rss_kib "$EMPTY_PID" VmHWM) / 1024)) MiB |"
    if [ -n "$NGINX_BIN" ]; then
        local p rss=0 hwm=0
        for p in $nginx_pids; do
            rss=$((rss + $(rss_kib "$p" VmRSS))); hwm=$((hwm + $(rss_kib "$p" VmHWM)))
        done
        mem+=$'\n'"| nginx + geoip2 (master and worker) | $((rss / 1024)) MiB | $((hwm / 1024)) MiB |"
    fi
    GATE_RSS_MIB=$(($(rss_kib "$GATE_PID" VmRSS) / 1024))
    ((GATE_RSS_MIB < 100)) || fail_check "marketgate resident memory ${GATE_RSS_MIB} MiB (target < 100 MiB)"
    stop "$GATE_PID"; stop "$EMPTY_PID"
    [ -n "$NGINX_PID" ] && stop "$NGINX_PID"

    # The table: median round of each target, ratios to the floor and to nginx.
    local empty_rps
    empty_rps=$(median_round empty | awk '{print $2}')
    local table="| server | client | answer | req/s | p50 ms | p99 ms | server CPU | CPU µs/req | wrk CPU | vs empty 200 | vs nginx |"
    table+=$'\n'"| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    local targets_md="" row rps p50 p99 scpu cpureq wcpu errs who client answer vs_empty vs_nginx nginx_rps
    for name in empty gate-served gate-limited gate-withdrawn nginx-served nginx-limited nginx-withdrawn; do
        row=$(median_round "$name")
        [ -n "$row" ] || continue
        read -r _ rps p50 p99 scpu cpureq wcpu errs <<<"$row"
        case "$name" in
            empty) who="empty 200 (actix-web, the floor)" client="any" answer=200 ;;
            gate-*) who="marketgate /v1/gate" ;;
            nginx-*) who="nginx + geoip2 map" ;;
        esac
        case "$name" in
            *-served) client="DE $SERVED_IP" answer="200 served" ;;
            *-limited) client="IN $LIMITED_IP" answer="200 limited" ;;
            *-withdrawn) client="RU $WITHDRAWN_IP" answer=451 ;;
        esac
        vs_empty=$(awk -v a="$rps" -v b="$empty_rps" 'BEGIN {printf "%.1f%%", 100 * a / b}')
        vs_nginx=
        if [[ $name == gate-* ]]; then
            nginx_rps=$(median_round "nginx-${name#gate-}" | awk '{print $2}')
            [ -n "$nginx_rps" ] && vs_nginx=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN {printf "%.2fx", a / b}')
            local pct
            pct=$(awk -v a="$rps" -v b="$empty_rps" 'BEGIN {printf "%.1f", 100 * a / b}')
            targets_md+="- $who, $client: $pct% of the empty 200 (target ≥ 85%): $(awk -v p="$pct" 'BEGIN {print (p >= 85) ? "met" : "**missed**"}')"
            if [ -n "$vs_nginx" ]; then
                targets_md+="; ${vs_nginx} nginx (target ≥ 1.0x): $(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN {print (a >= b) ? "met" : "**missed**"}')"
            fi
            targets_md+="; p99 ${p99} ms (target < 5 ms): $(awk -v p="$p99" 'BEGIN {print (p < 5) ? "met" : "**missed**"}')"$'\n'
        fi
        ((errs == 0)) || fail_check "$name: $errs socket errors"
        table+=$'\n'"| $who | $client | $answer | $rps | $p50 | $p99 | $scpu% | $cpureq | $wcpu% | $vs_empty | $vs_nginx |"
    done
    [ -z "$NGINX_SKIPPED" ] || targets_md+="- nginx was SKIPPED: $NGINX_SKIPPED"$'\n'
    targets_md+="- marketgate resident memory after the load: ${GATE_RSS_MIB} MiB (target < 100 MiB): $( ((GATE_RSS_MIB < 100)) && echo met || echo '**missed**')"$'\n'
    LOAD_MD="## HTTP load: one worker each, pinned

wrk $(wrk -v 2>&1 | head -n 1 | awk '{print $2}'), $WRK_THREADS thread(s), $CONNS connections, ${DURATION} s per run, HTTP/1.1 keep-alive,
every request with \`X-Forwarded-For: <client>\` from the trusted loopback proxy. Servers on
CPU $SERVER_CPU, wrk on CPU $LOAD_CPU. $ROUNDS rounds alternating the servers; the median round (by req/s)
of each row is shown. \"server CPU\" is the CPU time the server used during the run (100% =
one core busy), \"CPU µs/req\" that time per answered request, \"wrk CPU\" the load tool's.

$table

All rounds (name req/s p50 p99 server-CPU% CPU-µs/req wrk-CPU% socket-errors):

\`\`\`text
$(cat "$TMP/rounds")
\`\`\`

Targets (design doc, \"Performance targets\"):

$targets_md
Memory after the load (\`/proc/PID/status\`):

$mem
"
}

# --- reload under load -----------------------------------------------------------------

RELOAD_MD=
reload_bench() {
    local d=$TMP/reload token port admin pid
    mkdir -p "$d/geo"
    cp -r "$ROOT/regions" "$d/regions"
    cp "$GEOIP_FILE" "$d/geo/geo.mmdb"
    token=bench-$RANDOM$RANDOM$RANDOM$RANDOM
    port=$(free_port)
    admin=$(free_port)
    taskset -c "$SERVER_CPU" "$BIN" serve --listen "127.0.0.1:$port" --workers 1 \
        --admin-listen "127.0.0.1:$admin" --admin-token "$token" \
        --regions "$d/regions" --geoip "$d/geo/geo.mmdb" --trusted-proxy 127.0.0.1/32 \
        --state-dir "$d/state" --log-level warn >"$TMP/reload.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_up "http://127.0.0.1:$port/readyz" "$pid" reload
    local url=http://127.0.0.1:$port/v1/gate

    # The triggers, one every 250 ms in turn, from 1 s after the load starts until 1 s
    # before it ends.
    (
        sleep 1
        local i=0 end=$((SECONDS + RELOAD_DURATION - 2))
        while ((SECONDS < end)); do
            case $((i % 4)) in
                0) # edit a rules file (atomically, as git and editors do): a new version
                    { cat "$ROOT/regions/_global.yaml"; echo "# bench reload $i"; } >"$d/regions/._global.yaml.new"
                    mv -f "$d/regions/._global.yaml.new" "$d/regions/_global.yaml"
                    echo edit ;;
                1) curl -fsS -o /dev/null -XPOST -H "Authorization: Bearer $token" \
                        "http://127.0.0.1:$admin/admin/v1/reload" && echo admin || echo admin-failed ;;
                2) kill -HUP "$pid" && echo sighup ;;
                3) # a GeoIP update as geoipupdate does it: a new file renamed over the old
                    cp "$GEOIP_FILE" "$d/geo/.geo.mmdb.new"
                    mv -f "$d/geo/.geo.mmdb.new" "$d/geo/geo.mmdb"
                    echo geoip-swap ;;
            esac
            i=$((i + 1))
            sleep 0.25
        done
    ) >"$d/triggers" 2>&1 &
    local trig=$!
    PIDS+=("$trig")
    log "reload under load: ${RELOAD_DURATION}s of mixed DE/IN/RU traffic with reloads and GeoIP swaps"
    local out
    out=$(BENCH_ADDRS="$SERVED_IP,$LIMITED_IP,$WITHDRAWN_IP" timeout $((RELOAD_DURATION + 30)) \
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${RELOAD_DURATION}s" --latency \
        -s "$ROOT/bench/mixed.lua" "$url" 2>&1) || die "wrk failed in the reload run: $out"
    wait "$trig" 2>/dev/null || true
    sleep 1 # let the last debounced reload finish
    local metrics
    metrics=$(curl -fsS "http://127.0.0.1:$port/metrics") || die "no metrics from the reload run"
    stop "$pid"
    local m_rules_ok m_rules_same m_rules_fail m_geo_ok m_geo_fail
    metric() { awk -v k="$1" '$1 == k {print $2 + 0; f = 1} END {if (!f) print 0}' <<<"$metrics"; }
    m_rules_ok=$(metric 'marketgate_rules_reload_total{result="success"}')
    m_rules_same=$(metric 'marketgate_rules_reload_total{result="unchanged"}')
    m_rules_fail=$(metric 'marketgate_rules_reload_total{result="failure"}')
    m_geo_ok=$(metric 'marketgate_geoip_reload_total{result="success"}')
    m_geo_fail=$(metric 'marketgate_geoip_reload_total{result="failure"}')
    local total errors answers unexpected=0 line j s n
    total=$(awk '$2 == "requests" && $3 == "in" {print $1}' <<<"$out")
    errors=$(awk '/^  Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' <<<"$out")
    errors=${errors:-0}
    answers="| client | jurisdiction | status | answers | expected |"$'\n'"| --- | --- | ---: | ---: | --- |"
    while read -r _ j s n; do
        local exp=no who=?
        case "$j $s" in
            "DE 200") exp=yes who=$SERVED_IP ;;
            "IN 200") exp=yes who=$LIMITED_IP ;;
            "RU 451") exp=yes who=$WITHDRAWN_IP ;;
        esac
        [ "$exp" = yes ] || unexpected=$((unexpected + n))
        answers+=$'\n'"| $who | $j | $s | $n | $exp |"
    done < <(grep '^answer ' <<<"$out" | sort -k2,3)
    local counts
    counts=$(sort "$d/triggers" | uniq -c | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')
    for j in DE IN RU; do
        grep -q "^answer $j " <<<"$out" || fail_check "reload run: no answer for $j"
    done
    ((unexpected == 0)) || fail_check "reload run: $unexpected unexpected answers"
    ((errors == 0)) || fail_check "reload run: $errors socket errors"
    ((m_rules_fail == 0 && m_geo_fail == 0)) || fail_check "reload run: failed reloads (rules $m_rules_fail, geoip $m_geo_fail)"
    ((m_rules_ok > 0)) || fail_check "reload run: no rules reload swapped a new version"
    ((m_geo_ok > 1)) || fail_check "reload run: no GeoIP swap happened"
    RELOAD_MD="## Reloads under load

${RELOAD_DURATION} s of wrk ($CONNS connections) cycling DE, IN and RU clients (\`bench/mixed.lua\`) against
one worker, while a trigger every 250 ms in turn edits a rules file (a new version, picked up by the
directory watch), calls \`POST /admin/v1/reload\`, sends SIGHUP (rules and GeoIP) and renames a
fresh copy of the GeoIP file over the old one (picked up by the GeoIP directory watch).

- triggers: $counts
- rules reloads (metrics): $m_rules_ok swapped, $m_rules_same unchanged, $m_rules_fail failed; GeoIP loads: $m_geo_ok (1 at start), $m_geo_fail failed
- requests: $total, $(awk -v r="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")" 'BEGIN {printf "%.0f req/s", r}'), p99 $(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")") ms; socket errors: $errors; unexpected answers: $unexpected (target: 0 failed requests: $( ((unexpected == 0 && errors == 0)) && echo met || echo '**missed**'))

$answers
"
}

# --- in-process ------------------------------------------------------------------------

INPROCESS_MD=
inprocess_bench() {
    log "building the criterion benches"
    cargo bench --locked --quiet --no-run --bench geoip --bench scaling 2>&1 | grep -v '^ *Executable' >&2 || true
    local b out
    INPROCESS_MD="## In-process (criterion, pinned to CPU $SERVER_CPU)
"
    for b in geoip scaling; do
        log "cargo bench --bench $b (pinned to CPU $SERVER_CPU)"
        out=$(taskset -c "$SERVER_CPU" cargo bench --locked --quiet --bench "$b" -- "${CRITERION_ARGS[@]}" 2>&1) ||
            die "cargo bench --bench $b failed: $out"
        printf '%s\n' "$out" >"$OUT_DIR/criterion-$b.txt"
        # Each bench ends with its summary in markdown after a marker line.
        INPROCESS_MD+=$'\n'"$(sed -n '/^<!-- summary -->$/,$p' <<<"$out" | sed '1d')"$'\n'
        if grep -q 'target.*\*\*missed\*\*' <<<"$out"; then
            log "in-process target missed (see the report)"
        fi
    done
}

# --- profile ---------------------------------------------------------------------------

PROFILE_MD=
profile_bench() {
    need callgrind_control valgrind
    local rows="| server | client | instructions per request | requests measured |"$'\n'"| --- | --- | ---: | ---: |"
    local t name ip cmd port pid out n ir
    for t in "empty|$SERVED_IP" "gate|$SERVED_IP" "gate|$LIMITED_IP" "gate|$WITHDRAWN_IP"; do
        IFS='|' read -r name ip <<<"$t"
        port=$(free_port)
        if [ "$name" = empty ]; then
            cmd=("$EMPTY_BIN" "127.0.0.1:$port" 1)
            url=http://127.0.0.1:$port/
        else
            cmd=("$BIN" serve --listen "127.0.0.1:$port" --workers 1 --trusted-proxy 127.0.0.1/32
                --geoip "$GEOIP_FILE" --state-dir "$TMP/state-profile" --log-level warn)
            url=http://127.0.0.1:$port/v1/gate
        fi
        taskset -c "$SERVER_CPU" valgrind --tool=callgrind --instr-atstart=no \
            --callgrind-out-file="$TMP/callgrind.$name.%p" "${cmd[@]}" >"$TMP/profile.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        wait_up "$url" "$pid" profile
        taskset -c "$LOAD_CPU" wrk -t1 -c4 -d1s -H "X-Forwarded-For: $ip" "$url" >/dev/null
        callgrind_control -z "$pid" >/dev/null
        callgrind_control -i on "$pid" >/dev/null
        out=$(taskset -c "$LOAD_CPU" wrk -t1 -c4 -d"${PROFILE_DURATION}s" -H "X-Forwarded-For: $ip" "$url")
        callgrind_control -i off "$pid" >/dev/null
        callgrind_control -d "$pid" >/dev/null
        stop "$pid"
        n=$(awk '$2 == "requests" && $3 == "in" {print $1}' <<<"$out")
        # The dump taken with -d (the one with counts; the dump at exit is empty).
        local f
        f=$(grep -l -E '^totals: [1-9]' "$TMP"/callgrind."$name"."$pid"* | head -n 1 || true)
        [ -n "$f" ] || die "callgrind recorded nothing for $name"
        ir=$(awk -F': ' '/^totals:/ {print $2; exit}' "$f")
        callgrind_annotate --inclusive=yes "$f" 2>/dev/null | head -n 80 >"$OUT_DIR/profile-$name-$ip-inclusive.txt" || true
        callgrind_annotate "$f" 2>/dev/null | head -n 80 >"$OUT_DIR/profile-$name-$ip-self.txt" || true
        rm -f "$TMP"/callgrind."$name"."$pid"*
        rows+=$'\n'"| $name | $ip | $((ir / n)) | $n |"
        log "profile $name $ip: $((ir / n)) instructions per request"
    done
    PROFILE_MD="## Instructions per request (callgrind)

One worker under \`valgrind --tool=callgrind\`, counting only during ${PROFILE_DURATION} s of wrk
(4 connections) after a warm-up; the whole process (all threads) divided by the answers.
Annotated profiles: \`$OUT_DIR/profile-*.txt\`.

$rows
"
}

# --- report ----------------------------------------------------------------------------

LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T0=$SECONDS
case "$MODE" in
    all) load_bench; reload_bench; inprocess_bench ;;
    load) load_bench ;;
    reload) reload_bench ;;
    inprocess) inprocess_bench ;;
    profile) profile_bench ;;
esac

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit+=" (with uncommitted changes)"
{
    echo "# marketgate benchmark report"
    echo
    echo "- run: \`bench/run.sh $MODE$([ "$QUICK" = 1 ] && echo ' --quick')\` at $STARTED, $((SECONDS - T0)) s, commit $commit"
    echo "- machine: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $NCPU CPUs, $(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r); load average at start: $LOAD_AT_START"
    echo "- $(rustc -V 2>/dev/null), release profile (thin LTO)$([ -n "$NGINX_BIN" ] && echo "; $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //') with libnginx-mod-http-geoip2")"
    echo "- GeoIP: data/geoip/iptoasn-country.mmdb.gz (bundled, flat country database), gunzipped; every server reads the same file"
    echo
    [ -n "$LOAD_MD" ] && printf '%s\n' "$LOAD_MD"
    [ -n "$RELOAD_MD" ] && printf '%s\n' "$RELOAD_MD"
    [ -n "$INPROCESS_MD" ] && printf '%s\n' "$INPROCESS_MD"
    [ -n "$PROFILE_MD" ] && printf '%s\n' "$PROFILE_MD"
    if ((${#FAILED[@]})); then
        echo "## FAILED CHECKS"
        echo
        printf -- '- %s\n' "${FAILED[@]}"
    fi
} >"$REPORT"
cat "$REPORT"
log "report written to $REPORT"
((${#FAILED[@]} == 0)) || exit 1
