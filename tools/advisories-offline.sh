#!/usr/bin/env bash
# Checks Cargo.lock against a local copy of the RustSec advisory database, for networks
# that cannot reach its git host: `tools/advisories-offline.sh [SNAPSHOT_DIR]`
# (default ../shared/rustsec-advisory-db, which may be read-only). Prints the snapshot's
# date; exits non-zero on an advisory that deny.toml does not ignore, or when the copy
# cannot be read.
#
# cargo-deny reads a database only from a git checkout under its `db-path`, in a folder
# named after the database URL, and refuses `file://` URLs. So: copy the snapshot into
# the target dir, commit it once (dated as the snapshot, so cargo-deny's staleness check
# sees its real age), and run `cargo deny --offline` with deny.toml's policy and that
# `db-path`. `--offline` also keeps `cargo metadata` offline, hence `cargo fetch` first
# (crates.io is reachable where GitHub is not).
set -euo pipefail
cd "$(dirname "$0")/.."

snapshot=${1:-../shared/rustsec-advisory-db}
if [ ! -f "$snapshot/SNAPSHOT.md" ]; then
  echo "advisories: no RustSec snapshot at $snapshot (SNAPSHOT.md missing)" >&2
  exit 2
fi
snapshot_date=$(sed -n 's/^- Upstream commit date: *//p' "$snapshot/SNAPSHOT.md" | head -n 1)
snapshot_commit=$(sed -n 's/^- Upstream commit: *//p' "$snapshot/SNAPSHOT.md" | head -n 1)
if [ -z "$snapshot_date" ]; then
  echo "advisories: $snapshot/SNAPSHOT.md names no upstream commit date" >&2
  exit 2
fi

target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
work=$(cd "$target" && pwd)/rustsec-offline
rm -rf "$work"
mkdir -p "$work/dbs"
# deny.toml's policy (ignores, yanked, sources, ...) with the database path moved here.
sed "s|^db-urls = .*|&\ndb-path = \"$work/dbs\"|" deny.toml >"$work/deny.toml"
grep -q "^db-path = \"$work/dbs\"" "$work/deny.toml" || {
  echo "advisories: deny.toml has no db-urls line to anchor db-path on" >&2
  exit 2
}

# Where cargo-deny looks for the database of deny.toml's URL (a hash of the URL, an
# implementation detail): ask it, rather than hard-coding this version's name.
db=$(cargo deny -L debug --offline --config "$work/deny.toml" check advisories 2>&1 |
  sed -n "s/.*Opening advisory database at '\(.*\)'.*/\1/p" | head -n 1 || true)
case "$db" in
  "$work/dbs/"*) ;;
  *)
    echo "advisories: cannot tell where cargo-deny reads its database (got '$db')" >&2
    exit 2
    ;;
esac
mkdir -p "$db"
cp -R "$snapshot/." "$db/"
chmod -R u+w "$db"
export GIT_AUTHOR_DATE="${snapshot_date}T00:00:00Z" GIT_COMMITTER_DATE="${snapshot_date}T00:00:00Z"
git -C "$db" init -q -b main
git -C "$db" add -A
git -C "$db" -c user.name=marketgate-ci -c user.email=ci@localhost -c commit.gpgsign=false \
  commit -q -m "RustSec advisory-db snapshot ${snapshot_commit:-unknown}"
unset GIT_AUTHOR_DATE GIT_COMMITTER_DATE

cargo fetch --locked --quiet
echo "advisories: checking against the offline RustSec snapshot of $snapshot_date (upstream ${snapshot_commit:-unknown}, $snapshot)" >&2
cargo deny --offline --locked --config "$work/deny.toml" check advisories
