#!/bin/sh
# The geoipupdate sidecar's loop (mounted from the ConfigMap marketgate-geoipupdate).
# It never exits on a failed update: a provider outage, a rate limit or a revoked key is
# logged and retried later with backoff, so the sidecar never crash-loops and never
# makes the pod unready. marketgate keeps the database it has (or the bundled one until
# a first file arrives) and exports its build time; alert on that age, not on this loop.
# Every sleep carries random jitter, so the pods of one rollout do not hit the provider
# together. Exits 0 on SIGTERM/SIGINT.
#
# Environment (seconds unless said otherwise):
#   GEOIPUPDATE_ACCOUNT_ID, GEOIPUPDATE_LICENSE_KEY, GEOIPUPDATE_EDITION_IDS,
#   GEOIPUPDATE_DB_DIR                      as for the upstream image
#   GEOIPUPDATE_CONF                        config file to write [/tmp/GeoIP.conf]
#   GEOIPUPDATE_INTERVAL_SECONDS            between successful updates [86400]
#   GEOIPUPDATE_RETRY_MIN_SECONDS           first retry after a failure [300]
#   GEOIPUPDATE_RETRY_MAX_SECONDS           longest retry wait, doubling [21600]
#   GEOIPUPDATE_START_DELAY_MAX_SECONDS     random delay before the first run [60]
# Checked by tests/it/deploy.rs (run with a geoipupdate that always fails).
set -u

interval=${GEOIPUPDATE_INTERVAL_SECONDS:-86400}
retry_min=${GEOIPUPDATE_RETRY_MIN_SECONDS:-300}
retry_max=${GEOIPUPDATE_RETRY_MAX_SECONDS:-21600}
start_max=${GEOIPUPDATE_START_DELAY_MAX_SECONDS:-60}
conf=${GEOIPUPDATE_CONF:-/tmp/GeoIP.conf}
db_dir=${GEOIPUPDATE_DB_DIR:-/var/lib/GeoIP}

log() { echo "geoipupdate-loop: $*" >&2; }

# A random number in 0..=$1.
random_upto() {
  [ "$1" -gt 0 ] || { echo 0; return; }
  r=$(od -An -N2 -tu2 /dev/urandom 2>/dev/null | tr -d ' \n')
  echo $(( ${r:-0} % ($1 + 1) ))
}

sleeper=
stop() {
  [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
  log "stopping"
  exit 0
}
trap stop TERM INT

# Sleeps $1 seconds plus up to a quarter more, and wakes for a signal.
nap() {
  n=$(( $1 + $(random_upto $(( $1 / 4 ))) ))
  sleep "$n" &
  sleeper=$!
  wait "$sleeper"
  sleeper=
}

# The credentials go to a file in a memory-backed volume, never on the command line.
umask 077
if ! printf 'AccountID %s\nLicenseKey %s\nEditionIDs %s\n' \
  "${GEOIPUPDATE_ACCOUNT_ID:-}" "${GEOIPUPDATE_LICENSE_KEY:-}" \
  "${GEOIPUPDATE_EDITION_IDS:-}" >"$conf"; then
  log "cannot write $conf; geoipupdate will fail until it can"
fi

delay=$(random_upto "$start_max")
log "first update in ${delay}s, then every ${interval}s (plus jitter)"
sleep "$delay" & sleeper=$!; wait "$sleeper"; sleeper=

backoff=$retry_min
while :; do
  if geoipupdate -f "$conf" -d "$db_dir"; then
    log "updated (or already current) in $db_dir"
    backoff=$retry_min
    nap "$interval"
  else
    code=$?
    log "update failed (exit $code); keeping the database in place, retrying in about ${backoff}s"
    nap "$backoff"
    backoff=$(( backoff * 2 ))
    [ "$backoff" -le "$retry_max" ] || backoff=$retry_max
  fi
done
