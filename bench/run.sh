#!/usr/bin/env bash
# The benchmark suite of marketgate, in one run on one machine (docs/BENCHMARKS.md).
#
#   bench/run.sh [all|load|reload|inprocess|profile] [--quick]
#
# load       `GET /v1/gate` of `marketgate serve` for a served, a limited and a withdrawn
#            client address, in two pairs: marketgate as the README starts it (request
#            log on, at info, to stderr, here appended to a file) beside nginx with the
#            geoip2 module, a `map` answering 200 or 451 for the same addresses from the
#            same GeoIP file and its default access log to a file; and quiet marketgate
#            (`--log-level warn`) beside nginx without an access log. Next to the floor
#            (examples/empty200.rs, an actix-web handler answering an empty 200). Every
#            server gets one worker, pinned to CPU $SERVER_CPU; wrk runs on $LOAD_CPU with
#            the same threads, connections and duration for all. Rounds alternate the
#            servers (noise from other processes hits all alike); the median round counts.
#            Log lines written per answer are counted; also the resident memory of each
#            server after its load.
# reload     A mixed load over the three addresses while rules reloads (file edit, SIGHUP,
#            admin API) and GeoIP swaps (file replaced by rename) run: counts every answer
#            by jurisdiction and status, socket errors and reload results.
# inprocess  The criterion benches: GeoIP lookup and decide next to the bare maxminddb
#            lookup (benches/geoip.rs) and decision and reload cost as rules grow
#            (benches/scaling.rs), with their ratios.
# all        load + reload + inprocess (the default): about 8 minutes once built.
# profile    Instructions per request under callgrind for the floor and the gate, with the
#            request log on (the default) and quiet (not in `all`; independent of machine
#            noise). Needs valgrind.
#
# --quick    the shortest runs (1 round of 2 s, no warm-up, short criterion times): checks
#            the script end to end, measures nothing.
#
# Settings (environment): CONNS (64), DURATION (8, seconds per wrk run), ROUNDS (3),
# WRK_THREADS (1), SERVER_CPU (0), LOAD_CPU (1), RELOAD_DURATION (10), NGINX (1; 0
# skips nginx), BUILD (1; 0 uses the release binaries already built), MARKETGATE_BIN (the
# binary to measure; default the release build), OUT_DIR ($CARGO_TARGET_DIR/bench or
# target/bench), and the client addresses SERVED_IP, LIMITED_IP, WITHDRAWN_IP.
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
WARMUP=1
CRITERION_ARGS=(--warm-up-time 1 --measurement-time 3)
if [ "$QUICK" = 1 ]; then
    DURATION=2 ROUNDS=1 RELOAD_DURATION=5 PROFILE_DURATION=1 WARMUP=0
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
BIN=${MARKETGATE_BIN:-$TARGET_DIR/release/marketgate}
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

