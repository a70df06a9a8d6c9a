#!/usr/bin/env bash
# API conformance: schemathesis (pinned, from PyPI) checks the real `marketgate serve`
# against the OpenAPI documents it serves itself, the public one at /openapi.json and
# the admin one at /admin/v1/openapi.json (behind the bearer token), with every check
# (no 5xx, documented statuses, content types, headers and response schemas, 405 with
# Allow, negative data rejected, auth not ignored...). Loopback only, bounded by
# --max-examples per operation; a throwaway state directory takes the admin writes.
#
#   tests/conformance/run.sh [--install-only]
#
# Environment: MAX_EXAMPLES (default 20 per operation), SEED (default 1: CI runs are
# reproducible; set SEED=random to explore), MARKETGATE_BIN (default: build it with
# cargo), SCHEMATHESIS_VENV (default $CARGO_TARGET_DIR/schemathesis-venv).
# Exit codes: 0 conforms, 1 findings, 3 schemathesis cannot be installed (no python3 with
# venv, or PyPI unreachable: nothing ran).
set -euo pipefail
cd "$(dirname "$0")/../.."
ST_VERSION=4.32.5
TARGET=${CARGO_TARGET_DIR:-target}
VENV=${SCHEMATHESIS_VENV:-$TARGET/schemathesis-venv}
MAX_EXAMPLES=${MAX_EXAMPLES:-20}
SEED=${SEED:-1}
CONFIG=tests/conformance/schemathesis.toml

install() {
    if [ -x "$VENV/bin/schemathesis" ] &&
        "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "version $ST_VERSION\$"; then
        return 0
    fi
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        echo "conformance: python3 with venv is missing (Debian: apt-get install python3-venv)" >&2
        exit 3
    fi
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" ||
        ! "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"; then
        echo "conformance: schemathesis $ST_VERSION could not be installed from PyPI" >&2
        exit 3
    fi
}
install
[ "${1:-}" = "--install-only" ] && exit 0

BIN=${MARKETGATE_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --quiet --bin marketgate
    BIN=$TARGET/debug/marketgate
fi
# Ports below the kernel's ephemeral range, found free by binding them: a port from
# bind(0) could be handed to another test's server before marketgate binds it.
free_ports() {
    python3 - <<'PY'
import random, socket
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except OSError:
    low = 32768
ports = []
while len(ports) < 2:
    p = random.randrange(20000, low) if low > 21000 else 0
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    p = s.getsockname()[1]
    s.close()
    if p not in ports:
        ports.append(p)
print(*ports)
PY
}
read -r PORT APORT <<<"$(free_ports)"
TOKEN=conformance-token-$RANDOM$RANDOM$RANDOM
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

"$BIN" serve --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$APORT" \
    --admin-token "$TOKEN" --state-dir "$tmp/state" --workers 1 \
    --trusted-proxy 127.0.0.1/32 --log-level warn 2>"$tmp/serve.log" &
pid=$!
for _ in $(seq 200); do
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
        "http://127.0.0.1:$PORT/readyz" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log" >&2; exit 1; }
    sleep 0.1
done

st() {
    local seed=()
    [ "$SEED" = random ] || seed=(--seed "$SEED")
    NO_COLOR=1 "$VENV/bin/schemathesis" --config-file "$CONFIG" run "$@" \
        --checks all --max-examples "$MAX_EXAMPLES" "${seed[@]}" \
        --workers 1 --request-timeout 10 --no-shrink
}
status=0
echo "== public listener: /openapi.json"
st "http://127.0.0.1:$PORT/openapi.json" --exclude-path-regex '^/v1/gate' || status=1
# The gate takes every method, as Envoy's ext_authz forwards the client's own (WebDAV,
# QUERY...); the document lists those OpenAPI 3.1 can name, and a method it cannot name
# is still a 200 or 451, never a 405. So no unsupported-method check there (a per-
# operation setting does not reach that check in schemathesis 4.32).
echo "== public listener: /openapi.json, the gate"
st "http://127.0.0.1:$PORT/openapi.json" --include-path-regex '^/v1/gate' \
    --exclude-checks unsupported_method || status=1
echo "== admin listener: /admin/v1/openapi.json"
st "http://127.0.0.1:$APORT/admin/v1/openapi.json" -H "Authorization: Bearer $TOKEN" || status=1

# The service itself must not have logged a server error or a panic meanwhile.
if grep -E '"?level"?[=:]"?ERROR|panicked' "$tmp/serve.log" >&2; then
    echo "conformance: the server logged errors (above)" >&2
    status=1
fi
kill -0 "$pid" 2>/dev/null || { echo "conformance: the server died" >&2; status=1; }
[ "$status" = 0 ] && echo "conformance: both documents conform"
exit "$status"
