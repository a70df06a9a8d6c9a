#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30), one after another, from the
# committed seeds (seeds/TARGET) plus the corpus grown by earlier runs (corpus/TARGET,
# not in git). Prints each target's final libFuzzer stats: executions and coverage.
# A crash stops the run; its input is saved under artifacts/TARGET/.
#
#   fuzz/run.sh            # 30 s per target, ~3 minutes with the build cached
#   fuzz/run.sh 600 rules  # one target for 10 minutes
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(rules client_addr geoip ofrep admin path)
# Sanitizer builds never share a target dir with the service's ordinary builds.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p logs
# A backtrace on a loaded machine can outlast -timeout and turn a crash into a "timeout";
# the saved input reproduces it with a backtrace (see README).
export RUST_BACKTRACE=0
# -a: debug assertions and overflow checks on, so arithmetic overflow is a finding too.
cargo +nightly fuzz build -a
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  dict=()
  [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
  echo "== $t: ${secs}s"
  # nice: the fuzzer takes a whole core; whoever shares the machine goes first.
  if ! nice -n "${NICE:-15}" cargo +nightly fuzz run -a "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$secs" -timeout=10 -print_final_stats=1 "${dict[@]}" \
      >"logs/$t.log" 2>&1; then
    tail -n 40 "logs/$t.log"
    echo "== $t FAILED (log: fuzz/logs/$t.log, input under fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  grep -E "DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" "logs/$t.log" || tail -n 5 "logs/$t.log"
done