# run_wrk NAME URL CLIENT_IP EXPECT LOGFILE PIDS...: one wrk run; appends
# "NAME rps p50_ms p99_ms server_cpu_pct cpu_us_per_req wrk_cpu_pct socket_errors
# log_lines_per_answer" to $TMP/rounds. EXPECT is the status every answer must have (200
# or 451). LOGFILE is the file the server logs requests to (emptied before the run, its
# lines counted after it), or - for none.
run_wrk() {
    local name=$1 url=$2 ip=$3 expect=$4 logfile=$5
    shift 5
    local out t0 t1 times loglines=-
    [ "$logfile" = - ] || : >"$logfile"
    t0=$(cpu_ticks "$@")
    out=$(
        TIMEFORMAT='%U %S'
        { time timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" \
            wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency \
            -H "X-Forwarded-For: $ip" "$url" 2>&1; } 2>"$TMP/wrk.time"
    ) || die "wrk failed against $name: $out"
    t1=$(cpu_ticks "$@")
    if [ "$logfile" != - ]; then
        # marketgate writes its buffered lines at least every 250 ms.
        sleep 0.6
        loglines=$(wc -l <"$logfile")
        : >"$logfile"
    fi
    times=$(tail -n 1 "$TMP/wrk.time")
    printf '%s\n' "$out" >"$TMP/wrk-$name.last"
    awk -v name="$name" -v expect="$expect" -v ticks=$((t1 - t0)) -v hz="$CLK_TCK" \
        -v times="$times" -v dur="$DURATION" -v loglines="$loglines" '
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
            printf "%s %.0f %.3f %.3f %.0f %.2f %.0f %d %s\n", name, rps, p50, p99,
                100 * cpu / dur, 1e6 * cpu / total, 100 * (t[1] + t[2]) / dur, errors + 0,
                (loglines == "-") ? "-" : sprintf("%.2f", loglines / total)
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

GATE_PID= GATE_PORT= EMPTY_PID= EMPTY_PORT= NGINX_PID= NGINX_PORT= NGINX_QUIET_PORT=
# start_gate NAME [ARGS...]: marketgate with one worker, the trusted loopback proxy and
# the bench's GeoIP file, plus ARGS; its stdout and stderr appended to $TMP/NAME.log (the
# request log, when on). Sets GATE_PID and GATE_PORT.
start_gate() {
    local name=$1
    shift
    GATE_PORT=$(free_port)
    taskset -c "$SERVER_CPU" "$BIN" serve --listen "127.0.0.1:$GATE_PORT" --workers 1 \
        --trusted-proxy 127.0.0.1/32 --geoip "$GEOIP_FILE" --state-dir "$TMP/state-$name" \
        "$@" >>"$TMP/$name.log" 2>&1 &
    GATE_PID=$!
    PIDS+=("$GATE_PID")
    wait_up "http://127.0.0.1:$GATE_PORT/readyz" "$GATE_PID" "$name"
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

# One nginx, one worker, two servers: NGINX_PORT with nginx's default access log (the
# combined format, unbuffered) to $TMP/nginx/access.log, like marketgate's default request
# log; NGINX_QUIET_PORT without one, like marketgate at --log-level warn.
start_nginx() {
    local d=$TMP/nginx
    mkdir -p "$d/tmp"
    NGINX_PORT=$(free_port)
    NGINX_QUIET_PORT=$(free_port)
    write_nginx_map "$d/market.map"
    cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
load_module $GEOIP2_MODULE;
events { worker_connections 4096; }
http {
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
        # What an nginx without an access_log line writes (logs/access.log, combined).
        access_log $d/access.log;
        location / {
            add_header X-Market-Status \$market_status always;
            if (\$market_status = withdrawn) {
                return 451;
            }
            return 200;
        }
    }
    server {
        listen 127.0.0.1:$NGINX_QUIET_PORT;
        access_log off;
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
    # As the README starts it: no log flags, so the request log is on at info, to stderr.
    start_gate gate-default
    local log_pid=$GATE_PID log_port=$GATE_PORT
    start_gate gate-quiet --log-level warn
    local quiet_pid=$GATE_PID quiet_port=$GATE_PORT
    local gate=http://127.0.0.1:$log_port/v1/gate quiet=http://127.0.0.1:$quiet_port/v1/gate
    local empty=http://127.0.0.1:$EMPTY_PORT/
    local g
    for g in "$gate" "$quiet"; do
        check_answer gate "$g" "$SERVED_IP" 200 served
        check_answer gate "$g" "$LIMITED_IP" 200 limited
        check_answer gate "$g" "$WITHDRAWN_IP" 451 withdrawn
    done
    check_answer empty "$empty" "$SERVED_IP" 200 ""
    local glog=$TMP/gate-default.log
    local targets=(
        "empty|$empty|$SERVED_IP|200|-|$EMPTY_PID"
        "gate-log-served|$gate|$SERVED_IP|200|$glog|$log_pid"
        "gate-log-limited|$gate|$LIMITED_IP|200|$glog|$log_pid"
        "gate-log-withdrawn|$gate|$WITHDRAWN_IP|451|$glog|$log_pid"
        "gate-quiet-served|$quiet|$SERVED_IP|200|-|$quiet_pid"
        "gate-quiet-limited|$quiet|$LIMITED_IP|200|-|$quiet_pid"
        "gate-quiet-withdrawn|$quiet|$WITHDRAWN_IP|451|-|$quiet_pid"
    )
    local nginx_pids=
    if [ -n "$NGINX_BIN" ]; then
        start_nginx
        nginx_pids="$NGINX_PID $(children "$NGINX_PID")"
        local ng=http://127.0.0.1:$NGINX_PORT/ nq=http://127.0.0.1:$NGINX_QUIET_PORT/
        for g in "$ng" "$nq"; do
            check_answer nginx "$g" "$SERVED_IP" 200 served
            check_answer nginx "$g" "$LIMITED_IP" 200 limited
            check_answer nginx "$g" "$WITHDRAWN_IP" 451 withdrawn
        done
        local nlog=$TMP/nginx/access.log
        targets+=(
            "nginx-log-served|$ng|$SERVED_IP|200|$nlog|$nginx_pids"
            "nginx-log-limited|$ng|$LIMITED_IP|200|$nlog|$nginx_pids"
            "nginx-log-withdrawn|$ng|$WITHDRAWN_IP|451|$nlog|$nginx_pids"
            "nginx-quiet-served|$nq|$SERVED_IP|200|-|$nginx_pids"
            "nginx-quiet-limited|$nq|$LIMITED_IP|200|-|$nginx_pids"
            "nginx-quiet-withdrawn|$nq|$WITHDRAWN_IP|451|-|$nginx_pids"
        )
    fi
    local t name url ip expect logfile pids
    if [ "$WARMUP" = 1 ]; then
        log "warm-up: 1 s per target"
        for t in "${targets[@]}"; do
            IFS='|' read -r name url ip expect logfile pids <<<"$t"
            taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s -H "X-Forwarded-For: $ip" "$url" >/dev/null
        done
    fi
    local r
    for r in $(seq "$ROUNDS"); do
        for t in "${targets[@]}"; do
            IFS='|' read -r name url ip expect logfile pids <<<"$t"
            log "round $r/$ROUNDS: $name (${DURATION}s)"
            # shellcheck disable=SC2086 # pids is a list
            run_wrk "$name" "$url" "$ip" "$expect" "$logfile" $pids
        done
    done
    # What the request log dropped rather than make a request wait (the rows with the log
    # on are flattered by any drop).
    local dropped
    dropped=$(curl -fsS "http://127.0.0.1:$log_port/metrics" |
        awk '/^marketgate_log_lines_dropped_total/ {printf "%s%s", (n++ ? ", " : ""), $0}') ||
        die "no metrics from marketgate (request log on)"
    # Memory after the load: resident now and at peak.
    local mem="| server | VmRSS | VmHWM (peak) |"$'\n'"| --- | ---: | ---: |"
    mem+=$'\n'"| marketgate serve, request log on (full country database) | $(($(rss_kib "$log_pid" VmRSS) / 1024)) MiB | $(($(rss_kib "$log_pid" VmHWM) / 1024)) MiB |"
    mem+=$'\n'"| marketgate serve --log-level warn | $(($(rss_kib "$quiet_pid" VmRSS) / 1024)) MiB | $(($(rss_kib "$quiet_pid" VmHWM) / 1024)) MiB |"
    mem+=$'\n'"| empty 200 (actix-web) | $(($(rss_kib "$EMPTY_PID" VmRSS) / 1024)) MiB | $(($(rss_kib "$EMPTY_PID" VmHWM) / 1024)) MiB |"
    if [ -n "$NGINX_BIN" ]; then
        local p rss=0 hwm=0
        for p in $nginx_pids; do
            rss=$((rss + $(rss_kib "$p" VmRSS))); hwm=$((hwm + $(rss_kib "$p" VmHWM)))
        done
        mem+=$'\n'"| nginx + geoip2 (master and worker) | $((rss / 1024)) MiB | $((hwm / 1024)) MiB |"
    fi
    GATE_RSS_MIB=$(($(rss_kib "$log_pid" VmRSS) / 1024))
    ((GATE_RSS_MIB < 100)) || fail_check "marketgate resident memory ${GATE_RSS_MIB} MiB (target < 100 MiB)"
    stop "$log_pid"; stop "$quiet_pid"; stop "$EMPTY_PID"
    [ -n "$NGINX_PID" ] && stop "$NGINX_PID"

    # The table: median round of each target, ratios to the floor and to the nginx of the
    # same pair (request log on vs access log; quiet vs none).
    local empty_rps
    empty_rps=$(median_round empty | awk '{print $2}')
    local table="| server | client | answer | req/s | p50 ms | p99 ms | server CPU | CPU µs/req | wrk CPU | log lines/answer | vs empty 200 | vs nginx of the pair |"
    table+=$'\n'"| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    local targets_md="" row rps p50 p99 scpu cpureq wcpu errs lines who client answer vs_empty vs_nginx nginx_rps
    for name in empty \
        gate-log-served gate-log-limited gate-log-withdrawn \
        nginx-log-served nginx-log-limited nginx-log-withdrawn \
        gate-quiet-served gate-quiet-limited gate-quiet-withdrawn \
        nginx-quiet-served nginx-quiet-limited nginx-quiet-withdrawn; do
        row=$(median_round "$name")
        [ -n "$row" ] || continue
        read -r _ rps p50 p99 scpu cpureq wcpu errs lines <<<"$row"
        case "$name" in
            empty) who="empty 200 (actix-web, the floor)" client="any" answer=200 ;;
            gate-log-*) who="marketgate as the README starts it (request log on)" ;;
            gate-quiet-*) who="marketgate --log-level warn" ;;
            nginx-log-*) who="nginx + geoip2 map, default access log to a file" ;;
            nginx-quiet-*) who="nginx + geoip2 map, access_log off" ;;
        esac
        case "$name" in
            *-served) client="DE $SERVED_IP" answer="200 served" ;;
            *-limited) client="IN $LIMITED_IP" answer="200 limited" ;;
            *-withdrawn) client="RU $WITHDRAWN_IP" answer=451 ;;
        esac
        [ "$lines" = - ] && lines=
        vs_empty=$(awk -v a="$rps" -v b="$empty_rps" 'BEGIN {printf "%.1f%%", 100 * a / b}')
        vs_nginx=
        if [[ $name == gate-* ]]; then
            nginx_rps=$(median_round "nginx-${name#gate-}" | awk '{print $2}')
            [ -n "$nginx_rps" ] && vs_nginx=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN {printf "%.2fx", a / b}')
            # Targets (issue 16): request log on ≥ 1.0x nginx with its access log and
            # ≥ 85% of the floor; quiet ≥ 1.0x nginx without (0.95x for the 451).
            local want_nginx=1.0 pct
            [[ $name == gate-quiet-withdrawn ]] && want_nginx=0.95
            pct=$(awk -v a="$rps" -v b="$empty_rps" 'BEGIN {printf "%.1f", 100 * a / b}')
            targets_md+="- $who, $client:"
            if [[ $name == gate-log-* ]]; then
                targets_md+=" $pct% of the empty 200 (target ≥ 85%): $(awk -v p="$pct" 'BEGIN {print (p >= 85) ? "met" : "**missed**"}');"
            fi
            if [ -n "$vs_nginx" ]; then
                targets_md+=" ${vs_nginx} nginx (target ≥ ${want_nginx}x): $(awk -v a="$rps" -v b="$nginx_rps" -v w="$want_nginx" 'BEGIN {print (a >= w * b) ? "met" : "**missed**"}');"
            fi
            targets_md+=" p99 ${p99} ms (target < 5 ms): $(awk -v p="$p99" 'BEGIN {print (p < 5) ? "met" : "**missed**"}')"$'\n'
        fi
        ((errs == 0)) || fail_check "$name: $errs socket errors"
        if [[ $name == *-log-* ]]; then
            awk -v l="$lines" 'BEGIN {exit !(l >= 0.9)}' ||
                fail_check "$name: the log wrote $lines lines per answer (expected about 1)"
        fi
        table+=$'\n'"| $who | $client | $answer | $rps | $p50 | $p99 | $scpu% | $cpureq | $wcpu% | $lines | $vs_empty | $vs_nginx |"
    done
    [ -z "$NGINX_SKIPPED" ] || targets_md+="- nginx was SKIPPED: $NGINX_SKIPPED"$'\n'
    targets_md+="- marketgate resident memory after the load: ${GATE_RSS_MIB} MiB (target < 100 MiB): $( ((GATE_RSS_MIB < 100)) && echo met || echo '**missed**')"$'\n'
    LOAD_MD="## HTTP load: one worker each, pinned

wrk $(wrk -v 2>&1 | head -n 1 | awk '{print $2}'), $WRK_THREADS thread(s), $CONNS connections, ${DURATION} s per run, HTTP/1.1 keep-alive,
every request with \`X-Forwarded-For: <client>\` from the trusted loopback proxy. Servers on
CPU $SERVER_CPU, wrk on CPU $LOAD_CPU. $ROUNDS rounds alternating the servers; the median round (by req/s)
of each row is shown. Two pairs: marketgate as the README starts it (request log on, at
info, stderr appended to a file) beside nginx with its default access log to a file; and
marketgate \`--log-level warn\` beside nginx with \`access_log off\`. \"server CPU\" is the
CPU time the server used during the run (100% = one core busy), \"CPU µs/req\" that time
per answered request, \"wrk CPU\" the load tool's, \"log lines/answer\" the lines the
server's log file gained during the run per answer wrk counted.

$table

All rounds (name req/s p50 p99 server-CPU% CPU-µs/req wrk-CPU% socket-errors log-lines/answer):

\`\`\`text
$(cat "$TMP/rounds")
\`\`\`

Request log lines marketgate dropped rather than make a request wait, over the whole load:
\`$dropped\`

Targets (design doc, \"Performance targets\"; issue 16):

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
    local rows="| server | client | instructions per request | write(2) per request | requests measured |"$'\n'"| --- | --- | ---: | ---: | ---: |"
    local t name ip cmd port pid out n ir w0 w1 up
    # gate: as the README starts it (request log on, to stderr: here a file);
    # gate-quiet: --log-level warn.
    for t in "empty|$SERVED_IP" "gate|$SERVED_IP" "gate|$LIMITED_IP" "gate|$WITHDRAWN_IP" \
        "gate-quiet|$SERVED_IP" "gate-quiet|$LIMITED_IP" "gate-quiet|$WITHDRAWN_IP"; do
        IFS='|' read -r name ip <<<"$t"
        port=$(free_port)
        if [ "$name" = empty ]; then
            cmd=("$EMPTY_BIN" "127.0.0.1:$port" 1)
            url=http://127.0.0.1:$port/
        else
            cmd=("$BIN" serve --listen "127.0.0.1:$port" --workers 1 --trusted-proxy 127.0.0.1/32
                --geoip "$GEOIP_FILE" --state-dir "$TMP/state-profile")
            [ "$name" = gate-quiet ] && cmd+=(--log-level warn)
            url=http://127.0.0.1:$port/v1/gate
        fi
        taskset -c "$SERVER_CPU" valgrind --tool=callgrind --instr-atstart=no \
            --callgrind-out-file="$TMP/callgrind.$name.%p" "${cmd[@]}" >"$TMP/profile.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        # The gate answers a trusted proxy's request without a client address 451
        # (fail closed): wait for readiness instead.
        if [ "$name" = empty ]; then up=$url; else up=http://127.0.0.1:$port/readyz; fi
        wait_up "$up" "$pid" profile
        taskset -c "$LOAD_CPU" wrk -t1 -c4 -d1s -H "X-Forwarded-For: $ip" "$url" >/dev/null
        callgrind_control -z "$pid" >/dev/null
        # Write-type system calls (`syscw` of /proc/PID/io) over the same window: the
        # kernel's share, which callgrind cannot see (the empty row is the baseline).
        w0=$(awk '$1 == "syscw:" {print $2}' "/proc/$pid/io")
        callgrind_control -i on "$pid" >/dev/null
        out=$(taskset -c "$LOAD_CPU" wrk -t1 -c4 -d"${PROFILE_DURATION}s" -H "X-Forwarded-For: $ip" "$url")
        callgrind_control -i off "$pid" >/dev/null
        w1=$(awk '$1 == "syscw:" {print $2}' "/proc/$pid/io")
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
        rows+=$'\n'"| $name | $ip | $((ir / n)) | $(awk -v w=$((w1 - w0)) -v n="$n" 'BEGIN {printf "%.3f", w / n}') | $n |"
        log "profile $name $ip: $((ir / n)) instructions and $((w1 - w0)) write calls for $n requests"
    done
    PROFILE_MD="## Instructions per request (callgrind)

One worker under \`valgrind --tool=callgrind\`, counting only during ${PROFILE_DURATION} s of wrk
(4 connections) after a warm-up; the whole process (all threads, the log writer's too)
divided by the answers. \`gate\` is marketgate as the README starts it (request log on, its
stderr a file), \`gate-quiet\` with \`--log-level warn\`.
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
